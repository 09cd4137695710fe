//! Validators and conditional requests (RFC 9110 §8.8, §13).
//!
//! The entity tag is strong, made of the file's modification time (nanoseconds) and size:
//! the same file deployed to several hosts or read by several workers gets the same tag
//! (an inode number would differ between hosts; Apache dropped it from its default ETag
//! for this reason). `Last-Modified` is the modification time, in whole seconds.
//!
//! Preconditions are evaluated in the order of RFC 9110 §13.2.2: `If-Match`, else
//! `If-Unmodified-Since` (412 when they fail); then `If-None-Match`, else
//! `If-Modified-Since` (304 for GET and HEAD); `If-Range` is checked with the Range header.

/// The validators of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validators {
    /// Modification time, nanoseconds since the epoch (0 before it).
    pub mtime_ns: u128,
    pub size: u64,
    /// `Last-Modified` in seconds since the epoch: the mtime, but never later than `now`.
    pub last_modified: u64,
}

impl Validators {
    pub fn new(meta: &std::fs::Metadata, now: u64) -> Validators {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Validators {
            mtime_ns,
            size: meta.len(),
            last_modified: ((mtime_ns / 1_000_000_000) as u64).min(now),
        }
    }

    /// The opaque tag, without quotes: `<mtime ns hex>-<size hex>`.
    pub fn tag(&self) -> String {
        format!("{:x}-{:x}", self.mtime_ns, self.size)
    }
}

/// What the preconditions decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Serve the file (200, or 206 with a Range).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The values of the request's header fields called `name` (case-insensitive), in order.
pub fn values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The first field called `name`.
pub fn first<'a>(headers: &'a [httparse::Header<'a>], name: &'a str) -> Option<&'a [u8]> {
    values(headers, name).next()
}

/// One entity-tag of a list: (weak, opaque tag without quotes).
fn tags(list: &[u8]) -> impl Iterator<Item = (bool, &[u8])> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_ascii_start();
        while let Some(r) = rest.strip_prefix(b",") {
            rest = r.trim_ascii_start();
        }
        if rest.is_empty() {
            return None;
        }
        let (weak, r) = match rest.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let r = r.strip_prefix(b"\"")?;
        let close = r.iter().position(|&b| b == b'"')?;
        rest = &r[close + 1..];
        Some((weak, &r[..close]))
    })
}

fn is_star(list: &[u8]) -> bool {
    list.trim_ascii() == b"*"
}

/// Weak comparison (If-None-Match): the opaque tags match, weak or not.
pub fn matches_weak(list: &[u8], tag: &[u8]) -> bool {
    is_star(list) || tags(list).any(|(_, t)| t == tag)
}

/// Strong comparison (If-Match, If-Range): only a strong tag can match ours (strong).
pub fn matches_strong(list: &[u8], tag: &[u8]) -> bool {
    is_star(list) || tags(list).any(|(weak, t)| !weak && t == tag)
}

/// Evaluates the preconditions of a GET or HEAD for a file that exists. List fields
/// (`If-Match`, `If-None-Match`) may come in several field lines: any match counts.
pub fn evaluate(headers: &[httparse::Header<'_>], tag: &[u8], last_modified: u64) -> Decision {
    let mut if_match = values(headers, "if-match").peekable();
    if if_match.peek().is_some() {
        if !if_match.any(|list| matches_strong(list, tag)) {
            return Decision::Failed;
        }
    } else if let Some(date) = first(headers, "if-unmodified-since").and_then(parse_http_date) {
        if last_modified > date {
            return Decision::Failed;
        }
    }
    let mut if_none_match = values(headers, "if-none-match").peekable();
    if if_none_match.peek().is_some() {
        if if_none_match.any(|list| matches_weak(list, tag)) {
            return Decision::NotModified;
        }
    } else if let Some(date) = first(headers, "if-modified-since").and_then(parse_http_date) {
        if last_modified <= date {
            return Decision::NotModified;
        }
    }
    Decision::Proceed
}

/// Whether `If-Range: value` lets the Range apply: a strong entity-tag equal to ours, or an
/// HTTP-date equal to `Last-Modified` (RFC 9110 §13.1.5).
pub fn if_range_holds(value: &[u8], tag: &[u8], last_modified: u64) -> bool {
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let mut t = tags(value);
        return matches!((t.next(), t.next()), (Some((false, t)), None) if t == tag);
    }
    parse_http_date(value) == Some(last_modified)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn month(m: &[u8]) -> Option<u64> {
    MONTHS
        .iter()
        .position(|n| n[..] == *m)
        .map(|i| i as u64 + 1)
}

fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 4 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |a, d| a * 10 + u64::from(d - b'0')))
}

/// `HH:MM:SS` as seconds into the day.
fn time_of_day(v: &[u8]) -> Option<u64> {
    let mut parts = v.split(|&b| b == b':');
    let (Some(h), Some(m), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let (h, m, s) = (digits(h)?, digits(m)?, digits(s)?);
    // 60 allows a leap second, as RFC 9110 does.
    (h < 24 && m < 60 && s <= 60).then_some(h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let days_in = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let max = if m == 2 && leap {
        29
    } else {
        days_in[(m - 1) as usize]
    };
    if d == 0 || d > max || y < 1970 {
        return None;
    }
    let (y, m) = (y as i64, m as i64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

fn epoch(y: u64, mon: &[u8], d: u64, time: &[u8]) -> Option<u64> {
    let m = month(mon)?;
    Some(days_from_civil(y, m, d)? * 86400 + time_of_day(time)?)
}

/// Parses an HTTP-date (RFC 9110 §5.6.7) in any of its three forms — IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and
/// asctime (`Sun Nov  6 08:49:37 1994`) — as seconds since the epoch. The weekday is not
/// checked. `None` for anything else (the header is then ignored, as the RFC says).
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    let mut words: [&[u8]; 6] = [&[]; 6];
    let mut n = 0;
    for w in v.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        *words.get_mut(n)? = w;
        n += 1;
    }
    match &words[..n] {
        // IMF-fixdate
        [day, d, mon, y, time, b"GMT"] if day.ends_with(b",") && d.len() == 2 && y.len() == 4 => {
            epoch(digits(y)?, mon, digits(d)?, time)
        }
        // RFC 850
        [day, date, time, b"GMT"] if day.ends_with(b",") => {
            let mut p = date.split(|&b| b == b'-');
            let (Some(d), Some(mon), Some(y), None) = (p.next(), p.next(), p.next(), p.next())
            else {
                return None;
            };
            if d.len() != 2 || y.len() != 2 {
                return None;
            }
            let y = digits(y)?;
            epoch(
                if y < 70 { 2000 + y } else { 1900 + y },
                mon,
                digits(d)?,
                time,
            )
        }
        // asctime
        [_day, mon, d, time, y] if y.len() == 4 && (1..=2).contains(&d.len()) => {
            epoch(digits(y)?, mon, digits(d)?, time)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::date;

    #[test]
    fn dates_in_three_forms() {
        let t = 784_111_777;
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date(b"Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951_782_400)
        );
        for secs in [0, 86_399, 951_782_400, 1_795_000_000, 4_102_444_800] {
            assert_eq!(parse_http_date(&date::format(secs)), Some(secs), "{secs}");
        }
    }

    #[test]
    fn bad_dates() {
        for v in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 99999 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(v.as_bytes()), None, "{v:?}");
        }
    }

    #[test]
    fn entity_tag_lists() {
        assert!(matches_weak(b"\"a\", \"b\"", b"b"));
        assert!(matches_weak(b"W/\"b\"", b"b"));
        assert!(matches_weak(b" * ", b"b"));
        assert!(!matches_weak(b"\"bb\"", b"b"));
        assert!(!matches_weak(b"b", b"b"));
        assert!(matches_strong(b"\"a\",\"b\"", b"b"));
        assert!(!matches_strong(b"W/\"b\"", b"b"));
        assert!(matches_weak(b"\"x,y\", \"b\"", b"b"));
        assert!(!matches_weak(b"\"unterminated", b"unterminated"));
    }

    fn eval(fields: &[(&'static str, &'static str)]) -> Decision {
        let headers: Vec<httparse::Header<'_>> = fields
            .iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        evaluate(&headers, b"t", 1_000_000)
    }

    #[test]
    fn precedence() {
        use Decision::*;
        let old = "Thu, 01 Jan 1970 00:00:00 GMT";
        let new = "Wed, 18 Nov 2026 11:06:40 GMT";
        assert_eq!(eval(&[]), Proceed);
        assert_eq!(eval(&[("If-None-Match", "\"t\"")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "\"u\"")]), Proceed);
        assert_eq!(
            eval(&[("If-None-Match", "\"u\""), ("If-None-Match", "\"t\"")]),
            NotModified
        );
        assert_eq!(eval(&[("If-Modified-Since", new)]), NotModified);
        assert_eq!(eval(&[("If-Modified-Since", old)]), Proceed);
        assert_eq!(eval(&[("If-Modified-Since", "garbage")]), Proceed);
        // If-None-Match wins over If-Modified-Since, both ways.
        assert_eq!(
            eval(&[("If-None-Match", "\"u\""), ("If-Modified-Since", new)]),
            Proceed
        );
        assert_eq!(
            eval(&[("If-None-Match", "\"t\""), ("If-Modified-Since", old)]),
            NotModified
        );
        assert_eq!(eval(&[("If-Match", "\"u\"")]), Failed);
        assert_eq!(eval(&[("If-Match", "W/\"t\"")]), Failed);
        assert_eq!(
            eval(&[("If-Match", "\"t\""), ("If-None-Match", "\"t\"")]),
            NotModified
        );
        assert_eq!(eval(&[("If-Match", "*")]), Proceed);
        assert_eq!(eval(&[("If-Unmodified-Since", old)]), Failed);
        assert_eq!(eval(&[("If-Unmodified-Since", new)]), Proceed);
        // If-Match wins over If-Unmodified-Since.
        assert_eq!(
            eval(&[("If-Match", "\"t\""), ("If-Unmodified-Since", old)]),
            Proceed
        );
    }

    #[test]
    fn if_range() {
        let lm = 784_111_777;
        assert!(if_range_holds(b"\"t\"", b"t", lm));
        assert!(!if_range_holds(b"W/\"t\"", b"t", lm));
        assert!(!if_range_holds(b"\"u\"", b"t", lm));
        assert!(!if_range_holds(b"\"t\", \"u\"", b"t", lm));
        assert!(if_range_holds(b"Sun, 06 Nov 1994 08:49:37 GMT", b"t", lm));
        assert!(!if_range_holds(b"Sun, 06 Nov 1994 08:49:38 GMT", b"t", lm));
        assert!(!if_range_holds(b"garbage", b"t", lm));
    }

    #[test]
    fn validators_tag() {
        let v = Validators {
            mtime_ns: 0x1234,
            size: 255,
            last_modified: 0,
        };
        assert_eq!(v.tag(), "1234-ff");
    }
}

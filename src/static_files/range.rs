//! The `Range` request header (RFC 9110 §14.1–§14.2), byte ranges only.
//!
//! One range is answered with 206 (or 416 when it starts past the end). A header with
//! several ranges, an unknown unit or a syntax error is ignored and the whole file is sent
//! with 200, as RFC 9110 §14.2 allows ("a server MAY ignore the Range header field"):
//! multipart/byteranges is rarely used by clients (download managers and media players
//! ask for one range at a time) and multi-range requests have been a denial-of-service
//! vector (CVE-2011-3192).

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// Send everything (no usable Range): 200.
    Full,
    /// Bytes `start..=end`: 206.
    Part { start: u64, end: u64 },
    /// No byte of the file is in the range: 416.
    Unsatisfiable,
}

/// Digits only, saturating (a larger number than u64 can hold means "past any end").
fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Parses `value` (the Range header's value) against a file of `len` bytes.
pub fn parse(value: &[u8], len: u64) -> Range {
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return Range::Full;
    };
    if !value[..eq].trim_ascii().eq_ignore_ascii_case(b"bytes") {
        return Range::Full;
    }
    let mut specs = value[eq + 1..]
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return Range::Full; // none, or several: the whole file
    };
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return Range::Full;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        // suffix-range: the last N bytes.
        let Some(n) = number(last) else {
            return Range::Full;
        };
        if n == 0 {
            return Range::Unsatisfiable;
        }
        if len == 0 {
            // Satisfiable, but 206 cannot describe an empty part: send the (empty) whole.
            return Range::Full;
        }
        return Range::Part {
            start: len - n.min(len),
            end: len - 1,
        };
    }
    let Some(start) = number(first) else {
        return Range::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(e) if e >= start => e,
            _ => return Range::Full, // last < first: invalid, ignored
        }
    };
    if start >= len {
        return Range::Unsatisfiable;
    }
    Range::Part {
        start,
        end: end.min(len - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str, len: u64) -> Range {
        parse(v.as_bytes(), len)
    }

    fn part(start: u64, end: u64) -> Range {
        Range::Part { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(p("bytes=0-99", 1000), part(0, 99));
        assert_eq!(p("bytes=100-199", 1000), part(100, 199));
        assert_eq!(p("bytes=100-", 1000), part(100, 999));
        assert_eq!(p("bytes=-500", 1000), part(500, 999));
        assert_eq!(p("bytes=-5000", 1000), part(0, 999));
        assert_eq!(p("bytes=900-5000", 1000), part(900, 999));
        assert_eq!(p("bytes=999-999", 1000), part(999, 999));
        assert_eq!(p("Bytes = 1-2 ", 1000), part(1, 2));
        assert_eq!(p("bytes=0-99999999999999999999999", 10), part(0, 9));
        assert_eq!(p("bytes=5-5,", 10), part(5, 5));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(p("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(p("bytes=1000-2000", 1000), Range::Unsatisfiable);
        assert_eq!(p("bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), Range::Unsatisfiable);
        assert_eq!(
            p("bytes=99999999999999999999999-", 10),
            Range::Unsatisfiable
        );
    }

    #[test]
    fn ignored() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "items=0-5",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1",
            "bytes=+1-2",
            "bytes=0-1,5-6",
            "bytes=0-1, 1000-2000",
            "bytes=--1",
            "bytes=1-2-3",
        ] {
            assert_eq!(p(v, 1000), Range::Full, "{v:?}");
        }
        assert_eq!(p("bytes=-5", 0), Range::Full);
    }
}

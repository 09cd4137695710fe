//! The access-log line format: gunicorn's `%(atom)s` atoms, compiled once.
//!
//! - `h` remote address, `l` `-`, `u` user name (HTTP Basic), `t` `[10/Oct/2000:13:55:36 -0700]` (local time);
//! - `r` request line, `m` method, `U` path (percent-decoded), `q` query string, `H` protocol;
//! - `s` status, `B` response bytes, `b` the same but `-` for none;
//! - `f` Referer, `a` User-Agent;
//! - `T` seconds, `M` milliseconds, `D` microseconds, `L` decimal seconds, `p` `<pid>`;
//! - `{name}i` a request header, `{name}o` a response header, `{key}e` a WSGI environ key.
//!
//! Values that come from the client are escaped like Apache's: `"` and `\` get a backslash,
//! bytes outside printable ASCII become `\xHH`, so a header cannot forge a log line.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::http::percent;

/// gunicorn's default `access_log_format`.
pub const DEFAULT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

#[derive(Debug, Clone, PartialEq)]
enum Atom {
    Remote,
    Dash,
    User,
    Time,
    Line,
    Method,
    Path,
    Query,
    Protocol,
    Status,
    Bytes,
    BytesClf,
    Secs,
    Millis,
    Micros,
    Decimal,
    Pid,
    /// Index into [`Format::request_headers`].
    RequestHeader(usize),
    /// A response header (lower-case name).
    ResponseHeader(String),
    /// A key of the WSGI environ, as written.
    Environ(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Atom(Atom),
}

/// A compiled access-log format.
#[derive(Debug, Clone)]
pub struct Format {
    parts: Vec<Part>,
    /// Request headers to capture (lower-case), in the order atoms refer to them.
    request_headers: Vec<String>,
    needs_environ: bool,
}

/// Why a format string was refused.
#[derive(Debug, PartialEq)]
pub struct FormatError(String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one exchange contributes to its line.
pub struct Record<'a, 'py> {
    pub remote: &'a str,
    /// `METHOD target HTTP/1.x`, or `-` when no request line was read.
    pub line: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Values of [`Format::request_headers`], in order.
    pub request_headers: &'a [Option<Vec<u8>>],
    /// The response head's header lines (`Name: value\r\n`...).
    pub response_headers: &'a [u8],
    pub environ: Option<&'a Bound<'py, PyDict>>,
    /// The time, already formatted as `10/Oct/2000:13:55:36 -0700` (local time).
    pub time: &'a str,
    pub pid: u32,
}

impl Format {
    pub fn parse(spec: &str) -> Result<Format, FormatError> {
        let mut f = Format {
            parts: Vec::new(),
            request_headers: Vec::new(),
            needs_environ: false,
        };
        let mut text = String::new();
        let mut rest = spec;
        while let Some(at) = rest.find('%') {
            text.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                text.push('%');
                rest = after;
                continue;
            }
            let Some(inner) = rest.strip_prefix('(') else {
                return Err(FormatError(format!(
                    "'%' must start an atom such as %(h)s, or be written %%: {spec:?}"
                )));
            };
            let close = inner.find(')');
            let Some(close) = close.filter(|&c| matches!(inner.get(c + 1..c + 2), Some("s" | "d")))
            else {
                return Err(FormatError(format!(
                    "an atom is written %(name)s: {spec:?}"
                )));
            };
            let name = &inner[..close];
            let atom = f.atom(name)?;
            if !text.is_empty() {
                f.parts.push(Part::Text(std::mem::take(&mut text)));
            }
            f.parts.push(Part::Atom(atom));
            rest = &inner[close + 2..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            f.parts.push(Part::Text(text));
        }
        Ok(f)
    }

    fn capture(&mut self, header: &str) -> Atom {
        let name = header.to_ascii_lowercase();
        let index = match self.request_headers.iter().position(|h| *h == name) {
            Some(i) => i,
            None => {
                self.request_headers.push(name);
                self.request_headers.len() - 1
            }
        };
        Atom::RequestHeader(index)
    }

    fn atom(&mut self, name: &str) -> Result<Atom, FormatError> {
        if let Some(braced) = name.strip_prefix('{') {
            let (key, kind) = braced
                .rsplit_once('}')
                .filter(|(key, kind)| !key.is_empty() && kind.len() == 1)
                .ok_or_else(|| FormatError(format!("bad atom %({name})s")))?;
            return match kind {
                "i" => Ok(self.capture(key)),
                "o" => Ok(Atom::ResponseHeader(key.to_ascii_lowercase())),
                "e" => {
                    self.needs_environ = true;
                    Ok(Atom::Environ(key.to_string()))
                }
                _ => Err(FormatError(format!(
                    "bad atom %({name})s: use {{name}}i, {{name}}o or {{key}}e"
                ))),
            };
        }
        Ok(match name {
            "h" => Atom::Remote,
            "l" => Atom::Dash,
            "u" => self.capture_user(),
            "t" => Atom::Time,
            "r" => Atom::Line,
            "m" => Atom::Method,
            "U" => Atom::Path,
            "q" => Atom::Query,
            "H" => Atom::Protocol,
            "s" => Atom::Status,
            "B" => Atom::Bytes,
            "b" => Atom::BytesClf,
            "f" => self.capture("referer"),
            "a" => self.capture("user-agent"),
            "T" => Atom::Secs,
            "M" => Atom::Millis,
            "D" => Atom::Micros,
            "L" => Atom::Decimal,
            "p" => Atom::Pid,
            _ => return Err(FormatError(format!("unknown atom %({name})s"))),
        })
    }

    /// `u` renders from the captured Authorization header.
    fn capture_user(&mut self) -> Atom {
        self.capture("authorization");
        Atom::User
    }

    /// Request headers whose values the line needs (lower-case names).
    pub fn request_headers(&self) -> &[String] {
        &self.request_headers
    }

    /// Whether the line reads the WSGI environ (a `{key}e` atom).
    pub fn needs_environ(&self) -> bool {
        self.needs_environ
    }

    fn header<'r>(&self, rec: &'r Record<'_, '_>, name: &str) -> Option<&'r [u8]> {
        let i = self.request_headers.iter().position(|h| h == name)?;
        rec.request_headers.get(i)?.as_deref()
    }

    /// Appends the line for `rec` (without a newline) to `out`.
    pub fn render(&self, out: &mut Vec<u8>, rec: &Record<'_, '_>) {
        let mut words = rec.line.splitn(3, ' ');
        let (method, target, protocol) = (words.next(), words.next(), words.next());
        let (path, query) = match target {
            Some(t) => match t.split_once('?') {
                Some((p, q)) => (Some(p), Some(q)),
                None => (Some(t), None),
            },
            None => (None, None),
        };
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Atom(atom) => match atom {
                    Atom::Remote => escaped(out, Some(rec.remote.as_bytes())),
                    Atom::Dash => out.push(b'-'),
                    Atom::User => {
                        let user = self.header(rec, "authorization").and_then(basic_user);
                        escaped(out, user.as_deref());
                    }
                    Atom::Time => {
                        out.push(b'[');
                        out.extend_from_slice(rec.time.as_bytes());
                        out.push(b']');
                    }
                    Atom::Line => escaped(out, Some(rec.line.as_bytes())),
                    Atom::Method => escaped(out, method.map(str::as_bytes)),
                    Atom::Path => {
                        let raw = path.map(str::as_bytes);
                        let decoded = raw.and_then(percent::decode);
                        escaped(out, decoded.as_deref().or(raw));
                    }
                    Atom::Query => escaped(out, query.map(str::as_bytes).or(Some(b""))),
                    Atom::Protocol => escaped(out, protocol.map(str::as_bytes)),
                    Atom::Status => number(out, u64::from(rec.status)),
                    Atom::Bytes => number(out, rec.bytes),
                    Atom::BytesClf if rec.bytes == 0 => out.push(b'-'),
                    Atom::BytesClf => number(out, rec.bytes),
                    Atom::Secs => number(out, rec.elapsed.as_secs()),
                    Atom::Millis => number(out, rec.elapsed.as_millis() as u64),
                    Atom::Micros => number(out, rec.elapsed.as_micros() as u64),
                    Atom::Decimal => {
                        let _ = write!(
                            out,
                            "{}.{:06}",
                            rec.elapsed.as_secs(),
                            rec.elapsed.subsec_micros()
                        );
                    }
                    Atom::Pid => {
                        let _ = write!(out, "<{}>", rec.pid);
                    }
                    Atom::RequestHeader(i) => {
                        let value = rec.request_headers.get(*i).and_then(|v| v.as_deref());
                        escaped(out, value);
                    }
                    Atom::ResponseHeader(name) => {
                        escaped(out, response_header(rec.response_headers, name));
                    }
                    Atom::Environ(key) => environ_value(out, rec.environ, key),
                },
            }
        }
    }
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `value` escaped (see the module doc), or `-` when there is none.
fn escaped(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        out.push(b'-');
        return;
    };
    for &b in value {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
        }
    }
}

fn response_header<'h>(head: &'h [u8], name: &str) -> Option<&'h [u8]> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (n, v) = line.split_at(colon);
        n.eq_ignore_ascii_case(name.as_bytes())
            .then(|| v[1..].trim_ascii())
    })
}

fn environ_value(out: &mut Vec<u8>, environ: Option<&Bound<'_, PyDict>>, key: &str) {
    let value = environ
        .and_then(|e| e.get_item(key).ok().flatten())
        .and_then(|v| v.str().ok().map(|s| s.to_string_lossy().into_owned()));
    escaped(out, value.as_deref().map(str::as_bytes));
}

/// The user name of an `Authorization: Basic` header.
fn basic_user(value: &[u8]) -> Option<Vec<u8>> {
    let value = value.trim_ascii();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64_decode(token.trim_ascii())?;
    let end = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[..end].to_vec())
}

fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in input.iter().take_while(|&&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(headers: &'a [Option<Vec<u8>>], line: &'a str) -> Record<'a, 'a> {
        Record {
            remote: "10.0.0.7",
            line,
            status: 200,
            bytes: 1234,
            elapsed: Duration::from_micros(1_500_250),
            request_headers: headers,
            response_headers: b"Content-Type: text/plain\r\nX-Trace:  abc \r\n",
            environ: None,
            time: "06/Nov/1994:08:49:37 +0000",
            pid: 42,
        }
    }

    fn render(spec: &str, headers: &[Option<Vec<u8>>], line: &str) -> String {
        let f = Format::parse(spec).unwrap();
        let mut out = Vec::new();
        f.render(&mut out, &record(headers, line));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_default_is_gunicorns_common_log_format() {
        let f = Format::parse(DEFAULT).unwrap();
        assert_eq!(
            f.request_headers(),
            ["authorization", "referer", "user-agent"]
        );
        let headers = [
            Some(b"Basic YWxpY2U6c2VjcmV0".to_vec()),
            None,
            Some(b"curl/8.0".to_vec()),
        ];
        assert_eq!(
            render(DEFAULT, &headers, "GET /a%20b?x=1 HTTP/1.1"),
            r#"10.0.0.7 - alice [06/Nov/1994:08:49:37 +0000] "GET /a%20b?x=1 HTTP/1.1" 200 1234 "-" "curl/8.0""#
        );
    }

    #[test]
    fn every_atom() {
        let line = "POST /p%C3%A9?q=1&r HTTP/1.0";
        let spec = "%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(T)s|%(M)s|%(D)s|%(L)s|%(p)s|%(l)s|%%";
        assert_eq!(
            render(spec, &[], line),
            r"POST|/p\xc3\xa9|q=1&r|HTTP/1.0|200|1234|1|1500|1500250|1.500250|<42>|-|%"
        );
        let out = render(
            "%({X-Trace}o)s %({content-type}o)d %({missing}o)s",
            &[],
            line,
        );
        assert_eq!(out, "abc text/plain -");
    }

    #[test]
    fn client_values_cannot_forge_a_line() {
        let headers = [Some(b"a\"b\\c\x01\xff".to_vec())];
        let out = render("%({X-Evil}i)s", &headers, "GET / HTTP/1.1");
        assert_eq!(out, r#"a\"b\\c\x01\xff"#);
    }

    #[test]
    fn request_headers_are_captured_once_each() {
        let f = Format::parse("%(a)s %({User-Agent}i)s %({x-a}i)s %(f)s").unwrap();
        assert_eq!(f.request_headers(), ["user-agent", "x-a", "referer"]);
        assert!(!f.needs_environ());
        assert!(Format::parse("%({REMOTE_USER}e)s").unwrap().needs_environ());
    }

    #[test]
    fn bad_formats_are_refused() {
        for bad in ["%(zz)s", "%(h", "100% sure", "%({x}z)s", "%({}i)s"] {
            assert!(Format::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(render("no atoms", &[], "-"), "no atoms");
    }

    #[test]
    fn a_refusal_without_a_request_line() {
        assert_eq!(
            render("\"%(r)s\" %(m)s %(U)s %(b)s", &[], "-"),
            "\"-\" - - 1234"
        );
    }

    #[test]
    fn basic_auth_user() {
        assert_eq!(
            basic_user(b"Basic YWxpY2U6c2VjcmV0"),
            Some(b"alice".to_vec())
        );
        assert_eq!(basic_user(b"basic Ym9iOg=="), Some(b"bob".to_vec()));
        assert_eq!(basic_user(b"Bearer abc"), None);
        assert_eq!(basic_user(b"Basic !!!"), None);
        assert_eq!(basic_user(b"Basic bm9jb2xvbg=="), None);
    }
}

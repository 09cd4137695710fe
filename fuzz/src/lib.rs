//! Helpers shared by the fuzz targets: fuzzer-chosen parameters read off the front of
//! an input, the independent re-derivation of what a parsed request head must say, and
//! the switch for checks of known, reported and not yet fixed bugs.

use std::mem::MaybeUninit;

use ferrule::http::error::HttpError;
use ferrule::http::head::{self, Framing, Head, Limits};

/// Reads parameters off the front of a fuzz input; past its end every read is 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Small limits chosen by the fuzzer (so every limit is reached by short inputs), or
/// the defaults, as the first byte says.
pub fn limits(input: &mut Input<'_>) -> Limits {
    if input.byte() & 1 == 0 {
        return Limits::default();
    }
    Limits {
        line: usize::from(input.byte()),
        fields: usize::from(input.byte() % 16),
        field_size: usize::from(input.byte()),
        body: u64::from(input.u16()),
    }
}

/// An owned copy of a parsed head, to compare two parses.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub method: String,
    pub target: String,
    pub http11: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    pub content_length: Option<u64>,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub host: Option<Vec<u8>>,
    pub len: usize,
}

impl Summary {
    pub fn of(h: &Head<'_, '_>) -> Summary {
        Summary {
            method: h.method.to_string(),
            target: h.target.to_string(),
            http11: h.http11,
            headers: h
                .headers
                .iter()
                .map(|f| (f.name.to_string(), f.value.to_vec()))
                .collect(),
            framing: h.framing,
            content_length: h.content_length,
            keep_alive: h.keep_alive,
            expect_continue: h.expect_continue,
            host: h.host.map(<[u8]>::to_vec),
            len: h.len,
        }
    }
}

/// Parses `buf` as the server does (`limits.fields + 1` header slots).
pub fn parse_summary(buf: &[u8], limits: &Limits) -> Result<Option<Summary>, HttpError> {
    let mut slots = vec![MaybeUninit::uninit(); limits.fields + 1];
    head::parse(buf, &mut slots, limits).map(|h| h.as_ref().map(Summary::of))
}

pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ows(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ows(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// The comma-separated elements of a field value, trimmed, empty ones dropped.
fn elements(v: &[u8]) -> Vec<&[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
        .collect()
}

fn named<'a>(s: &'a Summary, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    s.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Every status `head::parse` may answer with.
pub fn check_error(e: &HttpError) {
    assert!(
        matches!(e.status(), 400 | 413 | 414 | 417 | 431 | 501 | 505),
        "parse gave status {}",
        e.status()
    );
    assert!(!e.detail().is_empty());
}

/// What a head parsed from `buf` under `limits` must say, re-derived from the bytes and
/// the header list without the parser's code: RFC 9112's framing rules, the limits, and
/// the shape of every field (no CR, LF or NUL can reach the app).
pub fn check_head(buf: &[u8], limits: &Limits, s: &Summary) {
    // The head is a prefix of the buffer ending in the empty line, and uses CRLF only.
    assert!(s.len <= buf.len(), "head longer than its buffer");
    let head = &buf[..s.len];
    assert!(head.ends_with(b"\r\n\r\n"), "head not ended by CRLF CRLF");
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && head[i - 1] == b'\r', "bare LF accepted at {i}"),
            b'\r' => assert!(head.get(i + 1) == Some(&b'\n'), "bare CR accepted at {i}"),
            0 => panic!("NUL accepted in the head at {i}"),
            _ => {}
        }
    }

    // The request line: after any empty lines, exactly `method SP target SP version`.
    let mut rest = head;
    while let Some(r) = rest.strip_prefix(b"\r\n") {
        rest = r;
    }
    let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
    let line = &rest[..eol];
    assert!(line.len() <= limits.line, "request line over the limit");
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    assert_eq!(parts.len(), 3, "request line is not three words");
    assert_eq!(parts[0], s.method.as_bytes());
    assert_eq!(parts[1], s.target.as_bytes());
    assert!(!s.method.is_empty() && s.method.bytes().all(is_tchar));
    assert!(!s.target.is_empty());
    assert!(
        s.target.bytes().all(|b| b > b' ' && b != 0x7F),
        "control byte or space in the target"
    );
    match parts[2] {
        b"HTTP/1.1" => assert!(s.http11),
        b"HTTP/1.0" => assert!(!s.http11),
        v => panic!("version {:?} accepted", String::from_utf8_lossy(v)),
    }
    // RFC 9112 §3.2: which target forms go with which method.
    let t = s.target.as_bytes();
    let lower = s.target.to_ascii_lowercase();
    let absolute = (lower.starts_with("http://") || lower.starts_with("https://")) && t.len() > 7;
    if s.method == "CONNECT" {
        assert!(!t.starts_with(b"/") && !absolute && t != b"*");
    } else if t == b"*" {
        assert_eq!(s.method, "OPTIONS");
    } else {
        assert!(t.starts_with(b"/") || absolute, "target form accepted");
    }

    // The fields: within the limits, names tokens, values field-content without
    // surrounding whitespace (RFC 9110 §5.5).
    assert!(
        s.headers.len() <= limits.fields,
        "more fields than the limit"
    );
    assert!(
        s.len <= limits.max_head(),
        "head longer than the head limit"
    );
    // The limit is on the field line as sent (without CRLF), whitespace included.
    let fields = &rest[eol + 2..rest.len() - 2];
    for line in fields.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(line.len() <= limits.field_size, "field line over the limit");
    }
    for (name, value) in &s.headers {
        // The line as sent holds at least `name:value`.
        assert!(name.len() + 1 + value.len() <= limits.field_size);
        assert!(
            !name.is_empty() && name.bytes().all(is_tchar),
            "bad name {name:?}"
        );
        assert!(
            value
                .iter()
                .all(|&b| b == b'\t' || (b' '..=0x7E).contains(&b) || b >= 0x80),
            "control byte in the value of {name}: {value:?}"
        );
        assert_eq!(
            trim_ows(value),
            value.as_slice(),
            "untrimmed value of {name}"
        );
    }

    // Framing (RFC 9112 §6): Transfer-Encoding (HTTP/1.1 only, chunked last and once,
    // never beside Content-Length), else Content-Length (identical valid values).
    let te: Vec<&[u8]> = named(s, "transfer-encoding").flat_map(elements).collect();
    let cls: Vec<&[u8]> = named(s, "content-length").map(trim_ows).collect();
    let has_te = named(s, "transfer-encoding").next().is_some();
    if has_te {
        assert!(s.http11, "Transfer-Encoding in HTTP/1.0 accepted");
        assert!(cls.is_empty(), "both Transfer-Encoding and Content-Length");
        assert_eq!(te.len(), 1, "codings other than chunked accepted: {te:?}");
        assert!(te[0].eq_ignore_ascii_case(b"chunked"));
        assert_eq!(s.framing, Framing::Chunked);
        assert_eq!(s.content_length, None);
    } else {
        assert_ne!(s.framing, Framing::Chunked);
        let mut n = None;
        for v in &cls {
            assert!(
                !v.is_empty() && v.len() <= 18 && v.iter().all(u8::is_ascii_digit),
                "Content-Length {v:?} accepted"
            );
            let x: u64 = std::str::from_utf8(v).unwrap().parse().unwrap();
            assert!(n.is_none() || n == Some(x), "conflicting Content-Length");
            n = Some(x);
        }
        assert_eq!(s.content_length, n);
        match n {
            None | Some(0) => assert_eq!(s.framing, Framing::Empty),
            Some(x) => {
                assert_eq!(s.framing, Framing::Length(x));
                assert!(limits.body == 0 || x <= limits.body, "body over the limit");
            }
        }
    }

    // Host: exactly one in HTTP/1.1, at most one in HTTP/1.0; one Content-Type.
    let hosts: Vec<&[u8]> = named(s, "host").collect();
    assert!(hosts.len() <= 1 && (!s.http11 || hosts.len() == 1));
    assert_eq!(s.host.as_deref(), hosts.first().map(|h| trim_ows(h)));
    assert!(named(s, "content-type").count() <= 1);

    // Connection and Expect.
    let conn: Vec<&[u8]> = named(s, "connection").flat_map(elements).collect();
    let close = conn.iter().any(|o| o.eq_ignore_ascii_case(b"close"));
    let ka = conn.iter().any(|o| o.eq_ignore_ascii_case(b"keep-alive"));
    assert_eq!(s.keep_alive, !close && (s.http11 || ka));
    let expects: Vec<&[u8]> = named(s, "expect").collect();
    assert!(expects
        .iter()
        .all(|v| trim_ows(v).eq_ignore_ascii_case(b"100-continue")));
    assert_eq!(s.expect_continue, s.http11 && !expects.is_empty());
}

/// Parsing must not depend on how the bytes arrived: the server re-parses its buffer
/// after every read, so every prefix of a buffer that parses (to a head or to "need
/// more") must itself need more, never fail or yield a different head. Checks the
/// prefixes at `cuts` (fractions of 256), one byte short, and at the head-size limit.
pub fn check_prefixes(buf: &[u8], limits: &Limits, whole: &Option<Summary>, cuts: &[u8]) {
    let end = whole.as_ref().map_or(buf.len(), |s| s.len);
    if end == 0 {
        return;
    }
    let mut at: Vec<usize> = cuts.iter().map(|&c| end * usize::from(c) / 256).collect();
    at.push(end - 1);
    at.push(limits.max_head().saturating_add(1).min(end - 1));
    for k in at {
        match parse_summary(&buf[..k], limits) {
            Ok(None) => {}
            other => panic!(
                "prefix of {k} bytes gave {other:?}, the whole {} bytes {whole:?}",
                buf.len()
            ),
        }
    }
    if let Some(s) = whole {
        // Bytes after the head (a body, a pipelined request) change nothing.
        assert_eq!(
            parse_summary(&buf[..s.len], limits).unwrap().as_ref(),
            Some(s)
        );
    }
}

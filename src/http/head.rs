//! Parsing and validating a request head (RFC 9112 §2–§7): the request line, the
//! header fields, the limits, and the message framing the head implies.
//!
//! > If a message is received with both a Transfer-Encoding and a Content-Length header
//! > field, the Transfer-Encoding overrides the Content-Length. Such a message might
//! > indicate an attempt to perform request smuggling … A server MAY reject [it].
//! > — RFC 9112 §6.1
//!
//! ferrule rejects it, and every other ambiguous framing, with 400.

use std::mem::MaybeUninit;

use super::error::HttpError;

/// Size limits on a request head and body.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest request line, in bytes (without CRLF).
    pub line: usize,
    /// Most header fields.
    pub fields: usize,
    /// Longest header field (`name: value`), in bytes.
    pub field_size: usize,
    /// Largest body; 0 means unlimited.
    pub body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            line: 8190,
            fields: 100,
            field_size: 8190,
            body: 0,
        }
    }
}

impl Limits {
    /// The most bytes a complete head can take; a partial head beyond this is refused.
    pub fn max_head(&self) -> usize {
        self.line + 2 + (self.fields + 1) * (self.field_size + 2) + 2
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head; the slices borrow the read buffer.
#[derive(Debug)]
pub struct Head<'h, 'b> {
    pub method: &'b str,
    pub target: &'b str,
    /// HTTP/1.1 (true) or HTTP/1.0.
    pub http11: bool,
    pub headers: &'h [httparse::Header<'b>],
    pub framing: Framing,
    /// The Content-Length, once, however many identical fields carried it.
    pub content_length: Option<u64>,
    /// Whether the client allows the connection to stay open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// The Host header's value, when present.
    pub host: Option<&'b [u8]>,
    /// A `Forwarded` or `X-Forwarded-{For,Proto,Ssl,Protocol}` field is present.
    pub forwarded: bool,
    /// Bytes of the buffer the head used.
    pub len: usize,
}

/// Storage for parsed header fields; sized by the caller to `limits.fields + 1`.
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>];

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Splits a comma-separated field value into trimmed, non-empty elements.
pub fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|e| !e.is_empty())
}

fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    let v = trim(v);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest("invalid Content-Length"));
    }
    Ok(v.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
}

/// Whether `head` has an LF not preceded by CR. Written as one pass with no early exit
/// so that it compiles to vector instructions: it runs on every request head, which has
/// a few LFs close together (one search call per LF cost more than this pass).
fn has_bare_lf(head: &[u8]) -> bool {
    let first = head.first() == Some(&b'\n');
    let rest = head
        .iter()
        .zip(head.iter().skip(1))
        .fold(false, |bad, (&prev, &b)| {
            bad | ((b == b'\n') & (prev != b'\r'))
        });
    first | rest
}

/// Checks the request line's length before the full parse, so an over-long line
/// gets 414 even while the rest of the head is still arriving.
fn check_request_line(buf: &[u8], limit: usize) -> Result<(), HttpError> {
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    match memchr::memchr(b'\n', rest) {
        Some(nl) => {
            let line = if nl > 0 && rest[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if line > limit {
                return Err(HttpError::UriTooLong);
            }
        }
        None if rest.len() > limit + 1 => return Err(HttpError::UriTooLong),
        None => {}
    }
    Ok(())
}

fn version_error(buf: &[u8]) -> HttpError {
    // "HTTP/2.0" and friends are well-formed but unsupported; anything else is garbage.
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    let line = &buf[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(pos) = line.windows(5).rposition(|w| w == b"HTTP/") {
        let v = &line[pos + 5..];
        if v.len() == 3
            && v[0].is_ascii_digit()
            && v[1] == b'.'
            && v[2].is_ascii_digit()
            && v[0] != b'1'
            && v[0] != b'0'
        {
            return HttpError::VersionNotSupported;
        }
    }
    HttpError::BadRequest("invalid HTTP version")
}

fn map_parse_error(e: httparse::Error, buf: &[u8]) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeadersTooLarge("too many header fields"),
        httparse::Error::Version => version_error(buf),
        httparse::Error::HeaderName => HttpError::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => HttpError::BadRequest("invalid header value"),
        httparse::Error::NewLine => HttpError::BadRequest("invalid line ending"),
        httparse::Error::Token => HttpError::BadRequest("invalid request line"),
        httparse::Error::Status => HttpError::BadRequest("invalid request line"),
    }
}

/// RFC 9112 §3.2: origin-form (`/path`) and absolute-form (`http://host/path`) for any
/// method; asterisk-form (`*`) only with OPTIONS; authority-form (`host:port`) only
/// with CONNECT, which takes nothing else.
fn check_target_form(method: &str, target: &str) -> Result<(), HttpError> {
    let t = target.as_bytes();
    let scheme = if t.len() > 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if t.len() > 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        0
    };
    // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid and must be rejected.
    let authority = t.get(scheme..).unwrap_or_default();
    let host_len = authority
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(authority.len());
    let absolute = scheme > 0 && host_len > 0;
    let ok = if method == "CONNECT" {
        // authority-form is `host:port`: no path, no `*`, and no scheme (an `http://` URI
        // with an empty host is neither a valid absolute-form nor an authority).
        !t.starts_with(b"/") && scheme == 0 && t != b"*"
    } else if t == b"*" {
        method == "OPTIONS"
    } else {
        t.starts_with(b"/") || absolute
    };
    if ok {
        Ok(())
    } else {
        Err(HttpError::BadRequest(
            "request target form not allowed for this method",
        ))
    }
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` when the head is not complete yet (and within limits).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
    limits: &Limits,
) -> Result<Option<Head<'h, 'b>>, HttpError> {
    check_request_line(buf, limits.line)?;
    let mut req = httparse::Request::new(&mut []);
    let status = req
        .parse_with_uninit_headers(buf, slots)
        .map_err(|e| map_parse_error(e, buf))?;
    let len = match status {
        httparse::Status::Complete(n) if n > limits.max_head() => {
            return Err(HttpError::HeadersTooLarge("request head too large"))
        }
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            if buf.len() > limits.max_head() {
                return Err(HttpError::HeadersTooLarge("request head too large"));
            }
            return Ok(None);
        }
    };
    // httparse takes a bare LF as a line ending. RFC 9112 §2.2 lets a server refuse it,
    // and one that accepts it behind a proxy that does not is a smuggling vector.
    if has_bare_lf(&buf[..len]) {
        return Err(HttpError::BadRequest("bare LF in the request head"));
    }
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    check_target_form(method, target)?;
    let http11 = req.version == Some(1);
    let headers: &'h [httparse::Header<'b>] = req.headers;
    if headers.len() > limits.fields {
        return Err(HttpError::HeadersTooLarge("too many header fields"));
    }

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut host: Option<&'b [u8]> = None;
    let mut hosts = 0;
    let mut content_types = 0;
    let mut forwarded = false;

    // A field line as sent, whitespace around the value included (the slices httparse gives
    // are trimmed): from its name to the CRLF before the next name, or before the final CRLF.
    let base = buf.as_ptr() as usize;
    for (i, h) in headers.iter().enumerate() {
        let start = h.name.as_ptr() as usize - base;
        let end = match headers.get(i + 1) {
            Some(next) => (next.name.as_ptr() as usize - base).saturating_sub(2),
            None => len.saturating_sub(4),
        };
        if end.saturating_sub(start) > limits.field_size {
            return Err(HttpError::HeadersTooLarge("header field too large"));
        }
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value)?;
            match content_length {
                Some(prev) if prev != n => {
                    return Err(HttpError::BadRequest("conflicting Content-Length"))
                }
                _ => content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            for coding in list_elements(h.value) {
                if chunked {
                    // RFC 9112 §6.3: chunked must be the final coding, applied once.
                    return Err(HttpError::BadRequest("chunked is not the final coding"));
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else if coding
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                {
                    return Err(HttpError::NotImplemented("unsupported transfer coding"));
                } else {
                    return Err(HttpError::BadRequest("invalid Transfer-Encoding"));
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for opt in list_elements(h.value) {
                if opt.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                expect_continue = http11;
            } else {
                return Err(HttpError::ExpectationFailed);
            }
        } else if name.eq_ignore_ascii_case(b"content-type") {
            // One media type: two cannot be joined into a meaningful value.
            content_types += 1;
            if content_types > 1 {
                return Err(HttpError::BadRequest("more than one Content-Type"));
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            host = Some(trim(h.value));
        } else if matches!(name.first(), Some(b'x' | b'X' | b'f' | b'F'))
            && (name.eq_ignore_ascii_case(b"x-forwarded-for")
                || name.eq_ignore_ascii_case(b"x-forwarded-proto")
                || name.eq_ignore_ascii_case(b"x-forwarded-ssl")
                || name.eq_ignore_ascii_case(b"x-forwarded-protocol")
                || name.eq_ignore_ascii_case(b"forwarded"))
        {
            forwarded = true;
        }
    }

    if has_te {
        if !http11 {
            return Err(HttpError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if content_length.is_some() {
            return Err(HttpError::BadRequest(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if !chunked {
            return Err(HttpError::BadRequest("Transfer-Encoding without chunked"));
        }
    }
    if http11 && hosts != 1 {
        return Err(HttpError::BadRequest(
            "HTTP/1.1 requires exactly one Host header",
        ));
    }
    if hosts > 1 {
        return Err(HttpError::BadRequest("more than one Host header"));
    }
    let framing = if chunked {
        Framing::Chunked
    } else {
        match content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    if let Framing::Length(n) = framing {
        if limits.body > 0 && n > limits.body {
            return Err(HttpError::BodyTooLarge);
        }
    }
    let keep_alive = if http11 {
        !conn_close
    } else {
        conn_keep_alive && !conn_close
    };
    Ok(Some(Head {
        method,
        target,
        http11,
        headers,
        framing,
        content_length,
        keep_alive,
        expect_continue,
        host,
        forwarded,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// method, target, http11, framing, keep_alive, head length
    type Summary = (String, String, bool, Framing, bool, usize);

    fn run(buf: &[u8]) -> Result<Option<Summary>, HttpError> {
        run_with(buf, &Limits::default())
    }

    fn run_with(buf: &[u8], limits: &Limits) -> Result<Option<Summary>, HttpError> {
        let mut slots = vec![MaybeUninit::uninit(); limits.fields + 1];
        Ok(parse(buf, &mut slots, limits)?.map(|h| {
            (
                h.method.to_string(),
                h.target.to_string(),
                h.http11,
                h.framing,
                h.keep_alive,
                h.len,
            )
        }))
    }

    #[test]
    fn bare_lf_is_found_wherever_it_is() {
        // Against the plain definition, on every arrangement of CR, LF and one other byte.
        let naive = |h: &[u8]| (0..h.len()).any(|i| h[i] == b'\n' && (i == 0 || h[i - 1] != b'\r'));
        for len in 0..=8 {
            for code in 0..3usize.pow(len) {
                let mut c = code;
                let head: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = [b'\r', b'\n', b'a'][c % 3];
                        c /= 3;
                        b
                    })
                    .collect();
                assert_eq!(has_bare_lf(&head), naive(&head), "{head:?}");
            }
        }
        // Past the vector width, at every position.
        let line = b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: some client/1.0\r\n\r\n";
        assert!(!has_bare_lf(line));
        for i in 0..line.len() {
            if line[i] == b'\r' {
                let mut bad = line.to_vec();
                bad[i] = b'x';
                assert!(has_bare_lf(&bad), "CR at {i} replaced");
            }
        }
    }

    #[test]
    fn simple_get() {
        let r = run(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(r.0, "GET");
        assert_eq!(r.1, "/a?b=c");
        assert!(r.2);
        assert_eq!(r.3, Framing::Empty);
        assert!(r.4);
        assert_eq!(r.5, 32);
    }

    #[test]
    fn partial_head_is_none() {
        assert!(run(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn keep_alive_rules() {
        let r = run(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.4);
        let r = run(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.4);
        let r = run(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.4);
    }

    #[test]
    fn framing() {
        let r = run(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.3, Framing::Length(5));
        let r = run(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.3, Framing::Chunked);
        let r =
            run(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(r.3, Framing::Length(5));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\n Transfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ];
        for c in cases {
            let e = run(c).expect_err(&String::from_utf8_lossy(c));
            assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn unknown_coding_is_501() {
        let e = run(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap_err();
        assert_eq!(e.status(), 501);
    }

    #[test]
    fn limits() {
        let limits = Limits {
            line: 20,
            fields: 2,
            field_size: 20,
            body: 10,
        };
        let e = run_with(b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &limits).unwrap_err();
        assert_eq!(e.status(), 414);
        let e = run_with(
            b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n",
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.status(), 431);
        let e = run_with(
            b"GET / HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxx\r\n\r\n",
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.status(), 431);
        let e = run_with(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.status(), 413);
    }

    #[test]
    fn absolute_form_needs_a_host() {
        // RFC 9110 4.2.1 (noticed while fuzzing): an http URI with an empty host is invalid.
        for bad in [
            "http:///x",
            "http://?q",
            "HTTPS:///",
            "http://#f",
            "http://",
        ] {
            let req = format!("GET {bad} HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(run(req.as_bytes()).unwrap_err().status(), 400, "{bad}");
        }
        for good in ["http://h/x", "HTTPS://h", "http://h?q", "http://[::1]:80/"] {
            let req = format!("GET {good} HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(run(req.as_bytes()).unwrap().is_some(), "{good}");
        }
    }

    #[test]
    fn connect_takes_only_authority_form() {
        // Found by the fuzzer: `http:///…` (an empty host) passed as CONNECT's target.
        for bad in [
            "http:///exampl#.com:443",
            "http://h:443",
            "HTTPS://h",
            "/x",
            "*",
        ] {
            let req = format!("CONNECT {bad} HTTP/1.1\r\nHost: h:443\r\n\r\n");
            assert_eq!(run(req.as_bytes()).unwrap_err().status(), 400, "{bad}");
        }
        let req = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        assert!(run(req).unwrap().is_some());
    }

    #[test]
    fn field_size_counts_the_whitespace_around_a_value() {
        // The limit is on the field line as sent (found while fuzzing:
        // fuzz/regressions/head-field-size-ows).
        let limits = Limits {
            line: 100,
            fields: 10,
            field_size: 30,
            body: 10,
        };
        let padded = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Pad:{}v\r\n\r\n",
            " ".repeat(60)
        );
        assert_eq!(
            run_with(padded.as_bytes(), &limits).unwrap_err().status(),
            431
        );
        let fits = format!(
            "GET / HTTP/1.1\r\nX-Pad:{}v   \r\nHost: x\r\n\r\n",
            " ".repeat(20)
        );
        assert_eq!(fits.lines().nth(1).map(str::len), Some(30));
        assert!(run_with(fits.as_bytes(), &limits).unwrap().is_some());
        let over = fits.replacen("X-Pad:", "X-Pad: ", 1);
        assert_eq!(
            run_with(over.as_bytes(), &limits).unwrap_err().status(),
            431
        );
    }

    #[test]
    fn complete_head_is_held_to_the_head_limit() {
        // Found by fuzzing (fuzz/regressions/head-complete-head-over-max-head): a value's
        // surrounding whitespace and empty lines before the request line count towards
        // no field limit, so a head that arrived whole could be longer than a partial
        // one may grow, and the answer depended on how the bytes were split.
        let limits = Limits {
            line: 40,
            fields: 2,
            field_size: 30,
            body: 10,
        };
        let padded = format!("GET / HTTP/1.1\r\nHost: {}x\r\n\r\n", " ".repeat(120));
        let leading = format!("{}GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n".repeat(60));
        for buf in [padded, leading] {
            let buf = buf.as_bytes();
            assert!(buf.len() > limits.max_head());
            assert_eq!(run_with(buf, &limits).unwrap_err().status(), 431);
            assert_eq!(
                run_with(&buf[..buf.len() - 1], &limits)
                    .unwrap_err()
                    .status(),
                431
            );
        }
    }

    #[test]
    fn versions() {
        assert_eq!(run(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().status(), 505);
        assert_eq!(run(b"GET / HTTP/1.x\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(run(b"GET / FOO\r\n\r\n").unwrap_err().status(), 400);
    }

    #[test]
    fn nul_in_target_is_refused() {
        assert_eq!(
            run(b"GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn expect() {
        let mut slots = vec![MaybeUninit::uninit(); 101];
        let h = parse(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            &mut slots,
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert!(h.expect_continue);
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n")
                .unwrap_err()
                .status(),
            417
        );
    }
}

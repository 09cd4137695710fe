//! Response heads: validating what the app gives `start_response`, deciding the
//! framing (RFC 9112 §6.1–§6.3) and encoding the head in one buffer.

/// How the response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length: n` (the app's, or one we computed).
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only).
    Chunked,
    /// Delimited by closing the connection (HTTP/1.0, length unknown).
    Close,
    /// The status forbids a body (1xx, 204, 304).
    NoBody,
}

/// Parses a WSGI status string: three digits, a space, and a reason phrase.
pub fn parse_status(status: &[u8]) -> Result<u16, &'static str> {
    if status.len() < 4 || status[3] != b' ' || !status[..3].iter().all(u8::is_ascii_digit) {
        return Err("status must be 'NNN Reason'");
    }
    let code = status[..3]
        .iter()
        .fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
    if code < 100 {
        return Err("status code below 100");
    }
    if status[4..]
        .iter()
        .any(|&b| b < 0x20 && b != b'\t' || b == 0x7f)
    {
        return Err("control character in status");
    }
    Ok(code)
}

/// Whether a response with this status and request method carries no body.
pub fn status_has_no_body(code: u16) -> bool {
    (100..200).contains(&code) || code == 204 || code == 304
}

/// `TCHAR[b]`: whether `b` may appear in a token (RFC 9110 §5.6.2).
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// Checks a header field name (a token) and value (no CR, LF or other controls).
///
/// Both run for every header of every response, and a bad byte is rare: each check is
/// one pass with no early exit and no branch per byte (the value's compiles to vector
/// instructions).
pub fn check_header(name: &[u8], value: &[u8]) -> Result<(), &'static str> {
    let token = name.iter().fold(true, |ok, &b| ok & TCHAR[usize::from(b)]);
    if name.is_empty() || !token {
        return Err("invalid header name");
    }
    let control = value.iter().fold(false, |bad, &b| {
        bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    });
    if control {
        return Err("control character (CR, LF, NUL …) in header value");
    }
    Ok(())
}

/// Hop-by-hop headers, which belong to the server (PEP 3333 §Other HTTP Features).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 8] = [
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Where [`head_start`] leaves the `Date` value (29 bytes) in the head it began.
pub const DATE_LEN: usize = 29;

/// Begins a response head in `out`: the status line, `Server`, and a `Date` line whose value
/// is left blank for the sender to fill (the bytes at the returned offset).
pub fn head_start(out: &mut Vec<u8>, status: &[u8]) -> usize {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\nServer: ferrule\r\nDate: ");
    let date_at = out.len();
    out.extend_from_slice(&[b' '; DATE_LEN]);
    out.extend_from_slice(b"\r\n");
    date_at
}

/// Ends a response head begun by [`head_start`] (and the header lines after it): the
/// framing and `Connection` lines, and the blank line.
pub fn head_end(
    out: &mut Vec<u8>,
    framing: BodyFraming,
    app_gave_length: bool,
    connection: Option<&'static [u8]>,
) {
    match framing {
        BodyFraming::Length(n) if !app_gave_length => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    if let Some(c) = connection {
        out.extend_from_slice(b"Connection: ");
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response head to `out`.
///
/// `status` is the status line ("200 OK"), `headers` pre-encoded `Name: value\r\n` lines.
pub fn write_head(
    out: &mut Vec<u8>,
    status: &[u8],
    headers: &[u8],
    date: &[u8; DATE_LEN],
    framing: BodyFraming,
    app_gave_length: bool,
    connection: Option<&'static [u8]>,
) {
    // Everything but the fixed lines is `status` and `headers`: one allocation.
    out.reserve(status.len() + headers.len() + 160);
    let date_at = head_start(out, status);
    out[date_at..date_at + DATE_LEN].copy_from_slice(date);
    out.extend_from_slice(headers);
    head_end(out, framing, app_gave_length, connection);
}

/// The chunk-size line for a chunk of `n` bytes (`n` in hex, CRLF).
pub fn chunk_size_line(n: usize, out: &mut [u8; 18]) -> &[u8] {
    let mut len = 0;
    let mut digits = [0u8; 16];
    let mut v = n;
    loop {
        digits[len] = b"0123456789abcdef"[v & 15];
        len += 1;
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = b'\r';
    out[len + 1] = b'\n';
    &out[..len + 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(parse_status(b"200 OK"), Ok(200));
        assert_eq!(parse_status(b"404 "), Ok(404));
        assert!(parse_status(b"200").is_err());
        assert!(parse_status(b"20 OK").is_err());
        assert!(parse_status(b"200 OK\r\nX: y").is_err());
        assert!(parse_status(b"099 Low").is_err());
    }

    #[test]
    fn headers() {
        assert!(check_header(b"X-A", b"b c").is_ok());
        assert!(check_header(b"X A", b"b").is_err());
        assert!(check_header(b"X-A", b"b\r\nInjected: 1").is_err());
        assert!(check_header(b"X-A", b"b\nc").is_err());
        assert!(check_header(b"X-A", b"b\0").is_err());
        assert!(is_hop_by_hop(b"Transfer-Encoding"));
        assert!(!is_hop_by_hop(b"Content-Length"));
    }

    #[test]
    fn every_byte_at_every_position_of_a_name_and_a_value() {
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        let control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
        // Longer than a vector register, so the bad byte lands in each lane and the tail.
        let (name, value) = (b"X-Long-Header-Name-Past-Thirty-Two-Bytes", [b'v'; 40]);
        assert!(check_header(name, &value).is_ok());
        for b in 0..=255u8 {
            for i in [0, 1, 15, 16, 31, 32, 39] {
                let mut n = name.to_vec();
                n[i] = b;
                assert_eq!(
                    check_header(&n, &value).is_ok(),
                    tchar(b),
                    "name byte {b:#x} at {i}"
                );
                let mut v = value;
                v[i] = b;
                assert_eq!(
                    check_header(name, &v).is_ok(),
                    !control(b),
                    "value byte {b:#x} at {i}"
                );
            }
        }
        assert!(check_header(b"", b"v").is_err());
        assert!(check_header(b"X", b"").is_ok());
    }

    #[test]
    fn head_layout() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            b"200 OK",
            b"Content-Type: text/plain\r\n",
            b"Mon, 23 Nov 2026 16:54:03 GMT",
            BodyFraming::Length(5),
            false,
            Some(b"keep-alive"),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: ferrule\r\nDate: Mon, 23 Nov 2026 16:54:03 GMT\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn chunk_lines() {
        let mut b = [0u8; 18];
        assert_eq!(chunk_size_line(0, &mut b), b"0\r\n");
        assert_eq!(chunk_size_line(255, &mut b), b"ff\r\n");
        assert_eq!(chunk_size_line(4096, &mut b), b"1000\r\n");
    }
}

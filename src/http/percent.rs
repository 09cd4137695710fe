//! Percent-decoding of the request path (RFC 3986 §2.1), byte for byte.

/// The value of one hex digit.
pub fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is kept as is.
/// Returns `None` when nothing needed decoding (the input can be used unchanged).
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let first = memchr::memchr(b'%', input)?;
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..first]);
    let mut i = first;
    while i < input.len() {
        let b = input[i];
        if b == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_escapes() {
        assert_eq!(decode(b"/a%20b").unwrap(), b"/a b");
        assert_eq!(decode(b"/%E2%82%AC").unwrap(), vec![b'/', 0xE2, 0x82, 0xAC]);
        assert_eq!(decode(b"/a%2Fb").unwrap(), b"/a/b");
    }

    #[test]
    fn keeps_bad_escapes() {
        assert_eq!(decode(b"/100%").unwrap(), b"/100%");
        assert_eq!(decode(b"/%zz%4").unwrap(), b"/%zz%4");
        assert_eq!(decode(b"/%4").unwrap(), b"/%4");
    }

    #[test]
    fn untouched_without_percent() {
        assert!(decode(b"/plain/path").is_none());
    }
}

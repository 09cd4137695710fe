//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer sends
//! first on each connection, naming the client it accepted.
//!
//! v1 is one text line, at most 107 bytes: `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`
//! (or `TCP6`, or `UNKNOWN`). v2 is binary: a 12-byte signature, a version/command byte, a
//! family/transport byte, a 16-bit length, then the addresses and optional TLVs.
//! A `LOCAL` command (v2) or `UNKNOWN` family (v1) means "use the real peer" (health checks).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Who the balancer says the client is.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// The client's address and port.
    Client(SocketAddr),
    /// No address given (v2 LOCAL, v1 UNKNOWN, or a non-IP family): keep the real peer.
    Peer,
}

/// Why a PROXY header was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct ProxyError(pub &'static str);

/// Parses a PROXY header at the start of `buf`: `Ok(None)` until it is complete, then the
/// source and the header's length.
pub fn parse(buf: &[u8]) -> Result<Option<(Source, usize)>, ProxyError> {
    if buf.len() < V2_SIGNATURE.len() {
        let v1 = b"PROXY ";
        let n = buf.len().min(v1.len());
        if buf[..n] == v1[..n] || buf[..] == V2_SIGNATURE[..buf.len()] {
            return Ok(None);
        }
        return Err(ProxyError("no PROXY protocol header"));
    }
    if buf.starts_with(V2_SIGNATURE) {
        v2(buf)
    } else if buf.starts_with(b"PROXY ") {
        v1(buf)
    } else {
        Err(ProxyError("no PROXY protocol header"))
    }
}

fn v1(buf: &[u8]) -> Result<Option<(Source, usize)>, ProxyError> {
    let Some(end) = memchr::memmem::find(&buf[..buf.len().min(V1_MAX)], b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError("PROXY v1 line too long"))
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| ProxyError("PROXY v1: not ASCII"))?;
    let mut words = line.split(' ');
    let source = match words.next() {
        Some("UNKNOWN") => Source::Peer,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = || words.next().ok_or(ProxyError("PROXY v1: missing field"));
            let (src, dst) = (next()?, next()?);
            let (sport, dport) = (next()?, next()?);
            let parse_ip = |s: &str| -> Result<IpAddr, ProxyError> {
                let ip: IpAddr = s.parse().map_err(|_| ProxyError("PROXY v1: bad address"))?;
                if ip.is_ipv4() != (family == "TCP4") {
                    return Err(ProxyError("PROXY v1: address does not match the family"));
                }
                Ok(ip)
            };
            let port = |s: &str| -> Result<u16, ProxyError> {
                if s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
                    return Err(ProxyError("PROXY v1: bad port"));
                }
                s.parse().map_err(|_| ProxyError("PROXY v1: bad port"))
            };
            let (ip, _) = (parse_ip(src)?, parse_ip(dst)?);
            let (p, _) = (port(sport)?, port(dport)?);
            if words.next().is_some() {
                return Err(ProxyError("PROXY v1: extra fields"));
            }
            Source::Client(SocketAddr::new(ip, p))
        }
        _ => return Err(ProxyError("PROXY v1: unknown protocol family")),
    };
    Ok(Some((source, end + 2)))
}

fn v2(buf: &[u8]) -> Result<Option<(Source, usize)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError("PROXY v2: unsupported version"));
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Err(ProxyError("PROXY v2: unknown command"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[16..len];
    if command == 0 {
        return Ok(Some((Source::Peer, len))); // LOCAL: the balancer's own connection
    }
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if transport > 2 || family > 3 {
        return Err(ProxyError("PROXY v2: unknown address family"));
    }
    if transport == 2 {
        return Err(ProxyError(
            "PROXY v2: a datagram source on a stream connection",
        ));
    }
    let source = match family {
        1 => {
            let a = body
                .get(..12)
                .ok_or(ProxyError("PROXY v2: short IPv4 block"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Source::Client(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        2 => {
            let a = body
                .get(..36)
                .ok_or(ProxyError("PROXY v2: short IPv6 block"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Source::Client(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // UNSPEC, or a unix-socket client: nothing to put in REMOTE_ADDR.
        _ => Source::Peer,
    };
    Ok(Some((source, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(ver_cmd: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(fam);
        h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    fn sa(s: &str) -> Source {
        Source::Client(s.parse().unwrap())
    }

    #[test]
    fn v1_lines() {
        let buf = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(buf), Ok(Some((sa("192.0.2.1:56324"), 45))));
        let buf = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
        assert_eq!(parse(buf), Ok(Some((sa("[2001:db8::1]:1"), buf.len()))));
        let buf = b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\n";
        assert_eq!(parse(buf), Ok(Some((Source::Peer, buf.len()))));
        // Incomplete until the CRLF, at any split.
        let full = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        for n in 0..full.len() {
            assert_eq!(parse(&full[..n]), Ok(None), "{n}");
        }
    }

    #[test]
    fn v1_refusals() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PROXZ",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [&b"PROXY TCP4 "[..], &[b'1'; 120]].concat();
        assert!(parse(&long).is_err());
    }

    #[test]
    fn v2_headers() {
        let inet = [192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 1, 187];
        let h = v2_header(0x21, 0x11, &inet, &[0x04, 0, 1, 0]); // with a NOOP TLV
        let mut buf = h.clone();
        buf.extend_from_slice(b"GET /");
        assert_eq!(parse(&buf), Ok(Some((sa("192.0.2.1:56324"), h.len()))));
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]), Ok(None), "{n}");
        }
        let mut inet6 = vec![0u8; 36];
        inet6[15] = 1;
        inet6[32..34].copy_from_slice(&8080u16.to_be_bytes());
        let h = v2_header(0x21, 0x21, &inet6, &[]);
        assert_eq!(parse(&h), Ok(Some((sa("[::1]:8080"), h.len()))));
        let h = v2_header(0x20, 0x00, &[], &[]);
        assert_eq!(parse(&h), Ok(Some((Source::Peer, 16))));
        let h = v2_header(0x21, 0x31, &[0u8; 216], &[]);
        assert_eq!(parse(&h), Ok(Some((Source::Peer, h.len()))));
    }

    #[test]
    fn v2_refusals() {
        let inet = [1u8; 12];
        for h in [
            v2_header(0x11, 0x11, &inet, &[]),      // version 1 in binary
            v2_header(0x22, 0x11, &inet, &[]),      // unknown command
            v2_header(0x21, 0x12, &inet, &[]),      // UDP
            v2_header(0x21, 0x41, &inet, &[]),      // unknown family
            v2_header(0x21, 0x11, &inet[..8], &[]), // short address block
            v2_header(0x21, 0x21, &inet, &[]),      // IPv6 in 12 bytes
        ] {
            assert!(parse(&h).is_err(), "{h:?}");
        }
    }
}

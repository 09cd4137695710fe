//! The client behind a trusted proxy: RFC 7239 `Forwarded`, or `X-Forwarded-For` with
//! `X-Forwarded-Proto`.
//!
//! Each proxy appends the address it got the request from, so the list reads client first,
//! nearest proxy last. Only the entries our trusted proxies added can be believed: the
//! client is the rightmost address that is not itself a trusted proxy (a client can put
//! anything at the left end). When every entry is trusted, the leftmost one is the client.
//!
//! RFC 7239 §4: `Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8::1]:80"`.
//!
//! gunicorn's other two default `secure_scheme_headers` say the scheme too:
//! `X-Forwarded-Ssl: on` and `X-Forwarded-Protocol: ssl` mean https, any other value http.
//! A request whose scheme headers disagree is refused (400), as gunicorn refuses it: which
//! one a proxy set and which one a client slipped past it cannot be told apart.

use std::net::{IpAddr, SocketAddr};

use super::error::HttpError;
use crate::net::allow::AllowList;

/// What the proxies say about the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Client {
    /// The client's address, when the chosen entry names one.
    pub addr: Option<IpAddr>,
    /// `http` or `https`, when the chosen entry says.
    pub scheme: Option<&'static str>,
}

/// One hop of the chain: the address a proxy saw, and the scheme it was spoken to with.
struct Hop<'a> {
    addr: &'a str,
    proto: Option<&'a str>,
}

/// Reads the forwarding headers (`headers` yields name, value); `None` when there are none,
/// an error when the scheme headers disagree.
pub fn client<'a, I>(headers: I, trusted: &AllowList) -> Result<Option<Client>, HttpError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut forwarded: Vec<&'a str> = Vec::new();
    let mut xff: Vec<&'a str> = Vec::new();
    let mut xfp: Vec<&'a str> = Vec::new();
    // What X-Forwarded-Ssl / X-Forwarded-Protocol say, in order.
    let mut flags: Vec<&'static str> = Vec::new();
    for (name, value) in headers {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        if name.eq_ignore_ascii_case("forwarded") {
            forwarded.push(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            xff.extend(value.split(',').map(str::trim).filter(|v| !v.is_empty()));
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            xfp.extend(value.split(',').map(str::trim).filter(|v| !v.is_empty()));
        } else if name.eq_ignore_ascii_case("x-forwarded-ssl") {
            flags.push(secure_if(value.trim().eq_ignore_ascii_case("on")));
        } else if name.eq_ignore_ascii_case("x-forwarded-protocol") {
            flags.push(secure_if(value.trim().eq_ignore_ascii_case("ssl")));
        }
    }
    let client = chosen(&forwarded, &xff, &xfp, trusted);
    let Some(&flag) = flags.first() else {
        return Ok(client);
    };
    let scheme = client.as_ref().and_then(|c| c.scheme);
    if flags.iter().chain(scheme.iter()).any(|s| *s != flag) {
        return Err(HttpError::BadRequest(
            "forwarding headers disagree on the scheme",
        ));
    }
    Ok(Some(match client {
        Some(c) => Client {
            scheme: Some(flag),
            ..c
        },
        None => Client {
            addr: None,
            scheme: Some(flag),
        },
    }))
}

fn secure_if(on: bool) -> &'static str {
    if on {
        "https"
    } else {
        "http"
    }
}

/// The client the `Forwarded` or `X-Forwarded-For`/`-Proto` values name.
fn chosen(forwarded: &[&str], xff: &[&str], xfp: &[&str], trusted: &AllowList) -> Option<Client> {
    let hops: Vec<Hop<'_>> = if !forwarded.is_empty() {
        forwarded.iter().flat_map(|v| elements(v)).collect()
    } else if !xff.is_empty() {
        // One proto per address when the lists pair up; otherwise the nearest proxy's.
        let paired = xfp.len() == xff.len();
        (xff.iter().enumerate())
            .map(|(i, addr)| Hop {
                addr,
                proto: if paired {
                    xfp.get(i).copied()
                } else {
                    xfp.last().copied()
                },
            })
            .collect()
    } else if let Some(proto) = xfp.last() {
        return Some(Client {
            addr: None,
            scheme: scheme(proto),
        });
    } else {
        return None;
    };
    let chosen = hops
        .iter()
        .rev()
        .find(|h| !parse_addr(h.addr).is_some_and(|ip| trusted.contains(ip)))
        .or_else(|| hops.first())?;
    Some(Client {
        addr: parse_addr(chosen.addr),
        scheme: chosen.proto.and_then(scheme),
    })
}

fn scheme(proto: &str) -> Option<&'static str> {
    if proto.eq_ignore_ascii_case("https") {
        Some("https")
    } else if proto.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// The elements of one `Forwarded` field value, each with its `for` and `proto`.
fn elements(value: &str) -> Vec<Hop<'_>> {
    split_outside_quotes(value, ',')
        .into_iter()
        .map(|element| {
            let mut hop = Hop {
                addr: "",
                proto: None,
            };
            for pair in split_outside_quotes(element, ';') {
                let Some((key, val)) = pair.split_once('=') else {
                    continue;
                };
                let val = val.trim();
                let val = val
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(val);
                match key.trim().to_ascii_lowercase().as_str() {
                    "for" => hop.addr = val,
                    "proto" => hop.proto = Some(val),
                    _ => {}
                }
            }
            hop
        })
        .collect()
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(s[start..i].trim());
            start = i + 1;
        }
    }
    parts.push(s[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        headers: &[(&'static str, &'static str)],
        trusted: &[&str],
    ) -> Result<Option<Client>, HttpError> {
        let trusted = AllowList::parse(trusted).unwrap();
        client(headers.iter().map(|(n, v)| (*n, v.as_bytes())), &trusted)
    }

    fn run(headers: &[(&'static str, &'static str)], trusted: &[&str]) -> Option<Client> {
        parse(headers, trusted).unwrap()
    }

    #[test]
    fn x_forwarded_ssl_and_protocol_say_the_scheme_and_must_agree_with_the_rest() {
        let scheme = |h: &[(&'static str, &'static str)]| run(h, &[]).and_then(|c| c.scheme);
        assert_eq!(scheme(&[("X-Forwarded-Ssl", "on")]), Some("https"));
        assert_eq!(scheme(&[("x-forwarded-ssl", " ON ")]), Some("https"));
        assert_eq!(scheme(&[("X-Forwarded-Ssl", "off")]), Some("http"));
        assert_eq!(scheme(&[("X-Forwarded-Protocol", "ssl")]), Some("https"));
        assert_eq!(scheme(&[("X-Forwarded-Protocol", "http")]), Some("http"));
        // With an address: the address stays, the scheme is theirs.
        let c = run(
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Ssl", "on"),
            ],
            &[],
        );
        assert_eq!(
            c,
            Some(Client {
                addr: addr("203.0.113.9"),
                scheme: Some("https")
            })
        );
        // Agreeing headers are fine; disagreeing ones (gunicorn's invalid/019) are refused.
        let agree = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")];
        assert_eq!(scheme(&agree), Some("https"));
        for bad in [
            [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")],
            [("X-Forwarded-Ssl", "on"), ("X-Forwarded-Protocol", "http")],
            [
                ("Forwarded", "for=1.2.3.4;proto=http"),
                ("X-Forwarded-Ssl", "on"),
            ],
            [("X-Forwarded-Ssl", "on"), ("X-Forwarded-Ssl", "off")],
        ] {
            assert!(parse(&bad, &[]).is_err(), "{bad:?}");
        }
    }

    fn addr(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn x_forwarded_for_picks_the_rightmost_untrusted_address() {
        let c = run(
            &[
                ("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.0.0.2"),
                ("X-Forwarded-Proto", "https"),
            ],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            c,
            Some(Client {
                addr: addr("203.0.113.9"),
                scheme: Some("https")
            })
        );
        // Every hop trusted: the leftmost is the client.
        let c = run(
            &[("X-Forwarded-For", "10.1.1.1, 10.0.0.2")],
            &["10.0.0.0/8"],
        );
        assert_eq!(c.unwrap().addr, addr("10.1.1.1"));
        // Repeated fields join in order.
        let c = run(
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("X-FORWARDED-FOR", "2.2.2.2"),
            ],
            &[],
        );
        assert_eq!(c.unwrap().addr, addr("2.2.2.2"));
    }

    #[test]
    fn forwarded_takes_precedence_and_understands_quotes_and_ports() {
        let c = run(
            &[
                ("X-Forwarded-For", "9.9.9.9"),
                (
                    "Forwarded",
                    r#"for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.2;proto=http"#,
                ),
            ],
            &["10.0.0.2"],
        );
        assert_eq!(
            c,
            Some(Client {
                addr: addr("2001:db8:cafe::17"),
                scheme: Some("https")
            })
        );
        let c = run(
            &[(
                "Forwarded",
                "for=192.0.2.60:8080;by=203.0.113.43;proto=HTTP",
            )],
            &[],
        );
        assert_eq!(
            c,
            Some(Client {
                addr: addr("192.0.2.60"),
                scheme: Some("http")
            })
        );
        // An obfuscated identifier or `unknown` is the client, with no address to use.
        let c = run(&[("Forwarded", "for=_hidden, for=10.0.0.2")], &["10.0.0.2"]);
        assert_eq!(
            c,
            Some(Client {
                addr: None,
                scheme: None
            })
        );
        let c = run(&[("Forwarded", r#"for="a;b,c";proto=https"#)], &[]);
        assert_eq!(
            c,
            Some(Client {
                addr: None,
                scheme: Some("https")
            })
        );
    }

    #[test]
    fn proto_pairs_with_its_address_or_comes_from_the_nearest_proxy() {
        let headers = [
            ("X-Forwarded-For", "1.1.1.1, 10.0.0.2"),
            ("X-Forwarded-Proto", "https, http"),
        ];
        assert_eq!(run(&headers, &["10.0.0.2"]).unwrap().scheme, Some("https"));
        let headers = [
            ("X-Forwarded-For", "1.1.1.1, 10.0.0.2"),
            ("X-Forwarded-Proto", "https"),
        ];
        assert_eq!(run(&headers, &["10.0.0.2"]).unwrap().scheme, Some("https"));
        let c = run(&[("X-Forwarded-Proto", "https")], &[]);
        assert_eq!(
            c,
            Some(Client {
                addr: None,
                scheme: Some("https")
            })
        );
        assert_eq!(
            run(&[("X-Forwarded-Proto", "gopher")], &[]).unwrap().scheme,
            None
        );
        assert_eq!(run(&[("Host", "x")], &[]), None);
    }
}

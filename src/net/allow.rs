//! Which peers are trusted proxies: `--forwarded-allow-ips` (addresses, CIDR networks, `*`).

use std::net::IpAddr;

#[derive(Debug, Clone, Default)]
pub struct AllowList {
    any: bool,
    nets: Vec<(IpAddr, u8)>,
}

impl AllowList {
    /// Parses entries such as `127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8` or `*`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry == "*" {
                list.any = true;
                continue;
            }
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (entry, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("{entry:?} is not an IP address or CIDR network"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => match b.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("{entry:?}: bad prefix length")),
                },
            };
            list.nets.push((canonical(ip), bits));
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        !self.any && self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let ip = canonical(ip);
        self.nets.iter().any(|&(net, bits)| in_net(ip, net, bits))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, as a dual-stack socket reports IPv4 peers)
/// compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_networks_and_star() {
        let list = AllowList::parse(&["127.0.0.1", "10.0.0.0/8", "fd00::/8", " ::1 "]).unwrap();
        assert!(list.contains(ip("127.0.0.1")));
        assert!(!list.contains(ip("127.0.0.2")));
        assert!(list.contains(ip("10.200.3.4")));
        assert!(!list.contains(ip("11.0.0.1")));
        assert!(list.contains(ip("fd12:3456::1")));
        assert!(!list.contains(ip("fe80::1")));
        assert!(list.contains(ip("::1")));
        assert!(list.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(AllowList::parse(&["*"]).unwrap().contains(ip("8.8.8.8")));
        let none = AllowList::parse::<&str>(&[]).unwrap();
        assert!(none.is_empty() && !none.contains(ip("127.0.0.1")));
        assert!(AllowList::parse(&["0.0.0.0/0"])
            .unwrap()
            .contains(ip("1.2.3.4")));
    }

    #[test]
    fn bad_entries() {
        for bad in ["localhost", "1.2.3.4/33", "::1/129", "10.0.0.0/x", ""] {
            assert!(AllowList::parse(&[bad]).is_err(), "{bad}");
        }
    }
}

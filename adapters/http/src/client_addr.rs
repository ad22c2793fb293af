//! The client's address: the peer's own, or, when the peer is a trusted reverse proxy, the one
//! the proxy forwarded, so limits and logs see people rather than the proxy.

use std::net::IpAddr;
use std::str::FromStr;

use poem::http::HeaderMap;

/// An address block, `10.0.0.0/8` or `fd00::/8`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (addr, prefix) = raw.split_once('/').map_or((raw, None), |(a, p)| (a, Some(p)));
        let net: IpAddr = addr.parse().map_err(|_| format!("{raw}: not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("{raw}: the prefix must be 0 to {max}"))?
            }
        };
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, unmapped(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1`, as a dual-stack listener reports IPv4 peers.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same_prefix(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// The proxies whose forwarded address is believed (`CHAT_TRUSTED_PROXIES`); none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of blocks; empty trusts nobody.
    fn from_str(raw: &str) -> Result<Self, String> {
        raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Cidr::from_str).collect::<Result<_, _>>().map(Self)
    }
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(ip))
    }

    /// Who sent the request: the peer, unless the peer is a trusted proxy. Then the forwarded
    /// chain (`Forwarded: for=`, else `X-Forwarded-For`) is read from the right, where the
    /// proxies appended what they saw, and the first address no trusted proxy owns is the
    /// client. Everything left of it is whatever the client claimed, and is ignored.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(unmapped)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        for hop in forwarded_chain(headers).into_iter().rev() {
            match hop {
                Some(ip) if self.trusts(ip) => continue,
                Some(ip) => return Some(ip),
                // A hop a trusted proxy vouched for but that does not parse: stop believing.
                None => break,
            }
        }
        Some(peer)
    }
}

/// The forwarded addresses, leftmost (claimed by the client) first; `None` for one that does
/// not parse.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    let forwarded: Vec<Option<IpAddr>> = values("forwarded")
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for").then(|| node_address(value))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    values("x-forwarded-for").map(|v| v.trim().parse().ok().map(unmapped)).collect()
}

/// RFC 7239 node: `192.0.2.60`, `"[2001:db8::1]:4711"`, `"192.0.2.60:80"`.
fn node_address(raw: &str) -> Option<IpAddr> {
    let node = raw.trim().trim_matches('"');
    if let Some(v6) = node.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    let host = node.split(':').next()?;
    host.parse().ok().map(unmapped)
}

/// The resolved client address of a request, set once by the outer layer for every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("a header value"));
        }
        map
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("an address")
    }

    #[test]
    fn blocks_contain_the_addresses_under_their_prefix() {
        let block: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(block.contains(ip("10.1.200.3")) && !block.contains(ip("10.2.0.1")));
        assert!("10.0.0.7".parse::<Cidr>().unwrap().contains(ip("::ffff:10.0.0.7")));
        assert!("fd00::/8".parse::<Cidr>().unwrap().contains(ip("fd12::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err() && "proxy".parse::<Cidr>().is_err());
    }

    #[test]
    fn an_untrusted_peer_cannot_claim_another_address() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let forged = headers(&[("x-forwarded-for", "203.0.113.9")]);

        assert_eq!(trusted.client(Some(ip("198.51.100.4")), &forged), Some(ip("198.51.100.4")));
        assert_eq!(TrustedProxies::default().client(Some(ip("10.0.0.2")), &forged), Some(ip("10.0.0.2")));
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_hop() {
        let trusted: TrustedProxies = "10.0.0.0/8, 172.16.0.0/12".parse().unwrap();
        // The client forged the first entry; the proxies appended the rest.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.4, 172.16.0.3")]);

        assert_eq!(trusted.client(Some(ip("10.0.0.2")), &chain), Some(ip("198.51.100.4")));
    }

    #[test]
    fn the_forwarded_header_wins_over_x_forwarded_for() {
        let trusted: TrustedProxies = "10.0.0.2".parse().unwrap();
        let both =
            headers(&[("forwarded", r#"for="[2001:db8::1]:4711";proto=https"#), ("x-forwarded-for", "198.51.100.4")]);

        assert_eq!(trusted.client(Some(ip("10.0.0.2")), &both), Some(ip("2001:db8::1")));
    }

    #[test]
    fn a_trusted_proxy_without_a_usable_header_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.2".parse().unwrap();

        assert_eq!(trusted.client(Some(ip("10.0.0.2")), &headers(&[])), Some(ip("10.0.0.2")));
        let garbage = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(trusted.client(Some(ip("10.0.0.2")), &garbage), Some(ip("10.0.0.2")));
    }
}

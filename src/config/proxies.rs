//! `TRUSTED_PROXIES`: the peers whose `X-Forwarded-For` is believed (SPEC §11).

use std::net::IpAddr;

use ipnet::IpNet;

/// Addresses and CIDR blocks of the proxies in front of the server; empty trusts no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Reads a comma list of addresses (`10.0.0.7`, `::1`) and CIDR blocks (`10.0.0.0/8`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{item:?} is neither an IP address nor a CIDR block"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// True when `ip` is one of the proxies (an IPv4-mapped IPv6 address counts as its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn addresses_and_blocks() {
        let t = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7 ,fd00::/8").unwrap_or_default();
        assert!(t.contains(ip("10.200.3.4")));
        assert!(t.contains(ip("192.168.1.7")));
        assert!(!t.contains(ip("192.168.1.8")));
        assert!(t.contains(ip("fd12::1")));
        assert!(t.contains(ip("::ffff:10.1.2.3")));
        assert!(!t.contains(ip("11.0.0.1")));
    }

    #[test]
    fn empty_trusts_no_one_and_garbage_is_refused() {
        let none = TrustedProxies::parse(" ").unwrap_or_else(|_| TrustedProxies(vec![IpNet::from(ip("127.0.0.1"))]));
        assert!(none.is_empty());
        assert!(!none.contains(ip("127.0.0.1")));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
    }
}

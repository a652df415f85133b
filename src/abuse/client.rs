//! Who the client is, for the limits: the TCP peer, or what a trusted proxy says it forwarded.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::config::TrustedProxies;

/// The unit a client is limited by: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network, which hands its devices any address inside it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of an address: IPv4-mapped IPv6 counts as IPv4, other IPv6 keeps its /64.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Self(v4),
        }
    }

    /// The client of a request: the peer, unless the peer is a trusted proxy; then the right-most
    /// `X-Forwarded-For` address that is not itself trusted (all headers, in order, as one list).
    /// A hop that cannot be read stops the walk at the proxy that forwarded it.
    pub fn resolve<'a>(
        peer: Option<IpAddr>,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
        trusted: &TrustedProxies,
    ) -> Self {
        // No peer address (not TCP): one shared key, so such clients are still limited.
        let mut client = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if !trusted.is_empty() {
            for hop in forwarded_for.rev().flat_map(|value| value.rsplit(',')) {
                if !trusted.contains(client) {
                    break;
                }
                match parse_hop(hop) {
                    Some(ip) => client = ip,
                    None => break,
                }
            }
        }
        Self::of(client)
    }
}

/// Addresses are private data: a key prints only its family.
impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_ipv4() { "ClientKey(v4)" } else { "ClientKey(v6/64)" })
    }
}

/// One `X-Forwarded-For` entry: an address, with a port as some proxies write it
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn trusted(s: &str) -> TrustedProxies {
        TrustedProxies::parse(s).unwrap_or_default()
    }

    fn resolve(peer: &str, xff: &[&str], proxies: &str) -> ClientKey {
        ClientKey::resolve(Some(ip(peer)), xff.iter().copied(), &trusted(proxies))
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(ClientKey::of(ip("2001:db8:1:2::1")), ClientKey::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(ClientKey::of(ip("2001:db8:1:2::1")), ClientKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(ClientKey::of(ip("::ffff:198.51.100.4")), ClientKey::of(ip("198.51.100.4")));
        assert_ne!(ClientKey::of(ip("198.51.100.4")), ClientKey::of(ip("198.51.100.5")));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(resolve("198.51.100.4", &["203.0.113.9"], ""), ClientKey::of(ip("198.51.100.4")));
        assert_eq!(resolve("198.51.100.4", &["203.0.113.9"], "10.0.0.0/8"), ClientKey::of(ip("198.51.100.4")));
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_untrusted_hop() {
        let key = resolve("10.0.0.2", &["6.6.6.6, 203.0.113.9, 10.0.0.1"], "10.0.0.0/8");
        assert_eq!(key, ClientKey::of(ip("203.0.113.9")));
        // Several headers are one list, in order.
        let key = resolve("10.0.0.2", &["6.6.6.6", "203.0.113.9:4711"], "10.0.0.0/8");
        assert_eq!(key, ClientKey::of(ip("203.0.113.9")));
        let key = resolve("10.0.0.2", &["[2001:db8::7]:80"], "10.0.0.0/8");
        assert_eq!(key, ClientKey::of(ip("2001:db8::7")));
    }

    #[test]
    fn a_spoofed_or_missing_header_cannot_move_the_key_past_the_proxy() {
        // The client wrote its own X-Forwarded-For; the proxy appended the real address.
        let key = resolve("10.0.0.2", &["1.2.3.4, 203.0.113.9"], "10.0.0.2");
        assert_eq!(key, ClientKey::of(ip("203.0.113.9")));
        assert_eq!(resolve("10.0.0.2", &[], "10.0.0.2"), ClientKey::of(ip("10.0.0.2")));
        assert_eq!(resolve("10.0.0.2", &["junk"], "10.0.0.2"), ClientKey::of(ip("10.0.0.2")));
        // Every hop trusted: the left-most is the client.
        assert_eq!(resolve("10.0.0.2", &["10.0.0.9, 10.0.0.3"], "10.0.0.0/8"), ClientKey::of(ip("10.0.0.9")));
    }

    #[test]
    fn debug_hides_the_address() {
        assert_eq!(format!("{:?}", ClientKey::of(ip("198.51.100.4"))), "ClientKey(v4)");
    }
}

//! The SSRF guard: which addresses a webhook may never reach, and the check of a URL's host
//! against them (at registration here; before each delivery in the delivery client).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::{Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// Private, loopback, link-local (the metadata service among them), CGNAT, multicast,
/// reserved and documentation ranges.
static FORBIDDEN_V4: LazyLock<Vec<Ipv4Net>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",       // "this network"
        "10.0.0.0/8",      // private
        "100.64.0.0/10",   // CGNAT
        "127.0.0.0/8",     // loopback
        "169.254.0.0/16",  // link-local, 169.254.169.254 metadata
        "172.16.0.0/12",   // private
        "192.0.0.0/24",    // IETF protocol assignments (192.0.0.192 is Oracle's metadata)
        "192.0.2.0/24",    // documentation
        "192.88.99.0/24",  // 6to4 relay anycast
        "192.168.0.0/16",  // private
        "198.18.0.0/15",   // benchmarking
        "198.51.100.0/24", // documentation
        "203.0.113.0/24",  // documentation
        "224.0.0.0/4",     // multicast
        "240.0.0.0/4",     // reserved, broadcast
    ]
    .iter()
    .map(|net| net.parse().expect("a valid IPv4 network"))
    .collect()
});

static FORBIDDEN_V6: LazyLock<Vec<Ipv6Net>> = LazyLock::new(|| {
    [
        "::/128",        // unspecified
        "::1/128",       // loopback
        "100::/64",      // discard
        "2001:db8::/32", // documentation
        "fc00::/7",      // unique local (AWS's fd00:ec2::254 metadata among them)
        "fe80::/10",     // link-local
        "fec0::/10",     // site-local (deprecated)
        "ff00::/8",      // multicast
    ]
    .iter()
    .map(|net| net.parse().expect("a valid IPv6 network"))
    .collect()
});

/// Whether a webhook may never be delivered to this address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            let embedded = embedded_v4(v6);
            if embedded.is_empty() {
                FORBIDDEN_V6.iter().any(|net| net.contains(&v6))
            } else {
                embedded.into_iter().any(is_forbidden_v4)
            }
        }
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    FORBIDDEN_V4.iter().any(|net| net.contains(&ip))
}

/// The IPv4 addresses an IPv6 address reaches, whatever form embeds them: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), IPv4-translated (SIIT,
/// `::ffff:0:a.b.c.d`), NAT64 well-known and local-use (`64:ff9b::/96`, `64:ff9b:1::/48`,
/// the IPv4 in the low 32 bits), 6to4 (`2002::/16`, bits 16 to 48) and Teredo (`2001::/32`:
/// the server in bits 32 to 64, the client, inverted, in the low 32 bits).
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    let low = v4(s[6], s[7]);
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return vec![mapped];
    }
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if !matches!((hi, lo), (0, 0) | (0, 1)) => vec![low],
        [0, 0, 0, 0, 0xffff, 0, _, _] => vec![low],
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![low],
        [0x64, 0xff9b, 1, ..] => vec![low],
        [0x2002, hi, lo, ..] => vec![v4(hi, lo)],
        [0x2001, 0, server_hi, server_lo, ..] => {
            vec![v4(server_hi, server_lo), v4(!s[6], !s[7])]
        }
        _ => Vec::new(),
    }
}

/// Why a URL's target is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetRefusal {
    /// The host is, or resolves to, a forbidden address.
    ForbiddenAddress,
}

/// Checks a URL's host at registration, without DNS: an IP literal (in any spelling: the
/// URL parser normalises them) or `localhost` is judged at once; any other name is
/// accepted, whatever it resolves to, and checked before every delivery. Registration asks
/// no DNS, so it cannot tell a tenant which names resolve to private addresses.
pub fn check_registration_target(url: &Url) -> Result<(), TargetRefusal> {
    match url.host() {
        Some(Host::Ipv4(ip)) => verdict(is_forbidden(IpAddr::V4(ip))),
        Some(Host::Ipv6(ip)) => verdict(is_forbidden(IpAddr::V6(ip))),
        Some(Host::Domain(name)) => {
            let host = name.trim_end_matches('.').to_ascii_lowercase();
            verdict(host == "localhost" || host.ends_with(".localhost"))
        }
        None => Err(TargetRefusal::ForbiddenAddress),
    }
}

fn verdict(forbidden: bool) -> Result<(), TargetRefusal> {
    if forbidden {
        Err(TargetRefusal::ForbiddenAddress)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(text: &str) -> bool {
        is_forbidden(text.parse().unwrap())
    }

    #[test]
    fn private_loopback_link_local_cgnat_multicast_and_metadata_are_forbidden() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:a9fe:a9fe::1",
            // NAT64 local-use, SIIT and Teredo forms of private addresses.
            "64:ff9b:1::a00:1",
            "::ffff:0:a00:1",
            "::ffff:0:7f00:1",
            "2001:0:a00:1::1",
            "2001:0:808:808::f5ff:fffe",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b:1::808:808",
            "2001:0:808:808::f7f7:f7f7",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_in_every_spelling_are_judged_without_dns() {
        for url in [
            "https://127.0.0.1/x",
            "https://2130706433/x",
            "https://0x7f.0.0.1/x",
            "https://0177.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost:8443/x",
            "https://api.localhost/x",
        ] {
            let url = Url::parse(url).unwrap();
            assert_eq!(
                check_registration_target(&url),
                Err(TargetRefusal::ForbiddenAddress),
                "{url}"
            );
        }
        let public = Url::parse("https://93.184.216.34/hooks").unwrap();
        assert_eq!(check_registration_target(&public), Ok(()));
        // Names are never resolved at registration: one that resolves to a private address
        // reads the same as one that does not resolve (delivery refuses both).
        for name in [
            "https://internal.example.invalid/x",
            "https://example.com/x",
        ] {
            assert_eq!(
                check_registration_target(&Url::parse(name).unwrap()),
                Ok(())
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An IPv4 address and its IPv4-mapped, IPv4-compatible and NAT64 IPv6 forms get
        /// the same verdict: no spelling of a private address slips through.
        #[test]
        fn every_ipv6_spelling_of_an_ipv4_address_is_judged_alike(raw in any::<u32>()) {
            let v4 = Ipv4Addr::from(raw);
            let verdict = is_forbidden(IpAddr::V4(v4));
            prop_assert_eq!(is_forbidden(IpAddr::V6(v4.to_ipv6_mapped())), verdict);
            let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(raw));
            prop_assert_eq!(is_forbidden(IpAddr::V6(nat64)), verdict);
            if raw > 1 {
                prop_assert_eq!(is_forbidden(IpAddr::V6(v4.to_ipv6_compatible())), verdict);
            }
            let local_nat64 = Ipv6Addr::from((0x0064_ff9b_0001_u128 << 80) | u128::from(raw));
            prop_assert_eq!(is_forbidden(IpAddr::V6(local_nat64)), verdict);
            let siit = Ipv6Addr::from((0xffff_0000_u128 << 32) | u128::from(raw));
            prop_assert_eq!(is_forbidden(IpAddr::V6(siit)), verdict);
        }

        /// Whatever the host's spelling (decimal, hex, octal, dotted), the URL parser
        /// normalises it and registration judges the address, never a string.
        #[test]
        fn literal_loopback_and_private_hosts_are_refused_in_any_notation(
            host in prop_oneof![Just(0x7f00_0001_u32), Just(0x0a00_0001), Just(0xa9fe_a9fe), Just(0xc0a8_0101)],
            notation in 0..3usize,
        ) {
            let text = match notation {
                0 => format!("https://{host}/x"),
                1 => format!("https://0x{host:x}/x"),
                _ => format!("https://0{host:o}/x"),
            };
            let url = Url::parse(&text).unwrap();
            prop_assert_eq!(
                check_registration_target(&url),
                Err(TargetRefusal::ForbiddenAddress),
                "{}", text
            );
        }
    }
}

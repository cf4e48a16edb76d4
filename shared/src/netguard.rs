//! The SSRF guard: which addresses a webhook may never reach, and the check of a URL's host
//! against them (at registration here; before each delivery in the delivery client).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;
use std::time::Duration;

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
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_forbidden_v4(v4),
            None => FORBIDDEN_V6.iter().any(|net| net.contains(&v6)),
        },
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    FORBIDDEN_V4.iter().any(|net| net.contains(&ip))
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address: each reaches that IPv4 host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !matches!(s[6..], [0, 0] | [0, 1]) {
        return Some(low);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Why a URL's target is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetRefusal {
    /// The host is, or resolves to, a forbidden address.
    ForbiddenAddress,
}

/// How long registration waits for DNS before accepting the host unresolved.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks a URL's host at registration: an IP literal or `localhost` is judged at once; a
/// name is resolved and refused if any address it resolves to is forbidden. A name that
/// does not resolve (yet) is accepted: delivery checks again.
pub async fn check_registration_target(url: &Url) -> Result<(), TargetRefusal> {
    let host = match url.host() {
        Some(Host::Ipv4(ip)) => return verdict(is_forbidden(IpAddr::V4(ip))),
        Some(Host::Ipv6(ip)) => return verdict(is_forbidden(IpAddr::V6(ip))),
        Some(Host::Domain(name)) => name.trim_end_matches('.').to_ascii_lowercase(),
        None => return Err(TargetRefusal::ForbiddenAddress),
    };
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(TargetRefusal::ForbiddenAddress);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addresses)) => {
            let forbidden = addresses.into_iter().any(|a| is_forbidden(a.ip()));
            verdict(forbidden)
        }
        // Unresolvable or slow: accepted now, checked again before every delivery.
        Ok(Err(_)) | Err(_) => Ok(()),
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
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[tokio::test]
    async fn literal_hosts_in_every_spelling_are_judged_without_dns() {
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
                check_registration_target(&url).await,
                Err(TargetRefusal::ForbiddenAddress),
                "{url}"
            );
        }
        let public = Url::parse("https://93.184.216.34/hooks").unwrap();
        assert_eq!(check_registration_target(&public).await, Ok(()));
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
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            prop_assert_eq!(
                runtime.block_on(check_registration_target(&url)),
                Err(TargetRefusal::ForbiddenAddress),
                "{}", text
            );
        }
    }
}

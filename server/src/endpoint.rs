//! Broker endpoints: validating the `host:port` strings brokers register and
//! turning them into the RocketMQ protocol's `Endpoints` (one address scheme plus
//! host/port addresses) that clients dial.

use apogee_proto::v2::{Address, AddressScheme, Endpoints};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A parsed `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub scheme: AddressScheme,
}

/// Parses `host:port`, `[ipv6]:port` or `name:port`; the port must be 1..=65535.
pub fn parse(endpoint: &str) -> Result<HostPort, String> {
    let bad = |why: &str| Err(format!("endpoint {endpoint:?} {why}"));
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return bad("is not host:port");
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return bad("has no valid port (1-65535)"),
    };
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(_) => Ok(HostPort {
                host: inner.to_string(),
                port,
                scheme: AddressScheme::IPv6,
            }),
            Err(_) => bad("has an invalid IPv6 address"),
        };
    }
    if host.is_empty() {
        return bad("has an empty host");
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(HostPort {
            host: host.to_string(),
            port,
            scheme: AddressScheme::IPv4,
        });
    }
    if host.contains(':') {
        return bad("has an IPv6 address without [brackets]");
    }
    let name_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !name_ok {
        return bad("has an invalid host name");
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
        scheme: AddressScheme::DomainName,
    })
}

impl HostPort {
    /// As the protocol's `Endpoints`, with a single address.
    pub fn to_endpoints(&self) -> Endpoints {
        Endpoints {
            scheme: self.scheme as i32,
            addresses: vec![Address {
                host: self.host.clone(),
                port: i32::from(self.port),
            }],
        }
    }
}

/// The protocol `Endpoints` of a registered endpoint string; `None` if it
/// does not parse (registration validates it, so this is not expected).
pub fn to_endpoints(endpoint: &str) -> Option<Endpoints> {
    parse(endpoint).ok().map(|hp| hp.to_endpoints())
}

/// One `Endpoints` for several members: `first`'s address, then each of `others` in order
/// that has the same address scheme (the message carries one scheme). A domain name carries
/// a single address (the protocol's `dns:host:port` target names one host, and the Python
/// client refuses several), so there only `first` is listed. Endpoints that do not parse
/// are left out; `None` when `first` does not parse.
pub fn to_endpoints_list<'a>(
    first: &str,
    others: impl IntoIterator<Item = &'a str>,
) -> Option<Endpoints> {
    let head = parse(first).ok()?;
    let mut endpoints = head.to_endpoints();
    if head.scheme == AddressScheme::DomainName {
        return Some(endpoints);
    }
    for other in others {
        let Ok(hp) = parse(other) else { continue };
        let address = Address {
            host: hp.host,
            port: i32::from(hp.port),
        };
        if hp.scheme == head.scheme && !endpoints.addresses.contains(&address) {
            endpoints.addresses.push(address);
        }
    }
    Some(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_follow_the_host_kind() {
        let v4 = parse("10.1.2.3:10911").unwrap();
        assert_eq!(
            (v4.host.as_str(), v4.port, v4.scheme),
            ("10.1.2.3", 10911, AddressScheme::IPv4)
        );
        let v6 = parse("[::1]:10911").unwrap();
        assert_eq!((v6.host.as_str(), v6.scheme), ("::1", AddressScheme::IPv6));
        let dns = parse("broker-0.apogee.svc:10911").unwrap();
        assert_eq!(dns.scheme, AddressScheme::DomainName);
        let e = dns.to_endpoints();
        assert_eq!(e.addresses[0].host, "broker-0.apogee.svc");
        assert_eq!(e.addresses[0].port, 10911);
    }

    #[test]
    fn a_list_keeps_the_first_then_others_of_its_scheme() {
        let e = to_endpoints_list(
            "10.0.0.2:10912",
            [
                "10.0.0.1:10911",
                "[::1]:10913",
                "host:1",
                "10.0.0.2:10912",
                "bad",
            ],
        )
        .unwrap();
        assert_eq!(e.scheme, AddressScheme::IPv4 as i32);
        let hosts: Vec<(&str, i32)> = e
            .addresses
            .iter()
            .map(|a| (a.host.as_str(), a.port))
            .collect();
        assert_eq!(hosts, [("10.0.0.2", 10912), ("10.0.0.1", 10911)]);

        let v6 = to_endpoints_list("[::1]:1", ["[::2]:2", "10.0.0.1:3"]).unwrap();
        assert_eq!(v6.scheme, AddressScheme::IPv6 as i32);
        assert_eq!(v6.addresses.len(), 2);
        assert_eq!(v6.addresses[1].host, "::2");

        let dns = to_endpoints_list("b-0.svc:1", ["b-1.svc:1", "b-2.svc:1"]).unwrap();
        assert_eq!(dns.scheme, AddressScheme::DomainName as i32);
        assert_eq!(dns.addresses.len(), 1, "a domain name carries one address");
        assert_eq!(dns.addresses[0].host, "b-0.svc");

        assert!(to_endpoints_list("nope", ["10.0.0.1:1"]).is_none());
    }

    #[test]
    fn bad_endpoints_are_rejected() {
        for bad in [
            "",
            "host",
            ":10911",
            "host:0",
            "host:70000",
            "host:x",
            "::1:10911",
            "[zz]:1",
            "a b:1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}

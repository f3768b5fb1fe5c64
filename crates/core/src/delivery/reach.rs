//! Which addresses records may be sent to. A config writer controls the endpoints, so an
//! endpoint is checked where it is used, on every address its name resolves to: public
//! addresses are fine; private ones (this machine, the VPC, a LAN) only for a host a dataset
//! lists in `delivery.allow_private_hosts`; link-local and instance-metadata addresses never,
//! and inside Lambda never the Runtime API's port on this machine (where the runtime and its
//! extensions are driven).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

/// What an address is, for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Public,
    /// Reached only for a host listed in `allow_private_hosts`; says what it is.
    Private(&'static str),
    /// Never reached; says what it is.
    Forbidden(&'static str),
}

/// What `ip` is.
pub fn classify(ip: IpAddr) -> AddressKind {
    use AddressKind::*;
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return classify_v6(v6),
        },
    };
    let [a, b, c, d] = v4.octets();
    match (a, b, c, d) {
        _ if v4.is_unspecified() || a == 0 => {
            Forbidden("an unspecified (\"this network\") address")
        }
        _ if v4.is_link_local() => Forbidden("a link-local (instance-metadata) address"),
        (100, 100, 100, 200) => Forbidden("a cloud instance-metadata address"),
        _ if v4.is_broadcast() || v4.is_multicast() => {
            Forbidden("a broadcast or multicast address")
        }
        _ if v4.is_loopback() => Private("a loopback address"),
        _ if v4.is_private() => Private("a private (RFC 1918) address"),
        (100, 64..=127, _, _) => Private("a shared (carrier-grade NAT) address"),
        (198, 18..=19, _, _) => Private("a benchmarking-network address"),
        _ => Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressKind {
    use AddressKind::*;
    let first = ip.segments()[0];
    // fd00:ec2::254 is the EC2 metadata service over IPv6.
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Forbidden("a cloud instance-metadata address");
    }
    match () {
        _ if ip.is_unspecified() => Forbidden("an unspecified address"),
        _ if first & 0xffc0 == 0xfe80 => Forbidden("a link-local (instance-metadata) address"),
        _ if ip.is_multicast() => Forbidden("a multicast address"),
        _ if ip.is_loopback() => Private("a loopback address"),
        _ if first & 0xfe00 == 0xfc00 => Private("a unique-local (private) address"),
        _ => Public,
    }
}

/// Why records are not sent to an endpoint, in words that name the host and the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The hosts whose private addresses may be reached, and the Runtime API's port when the
/// process runs in Lambda.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// Lowercase host names and address literals.
    private_ok: BTreeSet<String>,
    runtime_api_port: Option<u16>,
}

impl Reach {
    /// Private addresses allowed for `hosts`.
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Self {
        Reach {
            private_ok: hosts.into_iter().map(normal).collect(),
            runtime_api_port: None,
        }
    }

    /// In Lambda: `runtime_api` is `AWS_LAMBDA_RUNTIME_API` (`127.0.0.1:9001`), whose port on
    /// this machine is never sent records, whatever a dataset lists.
    pub fn in_lambda(mut self, runtime_api: Option<&str>) -> Self {
        self.runtime_api_port = runtime_api
            .and_then(|api| api.rsplit(':').next())
            .and_then(|port| port.parse().ok());
        self
    }

    /// The reach of `config`'s deliveries: the hosts any dataset lists in
    /// `delivery.allow_private_hosts` (a host is one place, whichever dataset sends to it).
    pub fn of(config: &crate::PipelineConfig) -> Self {
        let hosts: Vec<&str> = config
            .datasets()
            .flat_map(|d| d.delivery.allow_private_hosts.iter().map(String::as_str))
            .collect();
        Reach::new(hosts)
    }

    /// Also lets `host` reach private addresses (an operator's `--api` on the command line).
    pub fn allowing(mut self, host: &str) -> Self {
        self.private_ok.insert(normal(host));
        self
    }

    /// Whether `host` (as a URL names it) may be sent records at `address`.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Refused> {
        let refused = |what: &str, rule: &str| {
            Refused(format!("{host} resolves to {address}, {what}: {rule}"))
        };
        match classify(address) {
            AddressKind::Public => Ok(()),
            AddressKind::Private(_) if self.private_ok.contains(&normal(host)) => Ok(()),
            AddressKind::Private(what) => Err(refused(
                what,
                "records go only to public addresses, unless the dataset lists the host in \
                 delivery.allow_private_hosts",
            )),
            AddressKind::Forbidden(what) => Err(refused(what, "records are never sent there")),
        }
    }

    /// Whether an endpoint at `host` and `port` may be sent records at all: in Lambda, not at
    /// the Runtime API's port through a host that may reach this machine (an unlisted name
    /// cannot: its loopback address is refused by [`Reach::check`]).
    pub fn check_port(&self, host: &str, port: u16) -> Result<(), Refused> {
        let local = normal(host)
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
        match self.runtime_api_port {
            Some(api) if api == port && (local || self.private_ok.contains(&normal(host))) => {
                Err(Refused(format!(
                    "{host}:{port} may be Lambda's Runtime API on this machine: records are \
                     never sent there"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A host as a URL or a config names it: lowercase, without a trailing dot or IPv6 brackets.
fn normal(host: &str) -> String {
    host.trim()
        .trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Whether `text` is a host `allow_private_hosts` may list; `Err` says why not.
pub fn check_private_host(text: &str) -> Result<(), String> {
    let host = normal(text);
    if host.is_empty() || (host.contains(['/', ':', '@', ' ']) && host.parse::<Ipv6Addr>().is_err())
    {
        return Err(format!(
            "{text:?} is not a host name or address (no scheme, port or path)"
        ));
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(format!(
            "{text:?}: a localhost name is never allowed (in Lambda it is the Runtime API); \
             name the address, e.g. 127.0.0.1, for a test API on this machine"
        ));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if let AddressKind::Forbidden(what) = classify(ip) {
            return Err(format!("{text:?} is {what}: records are never sent there"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> AddressKind {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn addresses_are_public_private_or_never() {
        use AddressKind::*;
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(kind(public), Public, "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd12:3456::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(matches!(kind(private), Private(_)), "{private}");
        }
        for never in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "0.0.0.0",
            "::",
            "224.0.0.1",
        ] {
            assert!(matches!(kind(never), Forbidden(_)), "{never}");
        }
    }

    #[test]
    fn a_listed_host_may_reach_private_addresses_and_no_host_the_metadata_service() {
        let reach = Reach::new(["API.internal."]);
        let private: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(reach.check("api.internal", private), Ok(()));
        let refused = reach.check("other.example", private).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "other.example resolves to 10.0.0.5, a private (RFC 1918) address: records go only \
             to public addresses, unless the dataset lists the host in \
             delivery.allow_private_hosts"
        );
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(reach.check("api.internal", metadata).is_err());
        let reach = reach.allowing("127.0.0.1");
        assert_eq!(
            reach.check("127.0.0.1", "127.0.0.1".parse().unwrap()),
            Ok(())
        );
    }

    #[test]
    fn localhost_and_metadata_addresses_cannot_be_listed() {
        assert!(check_private_host("api.internal").is_ok());
        assert!(check_private_host("10.0.0.5").is_ok());
        assert!(check_private_host("::1").is_ok());
        assert!(check_private_host("localhost").is_err());
        assert!(check_private_host("a.localhost").is_err());
        assert!(check_private_host("169.254.169.254").is_err());
        assert!(check_private_host("https://api.internal").is_err());
        assert!(check_private_host("api.internal:8443").is_err());
    }

    #[test]
    fn in_lambda_the_runtime_api_port_is_never_an_endpoint() {
        let reach = Reach::new(["api.test", "127.0.0.1"]).in_lambda(Some("127.0.0.1:9001"));
        assert!(reach.check_port("127.0.0.1", 9001).is_err());
        assert!(reach.check_port("api.test", 9001).is_err());
        assert!(reach.check_port("127.0.0.1", 8080).is_ok());
        // A public name's port 9001 is someone else's.
        assert!(reach.check_port("api.example.com", 9001).is_ok());
        assert!(Reach::new(["127.0.0.1"])
            .check_port("127.0.0.1", 9001)
            .is_ok());
    }
}

//! Where a user may log in from: a list of CIDRs (the user's own, else the group's; an empty
//! list allows any address). The address is the TCP peer's: a proxy in front of the console
//! would need its forwarded header trusted explicitly, which is not done.

use std::net::IpAddr;

use ipnet::IpNet;

/// A list of allowed networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedAddresses {
    nets: Vec<IpNet>,
}

/// An entry that is not a CIDR or an address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an address or a CIDR network (e.g. 10.1.0.0/16, 2001:db8::/32)")]
pub struct BadCidr(pub String);

impl AllowedAddresses {
    /// Parses CIDRs (a bare address is a /32 or /128).
    ///
    /// # Errors
    /// [`BadCidr`] naming the first entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadCidr> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| BadCidr(e.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    /// Whether `address` may log in (an empty list allows any). An IPv4 address mapped into
    /// IPv6 (`::ffff:10.1.2.3`, as a dual-stack listener reports it) counts as IPv4.
    #[must_use]
    pub fn allows(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.nets.is_empty() || self.nets.iter().any(|net| net.contains(&address))
    }

    /// Whether the list allows any address.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.nets.is_empty()
    }

    /// The list as text, for storing.
    #[must_use]
    pub fn to_strings(&self) -> Vec<String> {
        self.nets.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_bare_addresses_match_what_they_cover() {
        let allowed =
            AllowedAddresses::parse(&["10.1.0.0/16", "192.0.2.7", "2001:db8::/32"]).unwrap();
        assert!(allowed.allows(ip("10.1.200.3")));
        assert!(!allowed.allows(ip("10.2.0.1")));
        assert!(allowed.allows(ip("192.0.2.7")));
        assert!(!allowed.allows(ip("192.0.2.8")));
        assert!(allowed.allows(ip("2001:db8:5::1")));
        assert!(allowed.allows(ip("::ffff:10.1.0.9")), "v4-mapped");
        assert!(!allowed.allows(ip("127.0.0.1")));
        assert!(
            AllowedAddresses::default().allows(ip("203.0.113.1")),
            "empty: anywhere"
        );
        assert_eq!(
            AllowedAddresses::parse(&["10.1.2.3/16"])
                .unwrap()
                .to_strings(),
            ["10.1.0.0/16"]
        );
        let bad = AllowedAddresses::parse(&["10.1.0.0/16", "branch office"]).unwrap_err();
        assert!(bad.to_string().contains("branch office"));
    }
}

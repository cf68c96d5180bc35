//! Where callbacks may connect: an address policy checked on the address a
//! connection is actually opened to.
//!
//! By default wasmsink refuses the addresses that are never a webhook
//! endpoint and are the classic SSRF targets: link-local (IPv4
//! `169.254.0.0/16`, where cloud metadata services answer, and IPv6
//! `fe80::/10`), the cloud metadata addresses that sit in other ranges
//! (`fd00:ec2::254`, `100.100.100.200`), unspecified (`0.0.0.0/8`, `::`;
//! Linux connects `0.0.0.0` to the local host), multicast, broadcast and the
//! reserved `240.0.0.0/4`. Loopback and private networks stay allowed:
//! internal APIs are what the seed connector's users call.
//!
//! The operator adds rules (`[server.egress] deny_cidrs`, `allow_cidrs`).
//! The most specific matching rule wins, a deny on a tie; with no operator
//! rule matching, the built-in rules above decide.
//!
//! **Invariant:** an IPv6 address that embeds an IPv4 address (IPv4-mapped
//! `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and
//! the local-use `64:ff9b:1::/48` in every RFC 6052 layout, 6to4
//! `2002::/16`, Teredo `2001::/32`) is refused when any IPv4 address it
//! embeds is refused, so no spelling reaches what its IPv4 form may not.
//! Decimal, octal and hex IPv4 spellings (`2130706433`, `0177.0.0.1`) are
//! turned into addresses by the URL parser before they get here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is {why}; the egress policy refuses it{hint}")]
pub struct EgressRefusal {
    /// The address as it was given.
    pub address: IpAddr,
    /// What kind of address it is, or which operator rule refused it.
    pub why: String,
    hint: &'static str,
}

/// What a rule does with the addresses it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
}

/// One built-in rule: a range, what kind of address it holds, and whether
/// it is refused by default.
struct BuiltIn {
    net: &'static str,
    kind: &'static str,
}

/// The ranges refused unless the operator allows them.
const DENIED_BY_DEFAULT: &[BuiltIn] = &[
    BuiltIn {
        net: "0.0.0.0/8",
        kind: "an unspecified address (\"this network\"; Linux connects 0.0.0.0 to the local host)",
    },
    BuiltIn {
        net: "169.254.0.0/16",
        kind: "a link-local address (cloud metadata services answer on 169.254.169.254)",
    },
    BuiltIn {
        net: "100.100.100.200/32",
        kind: "a cloud metadata address",
    },
    BuiltIn {
        net: "224.0.0.0/4",
        kind: "a multicast address",
    },
    BuiltIn {
        net: "240.0.0.0/4",
        kind: "a reserved or broadcast address",
    },
    BuiltIn {
        net: "::/128",
        kind: "the unspecified address",
    },
    BuiltIn {
        net: "fe80::/10",
        kind: "a link-local address",
    },
    BuiltIn {
        net: "fd00:ec2::254/128",
        kind: "a cloud metadata address",
    },
    BuiltIn {
        net: "ff00::/8",
        kind: "a multicast address",
    },
];

/// Where callbacks may connect.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// The operator's rules, in any order (the most specific match wins).
    rules: Vec<(IpNet, Verdict)>,
    defaults: Vec<(IpNet, &'static str)>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        Self::new(&[], &[])
    }
}

impl fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl EgressPolicy {
    /// The built-in rules plus the operator's `allow` and `deny` ranges.
    pub fn new(allow: &[IpNet], deny: &[IpNet]) -> Self {
        let defaults = DENIED_BY_DEFAULT
            .iter()
            .map(|rule| {
                let net: IpNet = rule.net.parse().expect("built-in egress range");
                (net, rule.kind)
            })
            .collect();
        let rules = allow
            .iter()
            .map(|net| (net.trunc(), Verdict::Allow))
            .chain(deny.iter().map(|net| (net.trunc(), Verdict::Deny)))
            .collect();
        Self { rules, defaults }
    }

    /// Whether a connection to `address` is allowed.
    pub fn check(&self, address: IpAddr) -> Result<(), EgressRefusal> {
        for candidate in std::iter::once(address).chain(embedded_ipv4(address).map(IpAddr::V4)) {
            if let Err(mut refusal) = self.check_one(candidate) {
                if candidate != address {
                    refusal.why = format!("{}, embedding {candidate}", refusal.why);
                }
                refusal.address = address;
                return Err(refusal);
            }
        }
        Ok(())
    }

    fn check_one(&self, address: IpAddr) -> Result<(), EgressRefusal> {
        let operator = self
            .rules
            .iter()
            .filter(|(net, _)| net.contains(&address))
            .max_by_key(|(net, verdict)| (net.prefix_len(), *verdict == Verdict::Deny));
        match operator {
            Some((_, Verdict::Allow)) => Ok(()),
            Some((net, Verdict::Deny)) => Err(EgressRefusal {
                address,
                why: format!("in {net}, which server.egress.deny_cidrs names"),
                hint: "",
            }),
            None => match self.defaults.iter().find(|(net, _)| net.contains(&address)) {
                Some((_, kind)) => Err(EgressRefusal {
                    address,
                    why: (*kind).to_owned(),
                    hint: " by default (server.egress.allow_cidrs lifts it)",
                }),
                None => Ok(()),
            },
        }
    }
}

/// Every IPv4 address an IPv6 address carries in a well-known embedding.
fn embedded_ipv4(address: IpAddr) -> impl Iterator<Item = Ipv4Addr> {
    let mut found = Vec::new();
    if let IpAddr::V6(v6) = address {
        let bits = u128::from(v6);
        let segments = v6.segments();
        let v4_at = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
        // IPv4-mapped ::ffff:0:0/96.
        if let Some(v4) = v6.to_ipv4_mapped() {
            found.push(v4);
        }
        // The deprecated IPv4-compatible ::a.b.c.d (but :: and ::1 are
        // themselves).
        if bits >> 32 == 0 && bits > 1 {
            found.push(v4_at(0));
        }
        // NAT64, the well-known prefix 64:ff9b::/96.
        if bits >> 32 == u128::from(u32::from_be_bytes([0, 0x64, 0xff, 0x9b])) << 64 {
            found.push(v4_at(0));
        }
        // NAT64, local use 64:ff9b:1::/48 (RFC 8215), in every RFC 6052
        // layout, since the prefix length is the network's choice.
        if segments[..3] == [0x64, 0xff9b, 0x0001] {
            found.extend(rfc6052_candidates(bits));
        }
        // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
        if segments[0] == 0x2002 {
            found.push(v4_at(80));
        }
        // Teredo 2001:0::/32: the server at bits 32-63, the client
        // obfuscated (every bit flipped) in the last 32.
        if segments[..2] == [0x2001, 0x0000] {
            found.push(v4_at(64));
            found.push(Ipv4Addr::from(!(bits as u32)));
        }
    }
    found.into_iter()
}

/// The IPv4 address a `64:ff9b:1::/48` address carries for each RFC 6052
/// prefix length that fits inside it (48, 56, 64, 96); bits 64-71 (the "u"
/// octet) are skipped. In the shorter layouts a candidate in `0.0.0.0/8`
/// is the zero padding of a longer layout, not an address (NAT64 cannot
/// reach `0.0.0.0/8`), and is left out.
fn rfc6052_candidates(bits: u128) -> Vec<Ipv4Addr> {
    let bytes = bits.to_be_bytes();
    let pick =
        |at: [usize; 4]| Ipv4Addr::new(bytes[at[0]], bytes[at[1]], bytes[at[2]], bytes[at[3]]);
    let mut found: Vec<Ipv4Addr> = [[6, 7, 9, 10], [7, 9, 10, 11], [9, 10, 11, 12]]
        .into_iter()
        .map(pick)
        .filter(|v4| v4.octets()[0] != 0)
        .collect();
    found.push(pick([12, 13, 14, 15]));
    found
}

/// Parses CIDR ranges (`10.0.0.0/8`, `fd00::/8`); a bare address is a
/// single-address range.
pub fn parse_cidrs(items: &[String]) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|item| {
            let text = item.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("\"{text}\" is not an address range such as 10.0.0.0/8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &EgressPolicy, text: &str) -> bool {
        policy.check(text.parse().unwrap()).is_err()
    }

    #[test]
    fn metadata_link_local_unspecified_and_multicast_are_refused_by_default() {
        let policy = EgressPolicy::default();
        for address in [
            "169.254.169.254",
            "169.254.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "ff02::1",
        ] {
            assert!(refused(&policy, address), "{address} must be refused");
        }
    }

    #[test]
    fn loopback_private_and_public_are_allowed_by_default() {
        let policy = EgressPolicy::default();
        for address in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "93.184.216.34",
            "::1",
            "fd12:3456::1",
            "2606:4700::1111",
        ] {
            assert!(!refused(&policy, address), "{address} must be allowed");
        }
    }

    #[test]
    fn every_ipv6_spelling_of_a_refused_ipv4_address_is_refused() {
        let policy = EgressPolicy::default();
        for spelling in [
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "::169.254.169.254",
            "64:ff9b::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            // 64:ff9b:1::/48 with a /48 layout: a9.fe at bits 48-63, a9.fe after the u octet.
            "64:ff9b:1:a9fe:a9:fe00::",
            // ... and the /96 layout.
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            // Teredo, client 169.254.169.254 obfuscated (bits flipped).
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "::ffff:0.0.0.0",
            "64:ff9b::e000:1",
        ] {
            assert!(refused(&policy, spelling), "{spelling} must be refused");
        }
        assert!(!refused(&policy, "::ffff:10.0.0.1"));
        assert!(!refused(&policy, "64:ff9b::808:808"));
        assert!(!refused(&policy, "2002:0808:0808::1"));
        assert!(
            !refused(&policy, "64:ff9b:1::a0a:a0a"),
            "local NAT64 of 10.10.10.10"
        );
    }

    #[test]
    fn the_url_parser_turns_decimal_octal_and_hex_spellings_into_addresses() {
        let policy = EgressPolicy::default();
        for url in [
            "http://2852039166/latest/meta-data/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://[::ffff:169.254.169.254]/",
            "http://0/",
        ] {
            let parsed = url::Url::parse(url).unwrap();
            let address: IpAddr = match parsed.host().unwrap() {
                url::Host::Ipv4(v4) => v4.into(),
                url::Host::Ipv6(v6) => v6.into(),
                url::Host::Domain(name) => panic!("{url} parsed as the name {name}"),
            };
            assert!(policy.check(address).is_err(), "{url} must be refused");
        }
    }

    #[test]
    fn operator_rules_the_most_specific_wins_and_deny_wins_a_tie() {
        let allow = parse_cidrs(&["169.254.0.0/16".into(), "10.1.0.0/16".into()]).unwrap();
        let deny = parse_cidrs(&[
            "169.254.169.254".into(),
            "10.0.0.0/8".into(),
            "127.0.0.0/8".into(),
            "10.1.0.0/16".into(),
        ])
        .unwrap();
        let policy = EgressPolicy::new(&allow, &deny);
        assert!(!refused(&policy, "169.254.1.1"), "allowed by the operator");
        assert!(
            refused(&policy, "169.254.169.254"),
            "the /32 deny is more specific"
        );
        assert!(refused(&policy, "10.2.0.1"), "denied by the /8");
        assert!(
            refused(&policy, "10.1.0.1"),
            "allow and deny on the same range: deny"
        );
        assert!(refused(&policy, "127.0.0.1"));
        assert!(refused(&policy, "::ffff:127.0.0.1"), "the mapped form too");
        let refusal = policy.check("127.0.0.1".parse().unwrap()).unwrap_err();
        assert!(
            refusal.to_string().contains("server.egress.deny_cidrs"),
            "{refusal}"
        );
    }

    #[test]
    fn cidr_lists_are_parsed_with_a_clear_error() {
        assert_eq!(
            parse_cidrs(&["10.0.0.0/8".into(), " ::1 ".into()])
                .unwrap()
                .len(),
            2
        );
        assert!(
            parse_cidrs(&["10.0.0.0/33".into()])
                .unwrap_err()
                .contains("10.0.0.0/33")
        );
    }
}

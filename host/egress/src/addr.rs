//! Which IP addresses are public: the address half of the outgoing-network
//! policy shared by `NET_FETCH` (the `wasi:http` hook, `lib.rs`) and the `exec:net` egress proxy
//! (`proxy.rs`).
//!
//! The table is the IANA special-purpose address registries, entry by entry:
//! - IPv4: <https://www.iana.org/assignments/iana-ipv4-special-registry/>
//!   (RFC 6890, updated 2025), plus multicast 224.0.0.0/4 (RFC 5771);
//! - IPv6: <https://www.iana.org/assignments/iana-ipv6-special-registry/>
//!   (RFC 6890, RFC 8190, updated 2025), plus the blocks of
//!   <https://www.iana.org/assignments/ipv6-address-space/> that are not
//!   global unicast (everything outside 2000::/3 is reserved by the IETF,
//!   except unique-local, link-local and multicast).
//!
//! The most specific entry covering an address decides; an entry is public
//! only where IANA marks it "Globally Reachable: True" (e.g. 192.0.0.9/32
//! inside 192.0.0.0/24). Every form of IPv6 that embeds an IPv4 address —
//! IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, IPv4-translated
//! `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16` (bits 16–47),
//! Teredo `2001::/32` (server in bits 32–63, client the inverted low 32
//! bits) — is refused when the IPv4 address it carries is not public, with
//! the reason naming that IPv4 address. The local-use NAT64 prefix
//! `64:ff9b:1::/48` is never public (its embedding depends on a local
//! prefix length).
//!
//! Host names that are IPv4 numbers in another spelling (`127.1`,
//! `2130706433`, `0x7f000001`, `0177.0.0.1`) are read as the address the C
//! resolver and browsers read, by [`parse_ipv4_loose`], so the policy never
//! depends on how a resolver spells them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How an IPv6 block carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embed {
    /// The low 32 bits (mapped, compatible, translated, NAT64 /96).
    Low32,
    /// 6to4: bits 16–47.
    SixToFour,
    /// Teredo: server in bits 32–63, client = !(low 32 bits).
    Teredo,
}

/// One registry entry.
struct Entry {
    net: u128,
    bits: u8,
    v6: bool,
    name: &'static str,
    rfc: &'static str,
    /// IANA "Globally Reachable" (after the embedded IPv4 address, if any, passed).
    global: bool,
    embeds: Option<Embed>,
}

#[allow(clippy::too_many_arguments)] // one table row
const fn v4(a: u8, b: u8, c: u8, d: u8, bits: u8, name: &'static str, rfc: &'static str, global: bool) -> Entry {
    Entry {
        net: u32::from_be_bytes([a, b, c, d]) as u128,
        bits,
        v6: false,
        name,
        rfc,
        global,
        embeds: None,
    }
}

const fn v6(segs: [u16; 8], bits: u8, name: &'static str, rfc: &'static str, global: bool, embeds: Option<Embed>) -> Entry {
    let mut net = 0u128;
    let mut i = 0;
    while i < 8 {
        net = (net << 16) | segs[i] as u128;
        i += 1;
    }
    Entry { net, bits, v6: true, name, rfc, global, embeds }
}

/// The IANA IPv4 Special-Purpose Address Registry (plus multicast).
static V4: &[Entry] = &[
    v4(0, 0, 0, 0, 8, "\"this network\"", "RFC 791", false),
    v4(0, 0, 0, 0, 32, "\"this host on this network\" (unspecified)", "RFC 1122", false),
    v4(10, 0, 0, 0, 8, "private-use", "RFC 1918", false),
    v4(100, 64, 0, 0, 10, "shared address space (carrier-grade NAT)", "RFC 6598", false),
    v4(127, 0, 0, 0, 8, "loopback", "RFC 1122", false),
    v4(169, 254, 0, 0, 16, "link-local", "RFC 3927", false),
    // Not a registry entry of its own: the best-known link-local address.
    v4(169, 254, 169, 254, 32, "link-local (the cloud metadata service)", "RFC 3927", false),
    v4(172, 16, 0, 0, 12, "private-use", "RFC 1918", false),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments", "RFC 6890", false),
    v4(192, 0, 0, 0, 29, "IPv4 service continuity prefix", "RFC 7335", false),
    v4(192, 0, 0, 8, 32, "IPv4 dummy address", "RFC 7600", false),
    v4(192, 0, 0, 9, 32, "Port Control Protocol anycast", "RFC 7723", true),
    v4(192, 0, 0, 10, 32, "TURN anycast", "RFC 8155", true),
    v4(192, 0, 0, 170, 32, "NAT64/DNS64 discovery", "RFC 8880", false),
    v4(192, 0, 0, 171, 32, "NAT64/DNS64 discovery", "RFC 8880", false),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)", "RFC 5737", false),
    v4(192, 31, 196, 0, 24, "AS112-v4", "RFC 7535", true),
    v4(192, 52, 193, 0, 24, "AMT", "RFC 7450", true),
    v4(192, 88, 99, 0, 24, "deprecated (6to4 relay anycast)", "RFC 7526", false),
    v4(192, 168, 0, 0, 16, "private-use", "RFC 1918", false),
    v4(192, 175, 48, 0, 24, "direct delegation AS112 service", "RFC 7534", true),
    v4(198, 18, 0, 0, 15, "benchmarking", "RFC 2544", false),
    v4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)", "RFC 5737", false),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)", "RFC 5737", false),
    v4(224, 0, 0, 0, 4, "multicast", "RFC 5771", false),
    v4(240, 0, 0, 0, 4, "reserved", "RFC 1112", false),
    v4(255, 255, 255, 255, 32, "limited broadcast", "RFC 919", false),
];

/// The IANA IPv6 Special-Purpose Address Registry, plus the non-global-unicast
/// blocks of the IPv6 address space.
static V6: &[Entry] = &[
    // IPv6 address space: only 2000::/3 is global unicast.
    v6([0, 0, 0, 0, 0, 0, 0, 0], 0, "reserved by the IETF (outside global unicast 2000::/3)", "RFC 4291", false, None),
    v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3, "global unicast", "RFC 4291", true, None),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local (private)", "RFC 4193", false, None),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", "RFC 4291", false, None),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "deprecated site-local", "RFC 3879", false, None),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291", false, None),
    // The special-purpose registry.
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291", false, None),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291", false, None),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped", "RFC 4291", true, Some(Embed::Low32)),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, "deprecated IPv4-compatible", "RFC 4291", false, Some(Embed::Low32)),
    v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96, "IPv4-translated", "RFC 2765", false, Some(Embed::Low32)),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "IPv4/IPv6 translation (NAT64)", "RFC 6052", true, Some(Embed::Low32)),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use IPv4/IPv6 translation", "RFC 8215", false, None),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666", false, None),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy IPv6 prefix", "RFC 9780", false, None),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments", "RFC 2928", false, None),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "RFC 4380", true, Some(Embed::Teredo)),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "Port Control Protocol anycast", "RFC 7723", true, None),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, "TURN anycast", "RFC 8155", true, None),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128, "DNS-SD service registration protocol anycast", "RFC 9665", true, None),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", "RFC 5180", false, None),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT", "RFC 7450", true, None),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6", "RFC 7535", true, None),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "deprecated (previously ORCHID)", "RFC 4843", false, None),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "RFC 7343", true, None),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28, "drone remote ID protocol entity tags", "RFC 9374", true, None),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation", "RFC 3849", false, None),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056", true, Some(Embed::SixToFour)),
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, "direct delegation AS112 service", "RFC 7534", true, None),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", "RFC 9637", false, None),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing (SRv6) SIDs", "RFC 9602", false, None),
];

impl Entry {
    fn contains(&self, bits: u128, is_v6: bool) -> bool {
        if self.v6 != is_v6 {
            return false;
        }
        let width = if is_v6 { 128 } else { 32 };
        if self.bits == 0 {
            return true;
        }
        let shift = width - u32::from(self.bits);
        (bits >> shift) == (self.net >> shift)
    }

    fn prefix(&self) -> String {
        if self.v6 {
            format!("{}/{}", Ipv6Addr::from(self.net), self.bits)
        } else {
            format!("{}/{}", Ipv4Addr::from(self.net as u32), self.bits)
        }
    }
}

/// The most specific table entry covering an address.
fn lookup(ip: IpAddr) -> Option<&'static Entry> {
    let (bits, is_v6, table) = match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), false, V4),
        IpAddr::V6(a) => (u128::from(a), true, V6),
    };
    table.iter().filter(|e| e.contains(bits, is_v6)).max_by_key(|e| e.bits)
}

/// Why an address is not public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonPublic {
    /// The registry block, e.g. `127.0.0.0/8`.
    pub block: String,
    /// Its name, e.g. `loopback`.
    pub name: &'static str,
    pub rfc: &'static str,
    /// The embedded IPv4 address that is not public, and why, for IPv6
    /// forms that carry one.
    pub embedded: Option<(Ipv4Addr, Box<NonPublic>)>,
}

impl fmt::Display for NonPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.embedded {
            Some((v4, why)) => write!(f, "{} ({}) address that embeds the IPv4 address {v4}, {why}", self.name, self.block),
            None => write!(f, "{} ({}, {})", self.name, self.block, self.rfc),
        }
    }
}

/// The IPv4 addresses an IPv6 address carries in the form `e` (Teredo carries two).
fn embedded(a: Ipv6Addr, e: Embed) -> Vec<Ipv4Addr> {
    let x = u128::from(a);
    match e {
        Embed::Low32 => vec![Ipv4Addr::from(x as u32)],
        Embed::SixToFour => vec![Ipv4Addr::from((x >> 80) as u32)],
        Embed::Teredo => vec![Ipv4Addr::from((x >> 64) as u32), Ipv4Addr::from(!(x as u32))],
    }
}

/// `None` if `ip` is a public address; otherwise which block it is in.
pub fn classify(ip: IpAddr) -> Option<NonPublic> {
    let Some(e) = lookup(ip) else {
        // Every IPv6 address is covered by ::/0; IPv4 addresses not in the
        // registry are ordinary unicast.
        return None;
    };
    let own = || NonPublic { block: e.prefix(), name: e.name, rfc: e.rfc, embedded: None };
    if let (IpAddr::V6(a), Some(kind)) = (ip, e.embeds) {
        for v4 in embedded(a, kind) {
            if let Some(why) = classify(IpAddr::V4(v4)) {
                return Some(NonPublic { embedded: Some((v4, Box::new(why))), ..own() });
            }
        }
    }
    if e.global {
        None
    } else {
        Some(own())
    }
}

/// Why `ip` is not a public address (`None` when it is public).
pub fn non_public_reason(ip: IpAddr) -> Option<String> {
    classify(ip).map(|n| n.to_string())
}

/// Reads a host name that is an IPv4 number in any spelling the C resolver
/// (`inet_aton`) and the WHATWG URL standard accept: one to four parts
/// separated by dots (a trailing dot allowed), each decimal, octal with a
/// leading `0`, or hex with `0x`; the last part fills the remaining bytes.
/// `127.1`, `2130706433`, `0x7f000001` and `0177.0.0.1` are all 127.0.0.1.
/// Returns `Err` for a host that looks numeric but is out of range (the
/// caller refuses it rather than asking a resolver what it means).
pub fn parse_ipv4_loose(host: &str) -> Option<Result<Ipv4Addr, String>> {
    let h = host.strip_suffix('.').unwrap_or(host);
    if h.is_empty() {
        return None;
    }
    let parts: Vec<&str> = h.split('.').collect();
    // Only a host whose last part is a number is an IPv4 address (WHATWG
    // "ends in a number"); anything else is a name.
    let numeric = |p: &str| -> Option<u64> {
        if p.is_empty() {
            return None;
        }
        let (digits, radix) = if let Some(x) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            (x, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (p, 10)
        };
        if digits.is_empty() {
            return Some(0); // "0x" alone is 0
        }
        if !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        // Saturate: anything this long is out of range anyway.
        Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
    };
    let last = parts.last()?;
    numeric(last)?;
    if parts.len() > 4 {
        return Some(Err(format!("`{host}` has more than four numeric parts")));
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        match numeric(p) {
            Some(n) => nums.push(n),
            None => return Some(Err(format!("`{host}` mixes numbers and names"))),
        }
    }
    let (init, last) = nums.split_at(nums.len() - 1);
    if init.iter().any(|&n| n > 255) {
        return Some(Err(format!("`{host}` has a part over 255")));
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if last[0] >= 1u64 << rest_bits {
        return Some(Err(format!("`{host}` is out of the IPv4 range")));
    }
    let mut v = 0u32;
    for (i, n) in init.iter().enumerate() {
        v |= (*n as u32) << (24 - 8 * i as u32);
    }
    v |= last[0] as u32;
    Some(Ok(Ipv4Addr::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows per registry entry (and per embedding form), with the expected
    /// verdict: `None` = public, `Some(text)` = refused with a reason
    /// containing `text`.
    const TABLE: &[(&str, Option<&str>)] = &[
            // IPv4 registry.
            ("0.0.0.0", Some("this host")),
            ("0.1.2.3", Some("this network")),
            ("10.0.0.1", Some("private-use")),
            ("10.255.255.255", Some("private-use")),
            ("100.64.0.1", Some("shared address space")),
            ("100.127.255.255", Some("shared address space")),
            ("100.128.0.0", None),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("169.254.1.1", Some("link-local")),
            ("169.254.169.254", Some("cloud metadata")),
            ("172.16.0.1", Some("private-use")),
            ("172.31.255.255", Some("private-use")),
            ("172.32.0.0", None),
            ("192.0.0.1", Some("service continuity")),
            ("192.0.0.8", Some("dummy")),
            ("192.0.0.9", None),
            ("192.0.0.10", None),
            ("192.0.0.11", Some("IETF protocol assignments")),
            ("192.0.0.170", Some("NAT64/DNS64")),
            ("192.0.0.171", Some("NAT64/DNS64")),
            ("192.0.2.55", Some("TEST-NET-1")),
            ("192.31.196.1", None),
            ("192.52.193.1", None),
            ("192.88.99.1", Some("6to4 relay")),
            ("192.168.1.1", Some("private-use")),
            ("192.175.48.1", None),
            ("198.18.0.1", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.51.100.7", Some("TEST-NET-2")),
            ("203.0.113.9", Some("TEST-NET-3")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.255", Some("limited broadcast")),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.215.14", None),
            // IPv6 registry.
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("::ffff:127.0.0.1", Some("embeds the IPv4 address 127.0.0.1, loopback")),
            ("::ffff:10.0.0.1", Some("10.0.0.1, private-use")),
            ("::ffff:169.254.169.254", Some("cloud metadata")),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some("embeds the IPv4 address 127.0.0.1, loopback")),
            ("::8.8.8.8", Some("IPv4-compatible")),
            ("::ffff:0:127.0.0.1", Some("embeds the IPv4 address 127.0.0.1")),
            ("::ffff:0:8.8.8.8", Some("IPv4-translated")),
            ("64:ff9b::a00:1", Some("10.0.0.1, private-use")),
            ("64:ff9b::7f00:1", Some("127.0.0.1")),
            ("64:ff9b::808:808", None),
            ("64:ff9b:1::8.8.8.8", Some("local-use IPv4/IPv6 translation")),
            ("64:ff9b:1::127.0.0.1", Some("local-use")),
            ("100::1", Some("discard-only")),
            ("100:0:0:1::1", Some("dummy IPv6 prefix")),
            ("2001:1::1", None),
            ("2001:1::2", None),
            ("2001:1::3", None),
            ("2001:1::4", Some("IETF protocol assignments")),
            ("2001:2::1", Some("benchmarking")),
            ("2001:3::1", None),
            ("2001:4:112::1", None),
            ("2001:10::1", Some("ORCHID")),
            ("2001:20::1", None),
            ("2001:30::1", None),
            ("2001:db8::1", Some("documentation")),
            ("2001:1ff::1", Some("IETF protocol assignments")),
            ("2001:200::1", None),
            ("2620:4f:8000::1", None),
            ("3fff::1", Some("documentation")),
            ("5f00::1", Some("segment routing")),
            ("fc00::1", Some("unique-local")),
            ("fd12:3456::1", Some("unique-local")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("ff02::1", Some("multicast")),
            ("4000::1", Some("outside global unicast")),
            ("::2", Some("IPv4-compatible")),
            ("1::1", Some("outside global unicast")),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001::1", None),
            // 6to4: the IPv4 address is bits 16-47.
            ("2002:7f00:1::1", Some("embeds the IPv4 address 127.0.0.1")),
            ("2002:a9fe:a9fe::", Some("169.254.169.254")),
            ("2002:c0a8:101::1", Some("192.168.1.1")),
            ("2002:808:808::1", None),
            // Teredo: server = bits 32-63, client = inverted low 32 bits.
            // Client 127.0.0.1 = !0x7f000001 = 0x80fffffe.
            ("2001:0:808:808:0:0:80ff:fffe", Some("embeds the IPv4 address 127.0.0.1")),
            // Server 10.0.0.1, client public 8.8.8.8 (!0x08080808 = 0xf7f7f7f7).
            ("2001:0:a00:1::f7f7:f7f7", Some("embeds the IPv4 address 10.0.0.1")),
            ("2001:0:808:808::f7f7:f7f7", None),
        ];

    #[test]
    fn every_special_purpose_block_is_classified() {
        for (ip, want) in TABLE {
            let addr: IpAddr = ip.parse().unwrap_or_else(|_| panic!("bad test address {ip}"));
            let got = non_public_reason(addr);
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some(g)) if g.contains(w) => {}
                _ => panic!("{ip}: expected {want:?}, got {got:?}"),
            }
        }
    }

    /// Every entry of the address table is the most specific match of at
    /// least one row above: a new entry needs a test row.
    #[test]
    fn every_entry_has_a_row() {
        for e in V4.iter().chain(V6) {
            let hit = TABLE.iter().any(|(ip, _)| {
                let ip: IpAddr = ip.parse().unwrap();
                lookup(ip).is_some_and(|m| std::ptr::eq(m, e))
            });
            assert!(hit, "no test row for {} ({})", e.prefix(), e.name);
        }
    }

    #[test]
    fn reasons_name_block_and_rfc() {
        let r = non_public_reason("10.1.2.3".parse().unwrap()).unwrap();
        assert_eq!(r, "private-use (10.0.0.0/8, RFC 1918)");
        let r = non_public_reason("::ffff:7f00:1".parse().unwrap()).unwrap();
        assert_eq!(r, "IPv4-mapped (::ffff:0.0.0.0/96) address that embeds the IPv4 address 127.0.0.1, loopback (127.0.0.0/8, RFC 1122)");
    }

    #[test]
    fn loose_ipv4_spellings() {
        let ok = |h: &str| parse_ipv4_loose(h).unwrap().unwrap().to_string();
        assert_eq!(ok("127.1"), "127.0.0.1");
        assert_eq!(ok("127.0.1"), "127.0.0.1");
        assert_eq!(ok("2130706433"), "127.0.0.1");
        assert_eq!(ok("0x7f000001"), "127.0.0.1");
        assert_eq!(ok("0X7F000001"), "127.0.0.1");
        assert_eq!(ok("0177.0.0.1"), "127.0.0.1");
        assert_eq!(ok("0x7f.0.0.0x1"), "127.0.0.1");
        assert_eq!(ok("0177.1"), "127.0.0.1");
        assert_eq!(ok("127.0.0.1."), "127.0.0.1");
        assert_eq!(ok("10.0.0.010"), "10.0.0.8");
        assert_eq!(ok("0"), "0.0.0.0");
        assert_eq!(ok("3232235777"), "192.168.1.1");
        assert_eq!(ok("169.254.43518"), "169.254.169.254");
        assert_eq!(ok("8.8.8.8"), "8.8.8.8");
        // Names are names.
        for h in ["example.com", "localhost", "127.0.0.1.nip.io", "0x7f.example", "a1", "1a", "deadbeef"] {
            assert!(parse_ipv4_loose(h).is_none(), "{h}");
        }
        // Numeric but invalid: refused, never resolved.
        for h in ["256.0.0.1", "1.2.3.4.5", "4294967296", "127.0.0.256", "1.2.65536", "foo.0x10", "08.0.0.1"] {
            assert!(matches!(parse_ipv4_loose(h), Some(Err(_))), "{h}: {:?}", parse_ipv4_loose(h));
        }
    }
}

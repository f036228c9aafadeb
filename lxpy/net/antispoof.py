"""Anti-spoofing (net.N.mac_filtering, ipv4_filtering, ipv6_filtering): one nftables table
per host end, `netdev lxpy-filter-HOSTEND`, whose chain hooks the host end's ingress:
every frame the container sends passes it, whether the host end is a bridge port, a
routed veth or unattached (a bridge-family table would see only bridged frames).
Each drop rule has a counter: `nft list table netdev lxpy-filter-HOSTEND` shows what was
dropped, and dropped() sums it.

Allowed: frames from the interface's own MAC; IPv4 and ARP from its net.N.ipv4 addresses
(with dhcp: the reserved lease, and DHCP requests from 0.0.0.0); IPv6 from its net.N.ipv6
addresses and the EUI-64 link-local of its MAC (the kernel's default, addr_gen_mode 0),
:: for duplicate address detection, neighbour advertisements only for those addresses;
no router advertisements; no VLAN-tagged frames.
The table is made at start and deleted at stop (it outlives its device otherwise)."""

from __future__ import annotations

import ipaddress
import re

from . import nft, records

FAMILY = "netdev"


def table_name(host_end: str) -> str:
    return "lxpy-filter-" + re.sub(r"[^A-Za-z0-9_]", "_", host_end)


def link_local(mac: str) -> str:
    """The EUI-64 link-local address of mac."""
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    eui = bytes(b[:3] + [0xFF, 0xFE] + b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui))


def _set(addrs: list[str]) -> str:
    return "{ " + ", ".join(addrs) + " }"


def rules(host_end: str, mac: str, v4: list[str] | None, v6: list[str] | None,
          dhcp: bool = False) -> list[str]:
    """The chain's rules. mac: the MAC to allow (mac filtering on); v4/v6: the addresses to
    allow (None: that family is not filtered; []: none is allowed)."""
    out = ["ether type { 8021q, 8021ad } counter drop"]
    if mac:
        out += [f"ether saddr != {mac} counter drop",
                f"ether type arp arp saddr ether != {mac} counter drop"]
    if v4 is not None:
        if dhcp:
            out.append("ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 "
                       "udp dport 67 accept")
        if v4:
            out += [f"ether type arp arp saddr ip != {_set(['0.0.0.0', *v4])} counter drop",
                    f"ether type ip ip saddr != {_set(v4)} counter drop"]
        else:
            out += ["ether type arp counter drop", "ether type ip counter drop"]
    if v6 is not None:
        out += ["ether type ip6 icmpv6 type nd-router-advert counter drop",
                "ether type ip6 ip6 saddr :: icmpv6 type { nd-neighbor-solicit, "
                "mld2-listener-report } accept",
                f"ether type ip6 ip6 saddr != {_set(v6)} counter drop"]
        # a neighbour advertisement for an address not its own (the target, at byte 8 of
        # the ICMPv6 header; nft takes a raw 128-bit field as an integer)
        targets = [hex(int(ipaddress.IPv6Address(a))) for a in v6]
        out.append("ether type ip6 icmpv6 type nd-neighbor-advert @th,64,128 != "
                   f"{_set(targets)} counter drop")
    return out


def ruleset(host_end: str, lines: list[str]) -> str:
    body = ["  chain ingress {",
            f"    type filter hook ingress device {nft.quote(host_end)} priority -500; "
            "policy accept;"]
    body += [f"    {x}" for x in lines]
    body.append("  }")
    return "\n".join(body)


def for_iface(p) -> list[str]:
    """The rules of an IfacePlan (empty: it asks for no filtering)."""
    if not (p.mac_filtering or p.ipv4_filtering or p.ipv6_filtering):
        return []
    v4 = [str(ipaddress.ip_interface(a).ip) for a in p.ipv4 + p.reserve4] \
        if p.ipv4_filtering else None
    v6 = None
    if p.ipv6_filtering:
        v6 = [str(ipaddress.ip_interface(a).ip) for a in p.ipv6] + [link_local(p.hwaddr)]
    return rules(p.host_name, p.hwaddr, v4, v6, dhcp=p.dhcp)


def apply(p) -> bool:
    """Make the table of p's host end; False when p asks for no filtering."""
    lines = for_iface(p)
    if not lines:
        return False
    nft.replace_table(FAMILY, table_name(p.host_name), ruleset(p.host_name, lines))
    return True


def remove(host_end: str) -> bool:
    name = table_name(host_end)
    if nft.table_exists(FAMILY, name):
        nft.run(f"delete table {FAMILY} {name}\n")
        return True
    return False


def dropped(host_end: str) -> int:
    """Packets the filter of host_end dropped so far (0 without a filter)."""
    data = nft.list_table(FAMILY, table_name(host_end), as_json=True) or {}
    n = 0
    for item in data.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        exprs = rule.get("expr", [])
        if any("drop" in e for e in exprs):
            n += sum(e["counter"].get("packets", 0) for e in exprs if "counter" in e)
    return n


def live() -> list[dict[str, object]]:
    """The filters of the running containers (any lxpath), with what each dropped."""
    return [{"container": rec.get("container"), "lxpath": rec.get("lxpath"),
             "host": i["host"], "table": f"{FAMILY} {table_name(i['host'])}",
             "dropped": dropped(i["host"])}
            for rec in records.containers()[0] for i in rec.get("ifaces", [])
            if i.get("filter")]

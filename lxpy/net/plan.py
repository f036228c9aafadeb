"""What interfaces a container gets: its [[net]] entries resolved and checked against the
host, the running containers and the published ports. Nothing is made here.

    plan = prepare(cfg, name, lxpath, running)   # NetworkError if anything is wrong

The network types are the table TYPES, one entry each (lxpy.net.iface is their
interface). prepare() speaks rtnetlink directly (lxpy.net.rtnl): no pyroute2.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..config.schema import parse_rate
from ..errors import NetworkError, lookup
from . import dnsmasq, forward, records, rtnl, tc
from .iface import HostView, IfacePlan, IfaceType
from .ipvlan import Ipvlan
from .macvlan import Macvlan
from .phys import Phys
from .routed import GATEWAY4, GATEWAY6, Routed
from .veth import Veth
from .vlan import Vlan

TYPES: dict[str, IfaceType] = {
    "veth": Veth(),            # a pair: one end on the host (on a bridge), one inside
    "routed": Routed(),        # a pair, no bridge: the host routes the addresses to it
    "macvlan": Macvlan(),      # a child of a host device with its own MAC
    "ipvlan": Ipvlan(),        # a child of a host device sharing its MAC
    "vlan": Vlan(),            # an 802.1Q sub-interface of a host device
    "phys": Phys(),            # a host device moved in, given back at stop
    "empty": IfaceType(),      # a netns with only lo
    "none": IfaceType(),       # the host's netns, shared
}
DEVICES = ("veth", "routed", "macvlan", "ipvlan", "vlan", "phys")   # types that make a device
HOST_END = ("veth", "routed")   # types with a host end: rate limits, filters


def type_of(name: str) -> IfaceType:
    return lookup(TYPES, name, "network type", NetworkError)


@dataclass
class Plan:
    container: str
    lxpath: Path
    ifaces: list[IfacePlan] = field(default_factory=list)
    share_host: bool = False          # type "none": the container uses the host's netns
    warnings: list[str] = field(default_factory=list)
    forwards: list[forward.Forward] = field(default_factory=list)   # [[forward]], resolved

    @property
    def has_devices(self) -> bool:
        return any(p.type in DEVICES for p in self.ifaces)

    def describe(self) -> list[str]:
        out = []
        for p in self.ifaces:
            s = f"{p.key()}: {p.type} {p.name}"
            if p.link:
                s += f" on {p.link}"
            if p.host_name and p.type in HOST_END:
                s += f" (host end {p.host_name})"
            if p.ipv4 or p.ipv6:
                s += " " + " ".join(p.ipv4 + p.ipv6)
            if p.dhcp:
                s += " dhcp" + (f" (lease {p.reserve4[0]})" if p.reserve4 else "")
            for what, rate in (("ingress", p.ingress), ("egress", p.egress)):
                if rate:
                    s += f" {what} {tc.rate_text(rate)}"
            checks = [k for k in ("mac", "ipv4", "ipv6") if getattr(p, f"{k}_filtering")]
            if checks:
                s += f" filtering {'+'.join(checks)}"
            out.append(s)
        out += [f"forward {f.describe()}" for f in self.forwards]
        return out


def host_name_for(name: str, lxpath: Path | str, index: int) -> str:
    """The host end of a veth: lx + name (truncated) + 4 hex of the lxpath/name + index."""
    h = hashlib.sha1(os.fsencode(f"{os.path.realpath(lxpath)}/{name}")).hexdigest()[:4]
    suffix = f"{h}{index}"
    return f"lx{name[:15 - 2 - len(suffix)]}{suffix}"


def fill_mac(mac: str, seed: str = "") -> str:
    """Fill the xx digits lxpy-create left: from seed (the same MAC, so the same DHCP
    lease, at every start), or at random without one."""
    if not mac:
        return ""
    parts = mac.split(":")
    src = hashlib.sha256(seed.encode()).digest() if seed else os.urandom(6)
    out = [f"{src[i]:02x}" if x == "xx" else x for i, x in enumerate(parts)]
    if parts[0] == "xx":  # locally administered, unicast
        out[0] = f"{(int(out[0], 16) & 0xFC) | 0x02:02x}"
    return ":".join(out)


def ip_of(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


def prepare(cfg: Any, name: str, lxpath: Path | str | None = None,
            running: Iterable[tuple[str, Any]] = ()) -> Plan:
    """Validate the [[net]] entries of cfg against the host; return what setup() will do.

    running: (name, config) of the other running containers of lxpath, as the start
    sequence sees them; their addresses and MACs are taken, as are those in the records
    of the containers whose network is set up (of any lxpath)."""
    lxpath = Path(lxpath) if lxpath else paths.default_lxpath()
    plan = Plan(container=name, lxpath=lxpath)
    entries = tuple(cfg.net)
    if not entries:
        return plan
    if "none" in [e.type for e in entries]:
        if len(entries) > 1:
            raise NetworkError("net: type none (the host's network) cannot be combined with "
                               "other [[net]] entries")
        plan.share_host = True
        plan.warnings.append("net type none: the container shares the host's network "
                             "(it can reconfigure the host's interfaces)")
        plan.ifaces.append(IfacePlan(index=0, type="none", name=""))
        return plan
    sc = paths.system_config()
    hv = HostView(rtnl.by_name())
    names: dict[str, str] = {}
    addrs: dict[str, str] = {}      # address -> the key of the entry that has it
    macs: dict[str, str] = {}
    for i, e in enumerate(entries):
        p = _entry(plan, i, e, sc, hv)
        plan.ifaces.append(p)
        if p.type == "empty":
            continue
        key = p.key()
        if p.name in names:
            raise NetworkError(f"{key}.name: {p.name!r} is already used by {names[p.name]}",
                               f"give {key}.name another name")
        names[p.name] = key
        for ip in map(ip_of, p.ipv4 + p.reserve4 + p.ipv6):
            if ip in addrs:
                raise NetworkError(f"{key}: address {ip} is already given to {addrs[ip]}")
            addrs[ip] = key
        if p.hwaddr:
            if p.hwaddr in macs:
                raise NetworkError(f"{key}.hwaddr: {p.hwaddr} is already used by "
                                   f"{macs[p.hwaddr]}")
            macs[p.hwaddr] = key
        type_of(p.type).check(p, hv)
    hosts = [p.host_name for p in plan.ifaces if p.type in HOST_END]
    if len(set(hosts)) != len(hosts):
        raise NetworkError("net: two veth entries have the same host end name",
                           "set distinct net.N.veth_host")
    _check_host(plan, hv, addrs, macs)
    _check_others(plan, running, addrs, macs)
    if any(p.managed for p in plan.ifaces):
        # a static address the bridge's DHCP server has leased to someone else
        mine = {p.hwaddr for p in plan.ifaces}
        for lease in dnsmasq.leases(sc.bridge):
            key = addrs.get(lease["ip"])
            if key and lease["mac"] not in mine:
                plan.warnings.append(f"{key}: {lease['ip']} is also leased by DHCP on "
                                     f"{sc.bridge} to {lease['hostname'] or lease['mac']}; "
                                     "pick an address outside the DHCP range")
    plan.forwards = forward.resolve(cfg.forward, plan.ifaces)
    forward.check_free(plan)
    return plan


def _entry(plan: Plan, i: int, e: Any, sc: Any, hv: HostView) -> IfacePlan:
    """One [[net]] entry resolved: names, MAC, addresses, gateways, limits, filters."""
    type_of(e.type)
    key = f"net.{i}"
    seed = f"{os.path.realpath(plan.lxpath)}/{plan.container}/{i}"
    filtering = bool(e.mac_filtering or e.ipv4_filtering or e.ipv6_filtering)
    p = IfacePlan(index=i, type=e.type, name=e.name or "eth0", link=e.link or "",
                  # the filters need to know the MAC: one from the seed if none is set
                  hwaddr=fill_mac(e.hwaddr or ("xx:xx:xx:xx:xx:xx" if filtering else ""), seed),
                  mtu=int(e.mtu or 0), dhcp=bool(e.dhcp), vlan=int(e.vlan or 0),
                  mode=e.ipvlan_mode if e.type == "ipvlan" else e.macvlan_mode or "bridge",
                  ingress=parse_rate(e.ingress) if e.ingress else 0,
                  egress=parse_rate(e.egress) if e.egress else 0,
                  mac_filtering=filtering, ipv4_filtering=bool(e.ipv4_filtering),
                  ipv6_filtering=bool(e.ipv6_filtering))
    p.extra["container"] = plan.container
    if e.type == "empty":
        return p
    if p.name == "lo":
        raise NetworkError(f"{key}.name: 'lo' is the loopback; pick another name (eth0)")
    p.managed = e.type == "veth" and p.link == sc.bridge
    if e.type in HOST_END:
        p.host_name = e.veth_host or host_name_for(plan.container, plan.lxpath, i)
        p.tmp_name = "lxt" + os.urandom(5).hex()
    elif e.type in ("macvlan", "ipvlan", "vlan"):
        p.tmp_name = "lxt" + os.urandom(5).hex()
    else:
        p.host_name = p.tmp_name = p.link
    v4 = tuple(e.ipv4)
    if p.dhcp:
        p.reserve4 = v4
        if v4 and not p.managed:
            plan.warnings.append(f"{key}: dhcp with ipv4 {v4[0]} reserves a lease only on "
                                 f"the managed bridge {sc.bridge}; it is ignored on "
                                 f"{p.link or 'an unattached veth'}")
    else:
        p.ipv4 = v4
    p.ipv6 = tuple(e.ipv6)
    if p.managed:
        managed_net = ipaddress.ip_network(sc.subnet, strict=False)
        for a in v4:
            ip = ipaddress.ip_interface(a).ip
            if ip not in managed_net:
                raise NetworkError(f"{key}.ipv4: {a} is outside the subnet {managed_net} of "
                                   f"the managed bridge {sc.bridge}",
                                   f"pick an address in {managed_net}")
            if ip in (managed_net.network_address, managed_net.broadcast_address):
                raise NetworkError(f"{key}.ipv4: {a} is not a host address of {managed_net}")
    if e.type == "routed":
        _routed_gateways(p, e, key)
        return p
    link = hv.get(p.link) if p.link else None
    gw4 = e.gateway4 or ""
    if gw4 == "auto" or (not gw4 and p.managed and p.ipv4):
        if e.type == "veth" and link and link.ipv4:
            gw4 = ip_of(link.ipv4[0])
        elif gw4 == "auto":
            raise NetworkError(f"{key}.gateway4: auto needs the bridge {p.link or '?'} to "
                               "have an IPv4 address", f"set {key}.gateway4 to an address")
        else:
            gw4 = ""
    p.gateway4 = gw4
    gw6 = e.gateway6 or ""
    if gw6 == "auto":
        bridge_v6 = [a for a in (link.ipv6 if link else []) if not a.startswith("fe80")]
        if not bridge_v6:
            raise NetworkError(f"{key}.gateway6: auto needs the bridge {p.link or '?'} to "
                               "have an IPv6 address", f"set {key}.gateway6 to an address")
        gw6 = ip_of(bridge_v6[0])
    p.gateway6 = gw6
    if p.gateway4 and not p.ipv4 and not p.dhcp:
        raise NetworkError(f"{key}.gateway4: a gateway needs an address on the interface",
                           f"set {key}.ipv4 (or {key}.dhcp = true and no gateway)")
    for gw, own, what in ((p.gateway4, p.ipv4, "gateway4"), (p.gateway6, p.ipv6, "gateway6")):
        if gw and own and not any(ipaddress.ip_address(gw) in ipaddress.ip_interface(a).network
                                  for a in own):
            raise NetworkError(f"{key}.{what}: {gw} is not in the subnet of "
                               f"{', '.join(own)}", "a gateway must be on the link")
    return p


def _routed_gateways(p: IfacePlan, e: Any, key: str) -> None:
    """A routed interface's gateways are the host end's link-local addresses."""
    for what in ("gateway4", "gateway6"):
        if getattr(e, what):
            raise NetworkError(f"{key}.{what}: a routed interface's gateway is the host end "
                               f"({GATEWAY4}, {GATEWAY6})", f"remove {key}.{what}")
    p.gateway4 = GATEWAY4 if p.ipv4 else ""
    p.gateway6 = GATEWAY6 if p.ipv6 else ""
    p.onlink = True


def _check_host(plan: Plan, hv: HostView, addrs: dict[str, str],
                macs: dict[str, str]) -> None:
    """The plan's addresses and MACs against the host's interfaces."""
    host_addrs, host_macs = {}, {}
    for lk in hv.links.values():
        for a in lk.ipv4 + lk.ipv6:
            host_addrs[ip_of(a)] = lk.name
        if lk.mac and lk.mac != "00:00:00:00:00:00":
            host_macs[lk.mac] = lk.name
    for ip, key in addrs.items():
        if ip in host_addrs:
            raise NetworkError(f"{key}: address {ip} is already used on the host "
                               f"(interface {host_addrs[ip]})", "pick another address")
    for mac, key in macs.items():
        if mac in host_macs and not any(p.type == "phys" and p.link == host_macs[mac]
                                        for p in plan.ifaces):
            raise NetworkError(f"{key}.hwaddr: MAC {mac} is already used on the host "
                               f"(interface {host_macs[mac]})",
                               f"use another {key}.hwaddr (xx digits are filled at random)")


def _check_others(plan: Plan, running: Iterable[tuple[str, Any]], addrs: dict[str, str],
                  macs: dict[str, str]) -> None:
    """The plan's addresses and MACs against the other running containers."""
    lh = records.lxhash(plan.lxpath)
    others: dict[str, tuple[set[str], set[str]]] = {}
    for rec in records.containers()[0]:
        if rec.get("lxhash") == lh and rec.get("container") == plan.container:
            continue
        # containers of other lxpaths may share the bridge: they count too
        label = f"'{rec['container']}'" if rec.get("lxhash") == lh else \
            f"'{rec['container']}' (in {rec.get('lxpath')})"
        a, m = others.setdefault(label, (set(), set()))
        a.update(rec.get("addrs", []))
        m.update(x for x in rec.get("macs", []) if x)
    # those the start sequence says are running (also those set up before a reboot of
    # lxpy-net, without a record)
    for name, cfg in running:
        label = f"'{name}'"
        if name == plan.container or label in others:
            continue
        a, m = others.setdefault(label, (set(), set()))
        for e in cfg.net:
            a.update(ip_of(x) for x in tuple(e.ipv4) + tuple(e.ipv6))
            if e.hwaddr and "xx" not in e.hwaddr:
                m.add(e.hwaddr.lower())
    for other, (a, m) in others.items():
        for ip, key in addrs.items():
            if ip in a:
                raise NetworkError(f"{key}: address {ip} is already used by running container "
                                   f"{other}", "pick another address")
        for mac, key in macs.items():
            if mac in m:
                raise NetworkError(f"{key}.hwaddr: MAC {mac} is already used by running "
                                   f"container {other}", f"change {key}.hwaddr")

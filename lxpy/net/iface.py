"""The interface of a network type: one small class each (veth.py, routed.py, macvlan.py,
ipvlan.py, vlan.py, phys.py),
listed in lxpy.net.plan.TYPES. A type validates its entry against the host at prepare
time and, at setup time, makes the device appear in the container's netns; the common
part (rename, MTU, addresses, routes, up) is done by lxpy.net.setup afterwards."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from .rtnl import Link


@dataclass
class IfacePlan:
    """One [[net]] entry, resolved: everything setup needs, nothing left to guess."""

    index: int                      # position in cfg.net
    type: str
    name: str                       # name inside the container
    link: str = ""                  # bridge (veth) or host device (macvlan, phys)
    host_name: str = ""             # veth: host end; phys: the device's host name
    tmp_name: str = ""              # name the device has when it arrives in the netns
    hwaddr: str = ""
    mtu: int = 0
    mode: str = ""
    ipv4: tuple[str, ...] = ()      # configured from the host (empty with dhcp)
    ipv6: tuple[str, ...] = ()
    gateway4: str = ""
    gateway6: str = ""
    dhcp: bool = False
    reserve4: tuple[str, ...] = ()  # dhcp + ipv4: a static lease on the managed bridge
    managed: bool = False           # link is lxpy-net's bridge
    vlan: int = 0                   # vlan: the VLAN id on link
    onlink: bool = False            # routed: the gateway is reached on the link, no subnet
    ingress: int = 0                # veth/routed: bits/s to the container (tbf on the host end)
    egress: int = 0                 # bits/s from the container (host end -> ifb -> tbf)
    mac_filtering: bool = False     # veth/routed: nft netdev table on the host end
    ipv4_filtering: bool = False
    ipv6_filtering: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return f"net.{self.index}"

    def record(self) -> dict[str, Any]:
        """What the container's network record keeps of it (lxpy.net.records)."""
        return {"name": self.name, "type": self.type, "link": self.link,
                "host": self.host_name, "managed": self.managed, "ipv4": list(self.ipv4),
                "ipv6": list(self.ipv6), "reserve4": list(self.reserve4),
                "hwaddr": self.hwaddr, "ifb": bool(self.egress),
                "filter": self.mac_filtering}


@dataclass
class HostView:
    """The host's links, read once for all checks of one prepare()."""

    links: dict[str, Link]

    def get(self, name: str) -> Link | None:
        return self.links.get(name)

    def by_index(self, idx: int) -> Link | None:
        for lk in self.links.values():
            if lk.index == idx:
                return lk
        return None


class IfaceType:
    """Also the whole of the types "empty" (a netns with only lo) and "none" (the host's
    netns, shared): nothing to check, nothing to make."""

    def check(self, p: IfacePlan, hv: HostView) -> None:
        """Raise NetworkError if p cannot be set up on this host. Nothing is made."""

    def create(self, p: IfacePlan, pid: int, stack: ExitStack) -> None:
        """Make the device and move it into the netns of pid as p.tmp_name; push undos."""

    def host_side(self, p: IfacePlan, stack: ExitStack) -> None:
        """What the host needs once the device is configured inside (routes, proxy ARP);
        push undos. Rate limits and filters are done by lxpy.net.setup for every type
        with a host end."""

    def teardown(self, iface: dict[str, Any]) -> list[str]:
        """Undo from a record's iface entry (setup.teardown) what the host end's deletion
        does not take along; what was undone."""
        return []

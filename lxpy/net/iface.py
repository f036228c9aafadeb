"""The interface of a network type: one small class each (veth.py, macvlan.py, phys.py),
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
    forwards: tuple[tuple[str, int, int], ...] = ()   # (proto, host port, container port)
    managed: bool = False           # link is lxpy-net's bridge
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return f"net.{self.index}"


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

"""ipvlan: a child of a host device sharing its MAC (modes l2, l3, l3s). In the l3 modes
the host device routes for it: the container needs no gateway, its default route goes
out of the device. Made on the host, moved into the container; it dies with the netns."""

from __future__ import annotations

from contextlib import ExitStack

from ..errors import NetworkError
from . import pr
from .iface import HostView, IfacePlan, IfaceType
from .rtnl import Link

MODES = {"l2": 0, "l3": 1, "l3s": 2}


def check_parent(p: IfacePlan, hv: HostView, what: str) -> Link:
    """The host device p sits on (macvlan, ipvlan, vlan), which must exist."""
    if not p.link:
        raise NetworkError(f"{p.key()}.link: a {what} needs the host device to sit on",
                           f"set {p.key()}.link (like eth0)")
    lk = hv.get(p.link)
    if lk is None:
        raise NetworkError(f"{p.key()}.link: host device {p.link!r} does not exist")
    if lk.kind == "bridge" and what == "ipvlan":
        raise NetworkError(f"{p.key()}.link: an ipvlan cannot sit on a bridge ({p.link})",
                           "use type veth to attach to a bridge")
    return lk


def move_in(ipr, p: IfacePlan, pid: int) -> None:
    """The common end of macvlan, ipvlan and vlan: MTU, then into the netns of pid."""
    idx = pr.require_index(ipr, p.tmp_name)
    if p.mtu:
        ipr.link("set", index=idx, mtu=p.mtu)
    ipr.link("set", index=idx, net_ns_pid=pid)


class Ipvlan(IfaceType):
    def check(self, p: IfacePlan, hv: HostView) -> None:
        check_parent(p, hv, "ipvlan")
        if p.hwaddr:
            raise NetworkError(f"{p.key()}.hwaddr: an ipvlan has its parent's MAC",
                               f"remove {p.key()}.hwaddr, or use type macvlan")

    def create(self, p: IfacePlan, pid: int, stack: ExitStack) -> None:
        with pr.host() as ipr:
            parent = pr.require_index(ipr, p.link)
            pr.add_link(ipr, p.tmp_name, "ipvlan", link=parent,
                        ipvlan_mode=MODES[p.mode or "l3s"])
            stack.callback(pr.delete_link, p.tmp_name)
            move_in(ipr, p, pid)

"""veth: a pair; the host end stays on the host (attached to a bridge or not), the
peer goes into the container. It vanishes with the container's netns."""

from __future__ import annotations

import os
from contextlib import ExitStack

from ..errors import NetworkError
from . import rtnl
from .iface import HostView, IfacePlan, IfaceType


class Veth(IfaceType):
    def check(self, p: IfacePlan, hv: HostView) -> None:
        if p.link:
            lk = hv.get(p.link)
            if lk is None:
                hint = ("start it with lxpy-net start" if p.managed
                        else f"create it, or change {p.key()}.link")
                raise NetworkError(f"{p.key()}.link: bridge {p.link!r} does not exist", hint)
            if lk.kind != "bridge":
                raise NetworkError(f"{p.key()}.link: {p.link!r} is not a bridge "
                                   f"(it is a {lk.kind or 'device'})",
                                   "a veth is attached to a bridge; use type macvlan or "
                                   "phys for a device")
        if hv.get(p.host_name) is not None:
            raise NetworkError(f"{p.key()}: host interface {p.host_name!r} already exists",
                               "is the container already running? set "
                               f"{p.key()}.veth_host to another name")

    def create(self, p: IfacePlan, pid: int, stack: ExitStack) -> None:
        make_pair(p, pid, stack, p.link)


def make_pair(p: IfacePlan, pid: int, stack: ExitStack, bridge: str) -> None:
    """The pair: p.host_name up on the host (on bridge, if any), p.tmp_name in the netns of
    pid. Plain rtnetlink (lxpy.net.rtnl): the common start path never imports pyroute2."""
    with rtnl.open_socket(None) as sock:
        bidx = None
        if bridge:
            bidx = rtnl.link_index(sock, bridge)
            if bidx is None:
                raise NetworkError(f"{p.key()}.link: bridge {bridge!r} disappeared")
        # A high host-side MAC never becomes the bridge's own address (as LXC does).
        host_mac = "fe:" + ":".join(f"{b:02x}" for b in os.urandom(5))
        try:
            rtnl.add_veth(sock, p.host_name, p.tmp_name, mtu=p.mtu, mac=host_mac,
                          peer_mac=p.hwaddr)
        except OSError as e:
            raise NetworkError(f"{p.key()}: cannot create veth {p.host_name}: "
                               f"{os.strerror(e.errno) if e.errno else e}") from None
        stack.callback(_delete, p.host_name)
        hidx = rtnl.link_index(sock, p.host_name)
        cidx = rtnl.link_index(sock, p.tmp_name)
        if hidx is None or cidx is None:
            raise NetworkError(f"{p.key()}: veth {p.host_name} vanished after creation")
        rtnl.set_link(sock, hidx, up=True, master=bidx,
                      what=f"attach {p.host_name} to {bridge or 'nothing'}")
        rtnl.set_link(sock, cidx, netns_pid=pid,
                      what=f"move {p.tmp_name} into the container (pid {pid})")


def _delete(name: str) -> None:
    with rtnl.open_socket(None) as sock:
        rtnl.del_link(sock, name)

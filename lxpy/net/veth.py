"""veth: a pair; the host end stays on the host (attached to a bridge or not), the
peer goes into the container. It vanishes with the container's netns."""

from __future__ import annotations

import os
from contextlib import ExitStack

from ..errors import NetworkError
from . import pr
from .iface import HostView, IfacePlan, IfaceType, register


@register
class Veth(IfaceType):
    name = "veth"

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
        with pr.host() as ipr:
            ipr.link("add", ifname=p.host_name, kind="veth", peer=p.tmp_name)
            stack.callback(pr.delete_link, p.host_name)
            hidx = pr.require_index(ipr, p.host_name)
            cidx = pr.require_index(ipr, p.tmp_name)
            # A high host-side MAC never becomes the bridge's own address (as LXC does).
            ipr.link("set", index=hidx, address="fe:" + ":".join(
                f"{b:02x}" for b in os.urandom(5)))
            if p.mtu:
                ipr.link("set", index=hidx, mtu=p.mtu)
                ipr.link("set", index=cidx, mtu=p.mtu)
            if p.hwaddr:
                ipr.link("set", index=cidx, address=p.hwaddr)
            if p.link:
                bidx = pr.index(ipr, p.link)
                if bidx is None:
                    raise NetworkError(f"{p.key()}.link: bridge {p.link!r} disappeared")
                ipr.link("set", index=hidx, master=bidx)
            ipr.link("set", index=hidx, state="up")
            ipr.link("set", index=cidx, net_ns_pid=pid)

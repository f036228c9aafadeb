"""macvlan: a child of a host device with its own MAC (modes private, vepa, bridge,
passthru). Made on the host, moved into the container; it dies with the netns."""

from __future__ import annotations

from contextlib import ExitStack

from ..errors import NetworkError
from . import pr
from .iface import HostView, IfacePlan, IfaceType
from .ipvlan import check_parent, move_in


class Macvlan(IfaceType):
    def check(self, p: IfacePlan, hv: HostView) -> None:
        lk = check_parent(p, hv, "macvlan")
        if lk.kind in ("bridge",) and p.mode == "passthru":
            raise NetworkError(f"{p.key()}: passthru needs a physical device, not a bridge")

    def create(self, p: IfacePlan, pid: int, stack: ExitStack) -> None:
        with pr.host() as ipr:
            parent = pr.require_index(ipr, p.link)
            pr.add_link(ipr, p.tmp_name, "macvlan", link=parent,
                        macvlan_mode=p.mode or "bridge")
            stack.callback(pr.delete_link, p.tmp_name)
            if p.hwaddr:
                ipr.link("set", index=pr.require_index(ipr, p.tmp_name), address=p.hwaddr)
            move_in(ipr, p, pid)

"""vlan: a VLAN sub-interface (802.1Q id net.N.vlan) of a host device, moved into the
container; it dies with the netns. The host keeps the untagged device."""

from __future__ import annotations

from contextlib import ExitStack

from . import pr
from .iface import HostView, IfacePlan, IfaceType
from .ipvlan import check_parent, move_in


class Vlan(IfaceType):
    def check(self, p: IfacePlan, hv: HostView) -> None:
        check_parent(p, hv, "vlan")

    def create(self, p: IfacePlan, pid: int, stack: ExitStack) -> None:
        with pr.host() as ipr:
            parent = pr.require_index(ipr, p.link)
            pr.add_link(ipr, p.tmp_name, "vlan", link=parent, vlan_id=p.vlan)
            stack.callback(pr.delete_link, p.tmp_name)
            if p.hwaddr:
                ipr.link("set", index=pr.require_index(ipr, p.tmp_name), address=p.hwaddr)
            move_in(ipr, p, pid)

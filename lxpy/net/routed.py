"""routed: a veth pair without a bridge. The container's addresses (/32, /128) are routed
to its host end; the host end holds 169.254.0.1 and fe80::1, the container's default
gateways (on the link). With link set, the host answers ARP/NDP for the addresses on that
device (proxy neighbour entries), so its network reaches the container as if it sat on it.
IPv4 forwarding is turned on for the host end and the link only (net.ipv4.conf.DEV.forwarding,
not the host-wide ip_forward); IPv6 forwards only with net.ipv6.conf.all.forwarding, which is
turned on when an IPv6 address is routed. rp_filter on the host end drops what the
container sends from addresses not routed to it."""

from __future__ import annotations

import ipaddress
from contextlib import ExitStack, suppress
from typing import Any

from ..errors import NetworkError
from . import rtnl, sysctl
from .iface import HostView, IfacePlan, IfaceType
from .veth import Veth, make_pair

GATEWAY4, GATEWAY6 = "169.254.0.1", "fe80::1"


def _ip(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


class Routed(IfaceType):
    def check(self, p: IfacePlan, hv: HostView) -> None:
        if p.link and hv.get(p.link) is None:
            raise NetworkError(f"{p.key()}.link: host device {p.link!r} does not exist",
                               f"name the device to answer ARP on, or remove {p.key()}.link")
        Veth().check(IfacePlan(index=p.index, type="veth", name=p.name,
                               host_name=p.host_name), hv)

    def create(self, p: IfacePlan, pid: int, stack: ExitStack) -> None:
        make_pair(p, pid, stack, "")

    def host_side(self, p: IfacePlan, stack: ExitStack) -> None:
        v4, v6 = [_ip(a) for a in p.ipv4], [_ip(a) for a in p.ipv6]
        if v6 and sysctl.get("net/ipv6/conf/all/forwarding") != "1":
            sysctl.set("net/ipv6/conf/all/forwarding", "1")
        if v4:
            for dev in filter(None, (p.host_name, p.link)):
                sysctl.set(sysctl.conf_key("ipv4", dev, "forwarding"), "1")
            sysctl.set(sysctl.conf_key("ipv4", p.host_name, "rp_filter"), "1")
        with rtnl.open_socket(None) as sock:
            idx = rtnl.link_index(sock, p.host_name)
            if idx is None:
                raise NetworkError(f"{p.key()}: host end {p.host_name} vanished")
            if v4:
                rtnl.add_address(sock, idx, f"{GATEWAY4}/32")
            if v6:
                with suppress(FileExistsError):     # the kernel may have made it already
                    rtnl.add_address(sock, idx, f"{GATEWAY6}/64")
            for a in v4 + v6:
                rtnl.add_route(sock, f"{a}/{32 if ':' not in a else 128}", idx)
            if not p.link:
                return
            lidx = rtnl.link_index(sock, p.link)
            if lidx is None:
                raise NetworkError(f"{p.key()}.link: host device {p.link!r} disappeared")
            if v6:
                sysctl.set(sysctl.conf_key("ipv6", p.link, "proxy_ndp"), "1")
            for a in v4 + v6:
                rtnl.proxy_neigh(sock, a, lidx)
                stack.callback(_unproxy, a, p.link)

    def teardown(self, iface: dict[str, Any]) -> list[str]:
        link = iface.get("link")
        if not link:
            return []
        return [f"proxy {a} on {link}" for a in map(_ip, iface.get("ipv4", []) +
                                                    iface.get("ipv6", []))
                if _unproxy(a, link)]


def _unproxy(address: str, link: str) -> bool:
    with rtnl.open_socket(None) as sock:
        idx = rtnl.link_index(sock, link)
        return idx is not None and rtnl.proxy_neigh(sock, address, idx, add=False)

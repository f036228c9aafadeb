"""A small read-only rtnetlink client: links and addresses of a network namespace.

Used where importing pyroute2 (100+ ms) would cost too much: validation in
`net.plan.prepare` and `addresses` for lxpy-ls/lxpy-info. One RTM_GETLINK and one
RTM_GETADDR dump on a socket opened inside the wanted netns (a short-lived thread
setns()es into it, opens the socket and exits; the socket keeps the netns).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from ..linux.libc import syscall

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CLONE_NEWNET = 0x40000000

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_STATS64, IFLA_PERM_ADDRESS = 18, 23, 54
IFLA_INFO_KIND = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 0x1

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTA = struct.Struct("=HH")


@dataclass
class Link:
    index: int
    name: str
    mac: str = ""
    perm_mac: str = ""
    kind: str = ""
    master: int = 0
    mtu: int = 0
    up: bool = False
    rx_bytes: int = 0
    tx_bytes: int = 0
    ipv4: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        ln, typ = _RTA.unpack_from(data, off)
        if ln < 4:
            break
        out[typ & 0x3FFF] = data[off + 4:off + ln]
        off += (ln + 3) & ~3
    return out


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def _replies(sock: socket.socket, msg_type: int, body: bytes, flags: int, what: str):
    """Send one request; yield (type, payload) of each reply to it until its ack or
    NLMSG_DONE. A netlink error is OSError(errno, "what: strerror")."""
    _seq[0] += 1
    seq = _seq[0]
    sock.send(_HDR.pack(_HDR.size + len(body), msg_type, NLM_F_REQUEST | flags, seq, 0) + body)
    while True:
        data = sock.recv(1 << 16)
        off = 0
        while off + _HDR.size <= len(data):
            ln, typ, _flags, rseq, _pid = _HDR.unpack_from(data, off)
            if ln < _HDR.size:
                return
            if rseq == seq:
                if typ == NLMSG_DONE:
                    return
                if typ == NLMSG_ERROR:
                    err = struct.unpack_from("=i", data, off + _HDR.size)[0]
                    if err:
                        raise OSError(-err, f"{what}: {os.strerror(-err)}")
                    return
                yield typ, data[off + _HDR.size:off + ln]
            off += (ln + 3) & ~3


_seq = [100]


def open_socket(pid: int | None = None) -> socket.socket:
    """A NETLINK_ROUTE socket in the netns of pid (None: our own)."""
    if pid is None or _same_netns(pid):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_ROUTE)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    result: dict[str, object] = {}

    def work() -> None:
        try:
            syscall("setns", fd, CLONE_NEWNET, path=f"/proc/{pid}/ns/net")
            result["sock"] = socket.socket(socket.AF_NETLINK,
                                           socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            result["err"] = e

    try:
        t = threading.Thread(target=work, name="lxpy-netns")
        t.start()
        t.join()
    finally:
        os.close(fd)
    if "err" in result:
        raise result["err"]  # type: ignore[misc]
    return result["sock"]  # type: ignore[return-value]


def _same_netns(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def links(pid: int | None = None, with_addresses: bool = True) -> dict[int, Link]:
    """Every link of the netns of pid, by index, with its addresses."""
    with open_socket(pid) as sock:
        out: dict[int, Link] = {}
        for _typ, body in _replies(sock, RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                                   NLM_F_DUMP, "netlink dump"):
            _fam, _type, index, flags, _change = _IFINFO.unpack_from(body, 0)
            a = _attrs(body, _IFINFO.size, len(body))
            link = Link(index=index, name=_cstr(a.get(IFLA_IFNAME, b"")), up=bool(flags & IFF_UP))
            if IFLA_ADDRESS in a:
                link.mac = _mac(a[IFLA_ADDRESS])
            if IFLA_PERM_ADDRESS in a:
                link.perm_mac = _mac(a[IFLA_PERM_ADDRESS])
            if IFLA_MASTER in a:
                link.master = struct.unpack("=I", a[IFLA_MASTER][:4])[0]
            if IFLA_MTU in a:
                link.mtu = struct.unpack("=I", a[IFLA_MTU][:4])[0]
            if IFLA_LINKINFO in a:
                li = a[IFLA_LINKINFO]
                info = _attrs(li, 0, len(li))
                if IFLA_INFO_KIND in info:
                    link.kind = _cstr(info[IFLA_INFO_KIND])
            if IFLA_STATS64 in a and len(a[IFLA_STATS64]) >= 32:
                _rxp, _txp, link.rx_bytes, link.tx_bytes = struct.unpack_from(
                    "=QQQQ", a[IFLA_STATS64], 0)
            out[index] = link
        if with_addresses:
            for _typ, body in _replies(sock, RTM_GETADDR,
                                       _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                                       NLM_F_DUMP, "netlink dump"):
                fam, plen, _fl, _scope, index = _IFADDR.unpack_from(body, 0)
                a = _attrs(body, _IFADDR.size, len(body))
                raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
                if raw is None or index not in out:
                    continue
                if fam == socket.AF_INET:
                    out[index].ipv4.append(f"{ipaddress.IPv4Address(raw)}/{plen}")
                elif fam == socket.AF_INET6:
                    out[index].ipv6.append(f"{ipaddress.IPv6Address(raw)}/{plen}")
        return out


def by_name(pid: int | None = None, with_addresses: bool = True) -> dict[str, Link]:
    return {lk.name: lk for lk in links(pid, with_addresses).values()}


def addresses(pid: int) -> dict[str, dict[str, Any]]:
    """{ifname: {"mac", "ipv4": [cidr...], "ipv6": [...], "rx_bytes", "tx_bytes", "up",
    "mtu"}} of the netns of pid (lxpy-ls, lxpy-info)."""
    return {lk.name: {"mac": lk.mac, "ipv4": lk.ipv4, "ipv6": lk.ipv6,
                      "rx_bytes": lk.rx_bytes, "tx_bytes": lk.tx_bytes, "up": lk.up,
                      "mtu": lk.mtu}
            for lk in links(pid).values()}


def link_up(pid: int | None, index: int = 1) -> None:
    """Set a link up (default: lo) in the netns of pid, without pyroute2."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
    with open_socket(pid) as sock:
        request(sock, RTM_NEWLINK, body, what=f"set link {index} up")


# ---------------------------------------------------------------------------
# The few writes a container's veth needs, so the common start path does not import
# pyroute2 (100+ ms): create a veth pair, set a link (name, up, master, netns, MAC,
# MTU), add an address, add a route, a proxy neighbour, delete a link.

NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x4, 0x200, 0x400
RTM_DELLINK, RTM_NEWROUTE = 17, 24
IFLA_NET_NS_PID = 19
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_BROADCAST, IFA_FLAGS = 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
_RTMSG = struct.Struct("=BBBBBBBBI")


def _rta(typ: int, data: bytes) -> bytes:
    ln = _RTA.size + len(data)
    return _RTA.pack(ln, typ) + data + b"\0" * ((4 - ln % 4) % 4)


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def request(sock: socket.socket, msg_type: int, body: bytes, flags: int = 0,
            what: str = "netlink request") -> None:
    """Send one request and wait for its ack; OSError(errno, what) on failure."""
    for _reply in _replies(sock, msg_type, body, NLM_F_ACK | flags, what):
        pass


def link_index(sock: socket.socket, name: str) -> int | None:
    """Index of link `name` in the socket's netns (one RTM_GETLINK by name)."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rta(IFLA_IFNAME, _name(name))
    try:
        for typ, reply in _replies(sock, RTM_GETLINK, body, 0, f"look up {name}"):
            if typ == RTM_NEWLINK:
                return _IFINFO.unpack_from(reply, 0)[2]
    except OSError as e:
        if e.errno != errno.ENODEV:
            raise
    return None


def add_veth(sock: socket.socket, name: str, peer: str, mtu: int = 0, mac: str = "",
             peer_mac: str = "") -> None:
    peer_attrs = _rta(IFLA_IFNAME, _name(peer))
    if peer_mac:
        peer_attrs += _rta(IFLA_ADDRESS, _mac_bytes(peer_mac))
    if mtu:
        peer_attrs += _rta(IFLA_MTU, struct.pack("=I", mtu))
    info = _rta(IFLA_INFO_KIND, b"veth") + _rta(
        IFLA_INFO_DATA, _rta(VETH_INFO_PEER, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                             + peer_attrs))
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rta(IFLA_IFNAME, _name(name))
    if mac:
        body += _rta(IFLA_ADDRESS, _mac_bytes(mac))
    if mtu:
        body += _rta(IFLA_MTU, struct.pack("=I", mtu))
    body += _rta(IFLA_LINKINFO, info)
    request(sock, RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL,
            f"create veth {name} (peer {peer})")


def add_link(sock: socket.socket, name: str, kind: str) -> None:
    """A link of a kind that needs no parameters (ifb)."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rta(IFLA_IFNAME, _name(name))
    body += _rta(IFLA_LINKINFO, _rta(IFLA_INFO_KIND, kind.encode()))
    request(sock, RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL, f"create {kind} {name}")


def set_link(sock: socket.socket, index: int, *, up: bool | None = None, name: str = "",
             master: int | None = None, netns_pid: int | None = None, mac: str = "",
             mtu: int = 0, what: str = "") -> None:
    flags = change = 0
    if up is not None:
        change = IFF_UP
        flags = IFF_UP if up else 0
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)
    if name:
        body += _rta(IFLA_IFNAME, _name(name))
    if master is not None:
        body += _rta(IFLA_MASTER, struct.pack("=I", master))
    if netns_pid is not None:
        body += _rta(IFLA_NET_NS_PID, struct.pack("=I", netns_pid))
    if mac:
        body += _rta(IFLA_ADDRESS, _mac_bytes(mac))
    if mtu:
        body += _rta(IFLA_MTU, struct.pack("=I", mtu))
    request(sock, RTM_NEWLINK, body, 0, what or f"set link {index}")


def del_link(sock: socket.socket, name: str) -> bool:
    """Delete link `name`; False if it was not there."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rta(IFLA_IFNAME, _name(name))
    try:
        request(sock, RTM_DELLINK, body, 0, f"delete {name}")
    except OSError as e:
        if e.errno == 19:
            return False
        raise
    return True


def add_address(sock: socket.socket, index: int, cidr: str, nodad: bool = True) -> None:
    iface = ipaddress.ip_interface(cidr)
    fam = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    raw = iface.ip.packed
    flags = 0x02 if (nodad and iface.version == 6) else 0   # IFA_F_NODAD
    body = _IFADDR.pack(fam, iface.network.prefixlen, flags & 0xFF, 0, index)
    body += _rta(IFA_LOCAL, raw) + _rta(IFA_ADDRESS, raw)
    if iface.version == 4 and iface.network.prefixlen < 31:
        body += _rta(IFA_BROADCAST, iface.network.broadcast_address.packed)
    if flags:
        body += _rta(IFA_FLAGS, struct.pack("=I", flags))
    request(sock, RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL, f"add address {cidr}")


RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
NDA_DST = 1
NTF_PROXY = 0x08
RTNH_F_ONLINK = 0x4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
_NDMSG = struct.Struct("=BxxxiHBB")


def add_route(sock: socket.socket, dst: str, index: int, gateway: str = "",
              onlink: bool = False) -> None:
    """A route to dst (a CIDR; "default" family by gateway) out of link index: through
    gateway (onlink: reached on the link without a subnet), or directly (scope link)."""
    if dst == "default":
        net = ipaddress.ip_network("0.0.0.0/0" if ipaddress.ip_address(gateway).version == 4
                                   else "::/0")
    else:
        net = ipaddress.ip_network(dst, strict=False)
    fam = socket.AF_INET if net.version == 4 else socket.AF_INET6
    scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
    flags = RTNH_F_ONLINK if onlink else 0
    # table main, proto static, unicast
    body = _RTMSG.pack(fam, net.prefixlen, 0, 0, 254, 4, scope, 1, flags)
    if net.prefixlen:
        body += _rta(RTA_DST, net.network_address.packed)
    if gateway:
        body += _rta(RTA_GATEWAY, ipaddress.ip_address(gateway).packed)
    body += _rta(RTA_OIF, struct.pack("=I", index))
    request(sock, RTM_NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL,
            f"add route to {dst}" + (f" via {gateway}" if gateway else ""))


def proxy_neigh(sock: socket.socket, address: str, index: int, add: bool = True) -> bool:
    """Answer ARP/NDP for address on link index (ip neigh add proxy ADDR dev LINK), or stop
    (add False: False if it was not there)."""
    ip = ipaddress.ip_address(address)
    fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    body = _NDMSG.pack(fam, index, 0, NTF_PROXY, 0) + _rta(NDA_DST, ip.packed)
    try:
        if add:
            request(sock, RTM_NEWNEIGH, body, NLM_F_CREATE | 0x100,   # NLM_F_REPLACE
                    f"add proxy neighbour {address}")
        else:
            request(sock, RTM_DELNEIGH, body, 0, f"delete proxy neighbour {address}")
    except OSError as e:
        if not add and e.errno in (errno.ENOENT, errno.ENODEV):
            return False
        raise
    return True

"""Rate limits on a container's host end, through the tc command (as nft.py does for
nftables: pyroute2's tc API differs between Debian's 0.7 and 0.9).

    ingress (what the container receives): a tbf qdisc at the root of the host end,
        whose egress is the container's ingress.
    egress (what the container sends): the host end's ingress redirected (u32 + mirred)
        to an ifb device of its own (ifb_name), shaped there by a tbf. A policer would do
        with one device, but this kernel has no act_police; shaping is also kinder to TCP.

The qdiscs go with the host end; the ifb device is deleted by remove()."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

from ..errors import NetworkError
from . import rtnl


def _tc() -> str:
    return shutil.which("tc") or "/usr/sbin/tc"


def rate_text(bits: int) -> str:
    """10_000_000 -> '10mbit' (tc's units)."""
    for unit, n in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits >= n and bits % n == 0:
            return f"{bits // n}{unit}"
    return f"{bits}bit"


def ifb_name(host_end: str) -> str:
    """The ifb device that shapes what arrives from host_end: lxb + 12 hex."""
    return "lxb" + hashlib.sha1(host_end.encode()).hexdigest()[:12]


def tbf(rate: int) -> str:
    """tbf parameters for rate (bits/s): a burst of 10 ms at that rate (at least 16 KiB, so
    one 64 KiB GSO segment passes at high rates), 50 ms of queue."""
    burst = max(rate // 8 // 100, 16 * 1024, 2 * 1514)
    return f"tbf rate {rate}bit burst {burst} latency 50ms"


def commands(host_end: str, ingress: int, egress: int) -> list[str]:
    """The tc batch lines for the limits of host_end (nothing for 0)."""
    out = []
    if ingress:
        out.append(f"qdisc add dev {host_end} root handle 1: {tbf(ingress)}")
    if egress:
        ifb = ifb_name(host_end)
        out += [f"qdisc add dev {ifb} root handle 1: {tbf(egress)}",
                f"qdisc add dev {host_end} handle ffff: ingress",
                f"filter add dev {host_end} parent ffff: protocol all prio 1 u32 "
                f"match u32 0 0 action mirred egress redirect dev {ifb}"]
    return out


def run(lines: list[str], what: str) -> None:
    try:
        r = subprocess.run([_tc(), "-batch", "-"], input="\n".join(lines) + "\n",
                           capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NetworkError("tc is not installed", "apt install iproute2") from None
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or ["?"])[0]
        raise NetworkError(f"{what}: tc refused: {first}")


def apply(host_end: str, ingress: int, egress: int, what: str) -> None:
    """Set the limits on host_end (the ifb device made for egress); remove() undoes."""
    if not (ingress or egress):
        return
    if egress:
        with rtnl.open_socket(None) as sock:
            # one left by this container when it was killed (the name is the host end's)
            rtnl.del_link(sock, ifb_name(host_end))
            try:
                rtnl.add_link(sock, ifb_name(host_end), "ifb")
            except OSError as e:
                raise NetworkError(f"{what}: cannot create the ifb device "
                                   f"{ifb_name(host_end)}: {e.strerror}",
                                   "the kernel needs CONFIG_IFB for egress limits") from None
            idx = rtnl.link_index(sock, ifb_name(host_end))
            rtnl.set_link(sock, idx, up=True, what=f"bring {ifb_name(host_end)} up")
    run(commands(host_end, ingress, egress), what)


def remove(host_end: str) -> bool:
    """Delete the ifb device of host_end (the qdiscs go with the host end)."""
    with rtnl.open_socket(None) as sock:
        return rtnl.del_link(sock, ifb_name(host_end))

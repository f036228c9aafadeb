"""Port forwards: DNAT from a host port to a container's address, IPv4 and IPv6.

Each forward is one JSON file in /run/lxpy/net/forwards/; the nft table
`inet lxpy-forward` is regenerated from all of them in one transaction (and deleted
when none is left). Rules sit in prerouting (traffic from other machines) and
output (the host itself, 127.0.0.1 included: route_localnet on the container's
link, and a masquerade of loopback sources so the container can answer). IPv6 from
the host itself works through any of its own addresses but not ::1: the kernel never
routes a ::1 source off the host."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import NetworkError
from . import nft, records, sysctl

FAMILY, TABLE = "inet", "lxpy-forward"


def state_dir() -> Path:
    return records.run_root() / "forwards"


def _locked():
    """One change of the forwards at a time (see records.dir_lock)."""
    return records.dir_lock(state_dir())


def list_all() -> list[dict[str, Any]]:
    return [r for _f, r in records.load_all(state_dir())]


def _file_for(proto: str, host_port: int) -> Path:
    return state_dir() / f"{proto}-{host_port}.json"


def ruleset(recs: list[dict[str, Any]]) -> str:
    rules = []
    hairpin = []
    for r in recs:
        # a neighbour on the container's own link going through the host's address:
        # masquerade, or the answer would bypass the host and miss the reverse NAT
        if r.get("ipv4") and r.get("net4"):
            hairpin.append(f"ip saddr {r['net4']} ip daddr {r['ipv4']} {r['proto']} dport "
                           f"{r['port']} ct status dnat masquerade")
        if r.get("ipv6") and r.get("net6"):
            hairpin.append(f"ip6 saddr {r['net6']} ip6 daddr {r['ipv6']} {r['proto']} dport "
                           f"{r['port']} ct status dnat masquerade")
        proto, hp, cp = r["proto"], int(r["host_port"]), int(r["port"])
        if r.get("ipv4"):
            rules.append(f"meta nfproto ipv4 fib daddr type local {proto} dport {hp} "
                         f"dnat ip to {r['ipv4']}:{cp}")
        if r.get("ipv6"):
            rules.append(f"meta nfproto ipv6 fib daddr type local {proto} dport {hp} "
                         f"dnat ip6 to [{r['ipv6']}]:{cp}")
    body = ["  chain prerouting {", "    type nat hook prerouting priority dstnat; "
            "policy accept;"]
    body += [f"    {x}" for x in rules]
    body += ["  }", "  chain output {", "    type nat hook output priority -100; "
             "policy accept;"]
    body += [f"    {x}" for x in rules]
    body += ["  }", "  chain postrouting {",
             "    type nat hook postrouting priority srcnat; policy accept;",
             "    ip saddr 127.0.0.0/8 ct status dnat masquerade",
             *[f"    {x}" for x in hairpin],
             "  }"]
    return "\n".join(body)


def _apply() -> None:
    recs = list_all()
    if recs:
        nft.replace_table(FAMILY, TABLE, ruleset(recs))
    else:
        nft.delete_table(FAMILY, TABLE)


def _replaces(r: dict[str, Any], port: int, ipv4: str | None, ipv6: str | None) -> bool:
    """r (a live forward of the same container and host port) differs from this one."""
    return (int(r.get("port", 0)), r.get("ipv4"), r.get("ipv6")) != (port, ipv4, ipv6)


def _replace_error(r: dict[str, Any], what: str = "") -> NetworkError:
    proto, hp, name = r.get("proto"), r.get("host_port"), r.get("container")
    where = ""
    if r.get("lxpath") and (os.path.realpath(r["lxpath"])
                            != os.path.realpath(paths.default_lxpath())):
        where = f"-P {r['lxpath']} "
    hint = (f"remove it first: lxpy-net {where}forward remove {name} {proto} {hp}"
            if r.get("owner") != "config" else
            f"it is {name}'s net.N.forward; change it there, or pick another host port")
    to = r.get("ipv4") or f"[{r.get('ipv6')}]"
    return NetworkError(f"{what}host port {proto}/{hp} is already forwarded to container "
                        f"{name!r} ({to}:{r.get('port')})", hint)


def _listeners(proto: str, port: int, v4: bool, v6: bool) -> list[str]:
    """Host sockets listening on port (TCP: /proc/net/tcp{,6}, state LISTEN) that a
    forward of this family would hide: a DNAT rule takes every local address."""
    if proto != "tcp":
        return []
    out = []
    for fam in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{fam}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 4 or f[3] != "0A":
                continue
            addr_hex, _, port_hex = f[1].partition(":")
            if int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
            # each 32-bit word is in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw)
            if fam == "tcp6":
                mapped = ip.ipv4_mapped
                hits = v6 or (v4 and (mapped is not None or ip.is_unspecified))
                shown = f"[{ip}]:{port}"
            else:
                hits, shown = v4, f"{ip}:{port}"
            if hits and shown not in out:
                out.append(shown)
    return out


def _check_listeners(proto: str, hp: int, v4: Any, v6: Any, what: str = "") -> None:
    busy = _listeners(proto, hp, bool(v4), bool(v6))
    if busy:
        raise NetworkError(f"{what}host port {proto}/{hp} is in use on the host (a service "
                           f"listens on {', '.join(busy)})",
                           "pick another host port, or stop that service")


def _check(proto: str, hp: int, port: int, v4: str | None, v6: str | None, container: str,
           lxhash: str, what: str = "") -> dict[str, Any] | None:
    """Refuse a host port forwarded to another container, forwarded elsewhere in this
    one, or where a host service listens. Returns the same forward if it is in place."""
    r = _existing(proto, hp)
    if r and (r.get("container"), r.get("lxhash")) != (container, lxhash):
        raise NetworkError(f"{what}host port {proto}/{hp} is already forwarded to "
                           f"container {r.get('container')!r}", "pick another host port")
    if r and _replaces(r, port, v4, v6):
        raise _replace_error(r, what)
    if not r:
        _check_listeners(proto, hp, v4, v6, what)
    return r


def check_free(plan: Any) -> None:
    lh = records.lxhash(plan.lxpath)
    for p in plan.ifaces:
        v4 = next((str(ipaddress.ip_interface(a).ip) for a in p.ipv4 + p.reserve4), None)
        v6 = next((str(ipaddress.ip_interface(a).ip) for a in p.ipv6), None)
        for proto, hp, cp in p.forwards:
            _check(proto, hp, cp, v4, v6, plan.container, lh, f"{p.key()}.forward: ")


def _existing(proto: str, hp: int) -> dict[str, Any] | None:
    """The forward of this host port, unless it is a stale config forward (its
    container's netns is gone): that one is replaced without a word."""
    r = records.load(_file_for(proto, hp))
    if not r or r.get("owner") == "config" and not records.alive(r):
        return None
    return r


def _enable_localnet(dev: str) -> None:
    if dev:
        with suppress(OSError):
            sysctl.set(sysctl.conf_key("ipv4", dev, "route_localnet"), "1")


def add(container: str, lxpath: Path | str, proto: str, host_port: int, port: int,
        ipv4: str | None, ipv6: str | None, dev: str = "", owner: str = "cli",
        pid: int = 0, netns: int = 0) -> dict[str, Any]:
    if proto not in ("tcp", "udp"):
        raise NetworkError(f"{proto!r}: a forward is tcp or udp")
    for x in (host_port, port):
        if not 1 <= x <= 65535:
            raise NetworkError(f"port {x} is out of range (1-65535)")
    if not ipv4 and not ipv6:
        raise NetworkError(f"container {container!r} has no address to forward to",
                           "give it a static net.0.ipv4, or start it and let it get a lease")
    rec = {"owner": owner, "container": container, "lxpath": str(lxpath),
           "lxhash": records.lxhash(lxpath), "proto": proto, "host_port": host_port, "port": port,
           "ipv4": str(ipaddress.ip_interface(ipv4).ip) if ipv4 else None,
           "ipv6": str(ipaddress.ip_interface(ipv6).ip) if ipv6 else None, "dev": dev,
           "net4": str(ipaddress.ip_interface(ipv4).network) if ipv4 and "/" in ipv4 else None,
           "net6": str(ipaddress.ip_interface(ipv6).network) if ipv6 and "/" in ipv6 else None,
           "pid": pid, "netns": netns}
    with _locked():
        mine = _check(proto, host_port, port, rec["ipv4"], rec["ipv6"], container,
                      rec["lxhash"])
        if mine and owner == "cli":
            return mine     # the same forward again: nothing to do
        f = _file_for(proto, host_port)
        before = f.read_text() if f.exists() else None
        records.write_json(f, rec)
        try:
            _enable_localnet(dev)
            _apply()
        except BaseException:
            if before is None:
                f.unlink()
            else:
                f.write_text(before)
            raise
    return rec


def remove(container: str | None, lxpath: Path | str | None, proto: str, host_port: int,
           owner: str | None = None) -> bool:
    with _locked():
        f = _file_for(proto, host_port)
        r = records.load(f)
        if not r:
            return False
        if container is not None and (r.get("container") != container or lxpath is not None
                                      and r.get("lxhash") != records.lxhash(lxpath)):
            return False
        if owner is not None and r.get("owner") != owner:
            return False
        f.unlink()
        _apply()
        return True


def up(plan: Any, pid: int) -> ExitStack:
    """Install the forwards of the plan's config (owner "config"); close() removes them."""
    stack = ExitStack()
    try:
        ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        ino = 0
    try:
        for p in plan.ifaces:
            if not p.forwards:
                continue
            v4 = next((str(ipaddress.ip_interface(a)) for a in p.ipv4 + p.reserve4), None)
            v6 = next((str(ipaddress.ip_interface(a)) for a in p.ipv6), None)
            dev = p.link if p.type == "veth" and p.link else p.host_name
            for proto, hp, cp in p.forwards:
                add(plan.container, plan.lxpath, proto, hp, cp, v4, v6, dev=dev,
                    owner="config", pid=pid, netns=ino)
                stack.callback(remove, plan.container, plan.lxpath, proto, hp, "config")
    except BaseException:
        stack.close()
        raise
    return stack


def _drop(which: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Remove the config-owned forwards which(record) picks."""
    gone = []
    with _locked():
        for f, r in records.load_all(state_dir()):
            if r.get("owner") == "config" and which(r):
                f.unlink()
                gone.append(f"{r.get('proto')}/{r.get('host_port')}")
        if gone:
            _apply()
    return gone


def cleanup_stale() -> list[str]:
    """Drop config-owned forwards whose container's netns is gone."""
    return _drop(lambda r: not records.alive(r))


def remove_container(container: str, lxpath: Path | str) -> list[str]:
    """Remove the config-owned forwards of a container (at stop)."""
    lh = records.lxhash(lxpath)
    return _drop(lambda r: (r.get("container"), r.get("lxhash")) == (container, lh))

"""Port forwards: a container's [[forward]] entries, DNAT from a host port to its address,
IPv4 and IPv6. They live in the container's config.toml, are set up at start and removed
at stop (so they come back after a host reboot); `lxpy-net forward add|rm` edits the
config and applies the change to a running container.

While a container runs, each of its forwards is one JSON file in /run/lxpy/net/forwards/;
the nft table `inet lxpy-forward` is regenerated from all of them in one transaction (and
deleted when none is left). Rules sit in prerouting (traffic from other machines) and
output (the host itself, 127.0.0.1 included: route_localnet on the container's link, and
a masquerade of loopback sources so the container can answer). IPv6 from the host itself
works through any of its own addresses but not ::1: the kernel never routes a ::1 source
off the host.

The listen address: a bare port takes every host address of both families, 0.0.0.0 and
[::] every address of one, any other address only that one."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..config import edit
from ..container import Container
from ..errors import ConfigError, NetworkError
from . import dnsmasq, nft, records, rtnl, sysctl

log = logging.getLogger("lxpy.net")
FAMILY, TABLE = "inet", "lxpy-forward"
WILD = {"": {4, 6}, "0.0.0.0": {4}, "::": {6}}


def split_listen(listen: Any) -> tuple[str, int]:
    """'192.0.2.1:8080' -> ('192.0.2.1', 8080); '[::1]:80' -> ('::1', 80); 8080 -> ('', 8080).
    The schema has checked it."""
    addr, _sep, port = str(listen).rpartition(":")
    return addr.strip("[]"), int(port)


def listen_text(addr: str, port: int) -> str:
    if not addr:
        return str(port)
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def families(addr: str) -> set[int]:
    return WILD.get(addr) or {ipaddress.ip_address(addr).version}


def overlaps(a: str, b: str) -> bool:
    """Do two listen addresses (of the same port) take a packet in common?"""
    if not families(a) & families(b):
        return False
    return a in WILD or b in WILD or ipaddress.ip_address(a) == ipaddress.ip_address(b)


@dataclass(frozen=True)
class Entry:
    """A [[forward]] entry not (yet) in a config: what resolve() reads of one."""

    proto: str
    listen: str
    port: int


@dataclass(frozen=True)
class Forward:
    """One [[forward]] entry resolved against the container's interfaces."""

    proto: str
    addr: str               # listen address ("" every host address)
    host_port: int
    port: int
    ipv4: str | None        # the container's addresses, with prefix
    ipv6: str | None
    dev: str                # the host link the container sits behind (route_localnet)

    def describe(self) -> str:
        to = " ".join(x.split("/")[0] for x in (self.ipv4, self.ipv6) if x)
        return f"{self.proto} {listen_text(self.addr, self.host_port)} -> {to} port {self.port}"


def resolve(entries: Iterable[Any], ifaces: Iterable[Any], where: str = "forward"
            ) -> list[Forward]:
    """[[forward]] entries against the interfaces (IfacePlans, or their records as dicts):
    the first fixed IPv4 and IPv6 address of the container is the target."""
    v4 = v6 = None
    dev = ""
    for i in ifaces:
        r = i if isinstance(i, dict) else i.record()
        if r.get("type") in ("empty", "none"):
            continue
        a4 = next(iter(r.get("ipv4", []) + r.get("reserve4", [])), None)
        a6 = next(iter(r.get("ipv6", [])), None)
        if (a4 and not v4) or (a6 and not v6):
            dev = dev or (r["link"] if r.get("type") == "veth" and r.get("link")
                          else r.get("host") or "")
        v4, v6 = v4 or a4, v6 or a6
    out = []
    for n, e in enumerate(entries):
        addr, hp = split_listen(e.listen)
        fams = families(addr)
        t4 = v4 if 4 in fams else None
        t6 = v6 if 6 in fams else None
        if not (t4 or t6):
            fam = "an IPv4" if fams == {4} else "an IPv6" if fams == {6} else "a fixed"
            raise NetworkError(f"{where}.{n}: listen {e.listen} needs {fam} address in the "
                               "container to forward to",
                               "set net.0.ipv4 or net.0.ipv6 (with dhcp = true an ipv4 "
                               "becomes a static lease)")
        out.append(Forward(e.proto, addr, hp, int(e.port or hp), t4, t6, dev))
    return out


# ---------------------------------------------------------------------------
# What is live: the records and the nft table


def state_dir() -> Path:
    return records.run_root() / "forwards"


def _locked():
    """One change of the forwards at a time (see records.dir_lock)."""
    return records.dir_lock(state_dir())


def list_all() -> list[dict[str, Any]]:
    """The live forwards (of every lxpath), whose container still runs."""
    return [r for _f, r in records.load_all(state_dir()) if records.alive(r)]


def _file_for(proto: str, addr: str, host_port: int) -> Path:
    return state_dir() / f"{proto}-{addr or 'any'}-{host_port}.json"


def _match(r: dict[str, Any], fam: int) -> str:
    addr = r.get("addr") or ""
    if addr in WILD:
        return "fib daddr type local"
    return f"{'ip' if fam == 4 else 'ip6'} daddr {addr}"


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
            rules.append(f"meta nfproto ipv4 {_match(r, 4)} {proto} dport {hp} "
                         f"dnat ip to {r['ipv4']}:{cp}")
        if r.get("ipv6"):
            rules.append(f"meta nfproto ipv6 {_match(r, 6)} {proto} dport {hp} "
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


def _holder(r: dict[str, Any]) -> str:
    name = f"{r.get('container')!r}"
    if r.get("lxpath") and (os.path.realpath(r["lxpath"])
                            != os.path.realpath(paths.default_lxpath())):
        name += f" (in {r['lxpath']})"
    return name


def _listeners(proto: str, port: int, addr: str, v4: bool, v6: bool) -> list[str]:
    """Host sockets listening on port (TCP: /proc/net/tcp{,6}, state LISTEN) that a
    forward of this family and listen address would hide."""
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
                shown, ip = f"[{ip}]:{port}", mapped or ip
            else:
                hits, shown = v4, f"{ip}:{port}"
            if hits and addr not in WILD and not ip.is_unspecified:
                hits = ip == ipaddress.ip_address(addr)
            if hits and shown not in out:
                out.append(shown)
    return out


def _check(fw: Forward, container: str, lxhash: str, what: str = "") -> dict[str, Any] | None:
    """Refuse a host port forwarded to another running container, or where a host service
    listens. Returns this container's same forward if it is in place."""
    mine = None
    for r in list_all():
        if r.get("proto") != fw.proto or int(r.get("host_port", 0)) != fw.host_port \
                or not overlaps(r.get("addr") or "", fw.addr):
            continue
        if (r.get("container"), r.get("lxhash")) != (container, lxhash):
            held = listen_text(r.get("addr") or "", fw.host_port)
            raise NetworkError(f"{what}host port {fw.proto} "
                               f"{listen_text(fw.addr, fw.host_port)} is already forwarded to "
                               f"container {_holder(r)} ({fw.proto} {held})",
                               "pick another host port or listen address")
        mine = r
    if not mine:
        busy = _listeners(fw.proto, fw.host_port, fw.addr, bool(fw.ipv4), bool(fw.ipv6))
        if busy:
            raise NetworkError(f"{what}host port {fw.proto}/{fw.host_port} is in use on the "
                               f"host (a service listens on {', '.join(busy)})",
                               "pick another host port, or stop that service")
    return mine


def check_free(plan: Any) -> None:
    lh = records.lxhash(plan.lxpath)
    for n, fw in enumerate(plan.forwards):
        _check(fw, plan.container, lh, f"forward.{n}: ")


def _enable_localnet(dev: str) -> None:
    if dev:
        with suppress(OSError):
            sysctl.set(sysctl.conf_key("ipv4", dev, "route_localnet"), "1")


def add(container: str, lxpath: Path | str, fw: Forward, pid: int, netns: int
        ) -> dict[str, Any]:
    """Publish fw for the running container (pid, netns: its init and netns inode)."""
    rec = {"container": container, "lxpath": str(lxpath), "lxhash": records.lxhash(lxpath),
           "proto": fw.proto, "addr": fw.addr, "host_port": fw.host_port, "port": fw.port,
           "ipv4": str(ipaddress.ip_interface(fw.ipv4).ip) if fw.ipv4 else None,
           "ipv6": str(ipaddress.ip_interface(fw.ipv6).ip) if fw.ipv6 else None,
           "dev": fw.dev,
           "net4": str(ipaddress.ip_interface(fw.ipv4).network) if fw.ipv4 else None,
           "net6": str(ipaddress.ip_interface(fw.ipv6).network) if fw.ipv6 else None,
           "pid": pid, "netns": netns}
    with _locked():
        if _check(fw, container, rec["lxhash"]):
            return rec
        f = _file_for(fw.proto, fw.addr, fw.host_port)
        records.write_json(f, rec)
        try:
            _enable_localnet(fw.dev)
            _apply()
        except BaseException:
            records.unlink(f)
            raise
    return rec


def _drop(which: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Remove the live forwards which(record) picks."""
    gone = []
    with _locked():
        for f, r in records.load_all(state_dir()):
            if which(r):
                f.unlink()
                gone.append(f"{r.get('proto')} "
                            f"{listen_text(r.get('addr') or '', r.get('host_port', 0))}")
        if gone:
            _apply()
    return gone


def up(plan: Any, pid: int) -> ExitStack:
    """Publish the plan's forwards; close() removes them."""
    stack = ExitStack()
    try:
        ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        ino = 0
    try:
        for fw in plan.forwards:
            add(plan.container, plan.lxpath, fw, pid, ino)
            stack.callback(_remove_one, plan.container, plan.lxpath, fw.proto, fw.addr,
                           fw.host_port)
    except BaseException:
        stack.close()
        raise
    return stack


def _remove_one(container: str, lxpath: Path | str, proto: str, addr: str, hp: int
                ) -> list[str]:
    lh = records.lxhash(lxpath)
    return _drop(lambda r: (r.get("container"), r.get("lxhash"), r.get("proto"),
                            r.get("addr") or "", r.get("host_port")) == (container, lh, proto,
                                                                         addr, hp))


def cleanup_stale() -> list[str]:
    """Drop forwards whose container's netns is gone."""
    return _drop(lambda r: not records.alive(r))


def remove_container(container: str, lxpath: Path | str) -> list[str]:
    """Remove the live forwards of a container (at stop)."""
    lh = records.lxhash(lxpath)
    return _drop(lambda r: (r.get("container"), r.get("lxhash")) == (container, lh))


# ---------------------------------------------------------------------------
# The config side: lxpy-net forward add | rm | ls


def _same(t: dict[str, Any], proto: str, addr: str, hp: int) -> bool:
    """Is the [[forward]] table t the one of proto, addr and host port hp?"""
    return (t.get("proto", "tcp"), *split_listen(t.get("listen", ""))) == (proto, addr, hp)


def configured(lxpath: Path | str) -> list[tuple[str, Any, bool]]:
    """(container, [[forward]] entry, live?) of every container of lxpath whose config
    loads."""
    live = {(r.get("container"), r.get("proto"), r.get("addr") or "", r.get("host_port"))
            for r in list_all() if r.get("lxhash") == records.lxhash(lxpath)}
    out = []
    for c in Container.all(lxpath):
        try:
            entries = c.config.forward
        except ConfigError:
            continue
        for e in entries:
            a, hp = split_listen(e.listen)
            out.append((c.name, e, (c.name, e.proto, a, hp) in live))
    return out


def config_add(c: Container, proto: str, listen: str, port: int,
               running: dict[str, Any] | None) -> Forward | None:
    """Add a [[forward]] to c's config (comments kept) and, when running (its network
    record) is given, publish it now. Refused when another container's config or a live
    forward holds the port. Returns the live forward, if published."""
    addr, hp = split_listen(listen)
    if addr not in WILD and not _is_local(addr):
        raise NetworkError(f"listen address {addr} is not an address of this host",
                           "ip addr shows them; a bare port listens on every one")
    for name, e, _live in configured(c.lxpath):
        a, p = split_listen(e.listen)
        if e.proto == proto and p == hp and overlaps(a, addr):
            if name == c.name:
                raise NetworkError(f"{c.name} already forwards {proto} {e.listen} (to port "
                                   f"{e.port or p})", f"remove it first: lxpy-net forward rm "
                                   f"{c.name} {proto} {e.listen}")
            raise NetworkError(f"host port {proto} {listen} is already forwarded to container "
                               f"{name!r} (its config has {proto} {e.listen})",
                               "pick another host port or listen address")
    entry = {"proto": proto, "listen": int(listen) if str(listen).isdigit() else listen,
             "port": port}
    fw = None
    if running:
        if 4 in families(addr):
            _reserve_lease(c, running)
        fw = resolve([Entry(proto, str(listen), port)], running.get("ifaces", []))[0]
        _check(fw, c.name, records.lxhash(c.lxpath))
    edit.add_entry(c.config_path, "forward", entry)
    if fw and running:
        try:
            add(c.name, c.lxpath, fw, int(running["pid"]), int(running["netns"]))
        except BaseException:
            edit.remove_entries(c.config_path, "forward",
                                lambda t: _same(t, proto, addr, hp))
            raise
    return fw


def _reserve_lease(c: Container, running: dict[str, Any]) -> None:
    """A running container that has only a dynamic DHCP lease: its current address becomes
    its reserved lease (net.N.ipv4 with dhcp on), so a forward to it survives restarts.
    The running record is updated in place for resolve()."""
    ifaces = running.get("ifaces", [])
    if any(i.get("ipv4") or i.get("reserve4") for i in ifaces):
        return
    for i in ifaces:
        if not i.get("managed") or not i.get("hwaddr"):
            continue
        ip = next((x["ip"] for x in dnsmasq.leases(i["link"])
                   if x["mac"].lower() == i["hwaddr"].lower() and ":" not in x["ip"]), None)
        index = next((n for n, e in enumerate(c.config.net) if e.name == i["name"]), None)
        if ip is None or index is None:
            continue
        prefix = ipaddress.ip_network(paths.system_config().subnet, strict=False).prefixlen
        edit.set_keys(c.config_path, {f"net.{index}.ipv4": f"{ip}/{prefix}"})
        i["reserve4"] = [f"{ip}/{prefix}"]
        log.warning("%s's DHCP lease %s is now reserved for it (net.%d.ipv4), so the "
                    "forward survives restarts", c.name, ip, index)
        return


def _is_local(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if ip.is_loopback:
        return True
    return any(ipaddress.ip_interface(a).ip == ip for lk in rtnl.links().values()
               for a in lk.ipv4 + lk.ipv6)


def config_remove(c: Container, proto: str, listen: str) -> int:
    """Remove c's [[forward]] of proto and listen (and its live forward); how many went."""
    addr, hp = split_listen(listen)
    n = edit.remove_entries(c.config_path, "forward",
                            lambda t: _same(t, proto, addr, hp))
    _remove_one(c.name, c.lxpath, proto, addr, hp)
    return n


def running_record(c: Container) -> dict[str, Any] | None:
    """The network record of c if it runs (lxpy.net.records), else None."""
    rec = records.load(records.container_file(c.name, c.lxpath))
    return rec if rec and records.alive(rec) else None


def parse_spec(spec: str) -> tuple[str, int]:
    """The command line's [ADDR:]HOSTPORT[:PORT] ("8080:80", "192.0.2.1:8080:80",
    "[2001:db8::1]:8080:80", "8080") -> (listen, port; the host port when not given).
    ValueError says what is wrong."""
    from ..config.schema import FORWARD_SETTINGS  # reason: only the command line needs it
    kinds = {s.key: s for s in FORWARD_SETTINGS}
    if spec.startswith("["):
        addr, sep, rest = spec[1:].partition("]:")
        if not sep:
            raise ValueError(f"{spec!r}: write an IPv6 address as [ADDR]:HOSTPORT:PORT")
        addr = f"[{addr}]"
        fields = rest.split(":")
    else:
        fields = spec.split(":")
        addr = fields.pop(0) if len(fields) == 3 or (len(fields) == 2 and "." in fields[0]) \
            else ""
    if not 1 <= len(fields) <= 2:
        raise ValueError(f"{spec!r} is not [ADDR:]HOSTPORT[:PORT] (like 8080:80 or "
                         "127.0.0.1:8080:80)")
    listen = f"{addr}:{fields[0]}" if addr else fields[0]
    kinds["listen"].parse(listen)
    port = kinds["port"].parse(fields[-1])
    return listen, port

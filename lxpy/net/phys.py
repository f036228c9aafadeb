"""phys: a host device moved into the container, given back (with its own name) when
the container stops. If the netns dies first (monitor killed), the kernel returns
the device under a name like dev7: cleanup_stale() finds it by MAC and renames it."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack, suppress
from pathlib import Path

from ..errors import NetworkError
from . import pr, records
from .iface import HostView, IfacePlan, IfaceType


def state_dir() -> Path:
    return records.run_root() / "phys"


def _netns_alive(ino: int) -> bool:
    """Is some process still in the netns with this inode?"""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        with suppress(OSError):
            if os.stat(f"/proc/{p}/ns/net").st_ino == ino:
                return True
    return False


class Phys(IfaceType):
    def check(self, p: IfacePlan, hv: HostView) -> None:
        if not p.link:
            raise NetworkError(f"{p.key()}.link: which host device? set {p.key()}.link "
                               "(like enp3s0)")
        lk = hv.get(p.link)
        if lk is None:
            raise NetworkError(f"{p.key()}.link: host device {p.link!r} does not exist",
                               "ip link lists the devices")
        if lk.name == "lo" or lk.kind == "bridge":
            raise NetworkError(f"{p.key()}.link: {p.link!r} cannot be moved")
        if lk.master:
            m = hv.by_index(lk.master)
            raise NetworkError(f"{p.key()}.link: {p.link!r} is in use (a port of "
                               f"{m.name if m else 'another device'})")
        used = [a for a in lk.ipv4 + lk.ipv6 if not a.startswith("fe80:")]
        if used:
            raise NetworkError(f"{p.key()}.link: {p.link!r} is in use by the host "
                               f"(it has address {used[0]})",
                               "remove its addresses first if it is meant for the container")
        for _f, rec in records.load_all(state_dir()):
            if rec.get("name") == p.link and _netns_alive(int(rec.get("netns", 0))):
                raise NetworkError(f"{p.key()}.link: {p.link!r} is in use by container "
                                   f"{rec.get('container')!r}")
        p.extra["mac"] = lk.perm_mac or lk.mac

    def create(self, p: IfacePlan, pid: int, stack: ExitStack) -> None:
        # Hold the netns: the device stays in it until we give it back by name.
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        stack.callback(os.close, fd)
        ino = os.fstat(fd).st_ino
        with pr.host() as ipr:
            idx = pr.require_index(ipr, p.link)
            links = ipr.get_links(idx)
            mac = links[0].get_attr("IFLA_ADDRESS") if links else p.extra.get("mac", "")
            records.write_json(state_dir() / f"{p.link}.json", {
                "name": p.link, "mac": p.extra.get("mac") or mac, "address": mac,
                "mtu": links[0].get_attr("IFLA_MTU"), "netns": ino,
                "container": p.extra.get("container", ""), "index": idx})
            stack.callback(give_back, p.link, fd)
            ipr.link("set", index=idx, state="down")
            if p.mtu:
                ipr.link("set", index=idx, mtu=p.mtu)
            if p.hwaddr:
                ipr.link("set", index=idx, address=p.hwaddr)
            ipr.link("set", index=idx, net_ns_pid=pid)


def give_back(name: str, nsfd: int | None = None, pid: int | None = None,
              wait: float = 0.0) -> bool:
    """Bring the device recorded as `name` back into the host netns under its name.
    From the container's netns (held by nsfd, or of pid) if it is alive; else wait up to
    `wait` seconds for the kernel to return it when the netns dies."""
    f = state_dir() / f"{name}.json"
    rec = records.load(f)
    if not rec:
        return False
    where = (f"/proc/{os.getpid()}/fd/{nsfd}" if nsfd is not None
             else f"/proc/{pid}/ns/net" if pid else None)
    if where is not None:
        with suppress(NetworkError, OSError), pr.netns(where) as ns:
            for lk in ns.get_links():
                mac = lk.get_attr("IFLA_PERM_ADDRESS") or lk.get_attr("IFLA_ADDRESS")
                if lk["index"] == rec.get("index") or mac == rec.get("mac"):
                    ns.link("set", index=lk["index"], state="down")
                    ns.link("set", index=lk["index"], net_ns_pid=os.getpid())
                    break
    deadline = time.monotonic() + wait
    while not _restore_on_host(rec):
        if time.monotonic() >= deadline:
            return False      # cleanup_stale() finishes the job later
        time.sleep(0.05)
    records.forget(f)
    return True


def _restore_on_host(rec: dict) -> bool:
    with pr.host() as ipr:
        for lk in ipr.get_links():
            mac = lk.get_attr("IFLA_PERM_ADDRESS") or lk.get_attr("IFLA_ADDRESS")
            name = lk.get_attr("IFLA_IFNAME")
            if (lk["index"] == rec.get("index") and mac in (rec.get("mac"), rec.get("address"))
                    or mac == rec.get("mac")):
                if name != rec["name"]:
                    ipr.link("set", index=lk["index"], state="down")
                    ipr.link("set", index=lk["index"], ifname=rec["name"])
                if rec.get("address") and lk.get_attr("IFLA_ADDRESS") != rec["address"]:
                    ipr.link("set", index=lk["index"], address=rec["address"])
                if rec.get("mtu") and lk.get_attr("IFLA_MTU") != rec["mtu"]:
                    ipr.link("set", index=lk["index"], mtu=rec["mtu"])
                return True
    return False


def cleanup_stale() -> list[str]:
    """Give back devices whose container netns is gone. Returns their names."""
    done = []
    for f, rec in records.load_all(state_dir()):
        if _netns_alive(int(rec.get("netns", 0))):
            continue
        with suppress(Exception):
            _restore_on_host(rec)
        records.forget(f)
        done.append(rec.get("name", f.stem))
    return done

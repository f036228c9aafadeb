"""What lxpy-ls and lxpy-info report about a container: gathered here, printed by cli/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import cgroups, idmap
from .container import Container
from .net import rtnl
from .runtime.state import query


@dataclass
class Status:
    """A container's state, its init pid and what the monitor told."""

    state: str
    pid: int | None = None
    extra: dict[str, Any] | None = None


def state_of(c: Container) -> Status:
    info = query(c)
    return Status(getattr(info, "state", "STOPPED"), getattr(info, "pid", None),
                  getattr(info, "__dict__", None))


def running_neighbours(c: Container) -> list[tuple[str, Any]]:
    """(name, config) of the other running containers of c's lxpath: the addresses and
    MACs net.plan.prepare must not give c."""
    out = []
    for o in Container.all(c.lxpath):
        if o.name == c.name:
            continue
        try:
            if state_of(o).state in ("RUNNING", "FROZEN", "FREEZING", "STARTING"):
                out.append((o.name, o.config))
        except Exception:  # noqa: BLE001 - a broken neighbour must not block a start
            continue
    return out


def _only_loopback(pid: int) -> bool:
    """True when the netns of pid has no interface but lo (/proc/<pid>/net/dev, one read):
    then there is no address worth a netlink dump (a thread and a setns) to report."""
    try:
        with open(f"/proc/{pid}/net/dev", "rb") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return False  # let the dump decide (and report its own failure)
    return bool(lines) and all(ln.split(b":", 1)[0].strip() == b"lo" for ln in lines)


def addresses(pid: int | None, skip_loopback: bool = False) -> dict[str, dict[str, Any]]:
    """The interfaces of pid's netns (lxpy.net.rtnl.addresses). skip_loopback: the caller
    ignores lo, so a netns with nothing else gives {} without a netlink dump."""
    if not pid:
        return {}
    if skip_loopback and _only_loopback(pid):
        return {}
    try:
        return rtnl.addresses(pid)
    except (OSError, Exception):  # noqa: BLE001 - a racing stop must not break a listing
        return {}


def ips(addrs: dict[str, dict[str, Any]], family: str) -> list[str]:
    out = []
    for ifname, a in addrs.items():
        if ifname == "lo":
            continue
        out += [x.split("/")[0] for x in a.get(family, [])
                if not x.lower().startswith("fe80:")]   # link-local says nothing
    return out


def listing_row(c: Container, fancy: bool) -> dict[str, Any]:
    st = state_of(c)
    row: dict[str, Any] = {"name": c.name, "state": st.state}
    if fancy:
        cfg = c.config
        running = st.state in ("RUNNING", "FROZEN", "FREEZING")
        addrs = addresses(st.pid, skip_loopback=True) if running else {}
        row.update({
            "autostart": cfg.autostart.enabled,
            "groups": list(cfg.autostart.groups),
            "ipv4": ips(addrs, "ipv4"),
            "ipv6": ips(addrs, "ipv6"),
            "privileged": idmap.privileged(cfg),
            "pid": st.pid,
        })
    return row


def cgroup_stats(c: Container, st: Status) -> dict[str, Any]:
    if st.state not in ("RUNNING", "FROZEN", "FREEZING", "STOPPING") or not st.extra:
        return {}
    path = st.extra.get("cgroup")
    if not path:
        return {}
    try:
        return cgroups.driver().open(path).stats()
    except Exception:  # noqa: BLE001 - stats are best effort while the container runs
        return {}

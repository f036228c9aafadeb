"""The container's own /proc view, through Debian's lxcfs (proc.lxcfs).

lxcfs is a FUSE filesystem (`lxcfs /var/lib/lxcfs`, run by root, allow_other; the setting
proc.lxcfs_path says where) whose proc/meminfo, cpuinfo, stat, uptime, loadavg, diskstats,
swaps and sys/devices/system/cpu answer each reader with its own cgroup's memory and CPUs
and its own PID 1's start. As LXC's lxcfs mount hook does, the start plan binds them
(read-only) over the container's /proc and /sys files once those are mounted: binds() says
which.

A bind keeps the FUSE connection it was made on: when lxcfs stops or restarts, the
container keeps running, but its binds answer ENOTCONN until it is restarted. view() finds
that out from the container's own mount table (the FUSE device its binds are on, which
the kernel keeps while they exist) and the host's (is that device still lxcfs's live
mount?): two reads of mountinfo, no record needed.
"""

from __future__ import annotations

import os
import re

FSTYPE = "fuse.lxcfs"
CPU_DIR = "sys/devices/system/cpu"
REFRESH = "once lxcfs runs, restart the container (lxpy-stop, lxpy-start) to refresh it"

_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> dict[str, str]:
    """Every lxcfs mount of a mountinfo text: mount point -> its device ("0:83")."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if len(fields) > sep + 1 and fields[sep + 1] == FSTYPE:
            out[_unescape(fields[4])] = fields[2]
    return out


def _mounts(pid: int | str = "self") -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace") as f:
            return parse_mountinfo(f.read())
    except OSError:
        return {}


def live(path: str) -> bool:
    """lxcfs is mounted on path (its root, not a directory under it) and answers."""
    if os.path.realpath(path) not in _mounts():
        return False
    return _answers(path) is None


def _answers(path: str) -> OSError | None:
    """Ask lxcfs itself: statfs is never answered from the kernel's caches (a stat can be,
    for a moment after the daemon died). ENOTCONN: it died, its mount stayed."""
    try:
        os.statvfs(path)
    except OSError as e:
        return e
    return None


def binds(path: str) -> list[tuple[str, str]]:
    """(source on the host, target in the container) of each bind LXC's hook makes: every
    file of lxcfs's proc/, then sys/devices/system/cpu (the whole directory when lxcfs
    serves all of it, as 5.x does: it has a uevent; else each of its entries)."""
    out = [(os.path.join(path, "proc", n), f"/proc/{n}")
           for n in sorted(os.listdir(os.path.join(path, "proc")))]
    cpu = os.path.join(path, CPU_DIR)
    if os.path.exists(os.path.join(cpu, "uevent")):
        out.append((cpu, f"/{CPU_DIR}"))
    elif os.path.isdir(cpu):
        out += [(os.path.join(cpu, n), f"/{CPU_DIR}/{n}") for n in sorted(set(os.listdir(cpu)))]
    return out


def view(pid: int) -> dict | None:
    """The /proc view of a running container whose init is pid: None when it has no lxcfs
    binds; else {"lxcfs": where it is mounted on the host or None, "stale": bool, "why"}."""
    devs = set(_mounts(pid).values())
    if not devs:
        return None
    host = _mounts()
    where = next((p for p, d in host.items() if d in devs), None)
    if where is None:
        return {"lxcfs": None, "stale": True,
                "why": "lxcfs was stopped or restarted after the container started"}
    e = _answers(where)
    if e is not None:
        return {"lxcfs": where, "stale": True,
                "why": f"lxcfs at {where} does not answer ({os.strerror(e.errno or 0)})"}
    return {"lxcfs": where, "stale": False, "why": ""}

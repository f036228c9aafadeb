"""The host's kernel limits that many containers share, and what a degraded guest says about
them.

LIMITS is the one table: what packaging/sysctl.d/60-lxpy.conf sets (the values of Incus's
production-setup guide), and, for the limits that every container draws on, what the host
and each container need. lxpy-checkconfig compares the running kernel against it for the
containers defined; lxpy-info, for a guest whose systemd says "degraded", reads its failed
units' journal for a host limit's symptom (diagnose)."""

from __future__ import annotations

import os
import re
import select
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import LxpyError

SYSCTL_FILE = "/etc/sysctl.d/60-lxpy.conf"


@dataclass(frozen=True)
class Limit:
    key: str                    # the sysctl
    value: int                  # what lxpy's sysctl file sets
    base: int = 0               # what the host itself needs (with per_container)
    per_container: int = 0      # what each container defined adds; 0: not counted
    what: str = ""

    def need(self, containers: int) -> int:
        return self.base + self.per_container * containers


# Measured: a Debian bookworm guest (systemd, dbus, logind, a getty) holds 8 inotify instances
# and 25 watches once booted; all of them count against the host's root, the owner of every
# container's user namespace (a host's own systemd, udev and dbus hold a few dozen). Per
# container twice that, and room for the services an admin adds.
LIMITS: tuple[Limit, ...] = (
    Limit("fs.inotify.max_user_instances", 1048576, 32, 16, "inotify instances"),
    Limit("fs.inotify.max_user_watches", 1048576, 8192, 1024, "inotify watches"),
    Limit("fs.inotify.max_queued_events", 1048576, what="inotify queued events"),
    Limit("kernel.keys.maxkeys", 2000, what="keys per user"),
    Limit("kernel.keys.maxbytes", 2000000, what="key bytes per user"),
    Limit("vm.max_map_count", 262144, what="memory maps per process"),
    Limit("net.ipv4.neigh.default.gc_thresh3", 8192, 256, 2, "IPv4 neighbour entries"),
    Limit("net.ipv6.neigh.default.gc_thresh3", 8192, 256, 2, "IPv6 neighbour entries"),
    Limit("fs.aio-max-nr", 524288, what="asynchronous I/O events"),
    Limit("net.core.bpf_jit_limit", 1000000000, what="BPF JIT memory"),
)
BY_KEY = {lim.key: lim for lim in LIMITS}


def read(key: str) -> int | None:
    """The running kernel's value of a sysctl; None when it has none (or it is unreadable)."""
    try:
        return int(Path("/proc/sys", key.replace(".", "/")).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# -- a degraded guest ------------------------------------------------------------------------

# What a guest's journal says when a host limit stopped a unit: (pattern, limit). A .path
# unit watches with inotify, so its "Too many open files" is an inotify instance too.
SYMPTOMS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"inotify.*too many open files|^\S+\.path: .*too many open files", re.I),
     "fs.inotify.max_user_instances"),
    (re.compile(r"inotify.*no space left on device|^\S+\.path: .*no space left on device",
                re.I), "fs.inotify.max_user_watches"),
    (re.compile(r"key.*disk quota exceeded", re.I), "kernel.keys.maxkeys"),
)
_GREP = "inotify|too many open files|no space left on device|disk quota exceeded"

# Run by the guest's /bin/sh: its state, and only when degraded its failed units and their
# journal lines that look like a limit (journalctl -u has PID 1's words about the unit too).
PROBE = ("s=$(systemctl is-system-running 2>/dev/null); echo \"state $s\"; "
         "[ \"$s\" = degraded ] || exit 0; "
         "for u in $(systemctl --failed --plain --no-legend --no-pager 2>/dev/null | "
         "cut -d' ' -f1); do echo \"failed $u\"; "
         "journalctl -b -q --no-pager -o cat -u \"$u\" 2>/dev/null | "
         f"grep -iE '{_GREP}' | tail -n 2 | sed \"s|^|log $u |\"; done")


def parse_probe(text: str) -> dict:
    """PROBE's output -> {"state", "failed": [units], "host_limit": {...} or None}."""
    out: dict = {"state": None, "failed": [], "host_limit": None}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "state":
            out["state"] = rest.strip() or None
        elif kind == "failed" and rest:
            out["failed"].append(rest.strip())
        elif kind == "log" and out["host_limit"] is None:
            unit, _, msg = rest.partition(" ")
            for pattern, key in SYMPTOMS:
                if pattern.search(f"{unit}: {msg}") or pattern.search(msg):
                    out["host_limit"] = {"key": key, "value": read(key), "unit": unit,
                                         "message": msg.strip()}
                    break
    return out


def diagnose(container, timeout: float = 10.0) -> dict | None:
    """Ask a running systemd guest whether it is degraded and why: PROBE in the guest,
    through lxpy-attach's path, its output read here. None when it is not running, did not
    answer in time or could not run it."""
    from .runtime import attach  # the namespace machinery: only for a guest that is asked
    try:
        target = attach.find(container)
    except LxpyError:
        return None
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(w, 1)
            os.dup2(null, 2)
            code = attach.attach(target, attach.Options(["/bin/sh", "-c", PROBE], pty=False))
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while len(data) < 1 << 16:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, 9)
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    out = parse_probe(data.decode(errors="replace"))
    return out if out["state"] else None

"""Cgroups on every host: layout detection (v2, v1, hybrid) and the driver registry.

    from lxpy import cgroups
    cgroups.layout()                    # Layout(kind="hybrid", hierarchies=...)
    drv = cgroups.driver()
    cg = drv.create("web1")             # <cgroup_parent>/web1 on every hierarchy
    cg.apply_limits(cfg); cg.attach(pid); cg.stats(); cg.freeze(); cg.destroy()
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import CgroupError
from ..linux import mount as m
from .base import DELEGATED, LIMIT_KEYS, Cgroup, CgroupDriver, CgroupMount, Hierarchy, Write
from .v1 import V1Driver
from .v2 import V2Driver

__all__ = ["layout", "driver", "Layout", "Cgroup", "CgroupDriver", "CgroupMount", "Hierarchy",
           "Write", "LIMIT_KEYS", "DELEGATED", "DRIVERS", "mount_in_container"]

MOUNTINFO = Path("/proc/self/mountinfo")
PROC_CGROUPS = Path("/proc/cgroups")


@dataclass(frozen=True)
class Layout:
    # kind: "v2", "v1", "hybrid" or "none"; hierarchies: v1 ones first, then the unified
    # one; root: where the cgroup filesystems live
    kind: str
    hierarchies: tuple[Hierarchy, ...]
    root: Path = Path("/sys/fs/cgroup")

    @property
    def unified(self) -> Hierarchy | None:
        return next((h for h in self.hierarchies if h.version == 2), None)

    @property
    def v1(self) -> tuple[Hierarchy, ...]:
        return tuple(h for h in self.hierarchies if h.version == 1)

    def controllers(self) -> dict[str, Hierarchy]:
        """controller -> the hierarchy that holds it (v1 first: a controller is on one)."""
        out: dict[str, Hierarchy] = {}
        for h in self.hierarchies:
            for c in h.controllers:
                out.setdefault(c, h)
        return out

    def describe(self) -> str:
        return f"{self.kind}: " + "; ".join(
            f"{h.mount} (v{h.version}: {','.join(h.controllers) or '-'})" for h in self.hierarchies)


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text: str, v1_subsys: set[str],
                    read_controllers=None) -> Layout:
    """The cgroup hierarchies in a mountinfo text (pure; unit-tested)."""
    seen: set[str] = set()
    hs: list[Hierarchy] = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields = pre.split()
        fstype, _source, superopts = (post.split() + ["", "", ""])[:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mnt = Path(_unescape(fields[4]))
        if fstype == "cgroup":
            ctrls = tuple(o for o in superopts.split(",")
                          if o in v1_subsys or o.startswith("name="))
            key = ",".join(ctrls)
            if not ctrls or key in seen:
                continue
            seen.add(key)
            hs.append(Hierarchy(mnt, 1, ctrls, key))
        else:
            if "cgroup2" in seen:
                continue
            seen.add("cgroup2")
            ctrls = tuple(read_controllers(mnt)) if read_controllers else ()
            hs.append(Hierarchy(mnt, 2, ctrls, ""))
    v1 = [h for h in hs if h.version == 1]
    v2 = [h for h in hs if h.version == 2]
    real_v1 = [h for h in v1 if any(not c.startswith("name=") for c in h.controllers)]
    if real_v1 and v2:
        kind = "hybrid"
    elif real_v1 or v1:
        kind = "v1" if not v2 else "hybrid"
    elif v2:
        kind = "v2"
    else:
        kind = "none"
    if kind == "v2":
        hs = v2
    root = Path("/sys/fs/cgroup")
    if v2 and kind == "v2":
        root = v2[0].mount
    return Layout(kind, tuple(v1 + v2) if kind != "v2" else tuple(hs), root)


def _read_controllers(mnt: Path) -> list[str]:
    try:
        return (mnt / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def _v1_subsys() -> set[str]:
    out = set()
    try:
        for line in PROC_CGROUPS.read_text().splitlines()[1:]:
            parts = line.split()
            if parts:
                out.add(parts[0])
    except OSError:
        pass
    return out


@cache
def layout() -> Layout:
    """The cgroup layout of this host (as seen from our mount namespace). Cheap: one read
    of /proc/self/mountinfo."""
    try:
        text = MOUNTINFO.read_text()
    except OSError as e:
        raise CgroupError(f"{MOUNTINFO}: cannot read: {e.strerror}", "is /proc mounted?")
    return parse_mountinfo(text, _v1_subsys(), _read_controllers)


# the layout's kind -> its driver (hybrid: v1 controllers plus the unified hierarchy)
DRIVERS: dict[str, type[CgroupDriver]] = {"v2": V2Driver, "v1": V1Driver, "hybrid": V1Driver}


@cache
def driver() -> CgroupDriver:
    """The driver for this host's layout (hybrid is driven by the v1 driver, which also
    manages the cgroup2 unified hierarchy)."""
    lay = layout()
    if lay.kind == "none":
        raise CgroupError("no cgroup filesystem is mounted",
                          "mount cgroup2 at /sys/fs/cgroup (or the v1 hierarchies)")
    return DRIVERS[lay.kind](lay)


def mount_in_container(steps: list[CgroupMount], root: str = "/") -> None:
    """Carry out Cgroup.container_mounts() in the container's mount namespace, after its
    cgroup namespace was unshared (root: the new root before pivot_root, or "/")."""
    for s in steps:
        target = os.path.join(root, s.target.lstrip("/"))
        if s.fstype == "symlink":
            try:
                os.symlink(s.source, target)
            except FileExistsError:
                pass
            continue
        os.makedirs(target, exist_ok=True)
        if s.fstype == "remount":
            m.mount(None, target, None, s.flags, None)
        else:
            m.mount(s.source, target, s.fstype, s.flags, s.data or None)

"""The cgroup v2 driver: one unified hierarchy, controllers enabled down the path,
no processes in inner nodes, cgroup.freeze / cgroup.kill, BPF device programs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import CgroupError, KernelFeatureError
from ..linux import bpf
from ..linux.mount import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RELATIME
from . import devices
from .base import (CPU_PERIOD_US, Cgroup, CgroupDriver, CgroupMount, Hierarchy, Write, keyed,
                   make_dir, read_int, read_opt, v2_max, wanted, write_file)
from .v1 import enable_subtree

log = logging.getLogger("lxpy.cgroups")

NO_DEVICE_POLICY = "device policy not enforced on this host"


def plan_v2(values: dict[str, Any], live: bool = False) -> list[Write]:
    """limits.* values -> cgroup2 writes (pure; unit-tested)."""
    out: list[Write] = []
    want = wanted(values, live)
    mem = values.get("limits.memory")
    if want("limits.memory"):
        out.append(Write("memory", "memory.max", v2_max(mem), "limits.memory"))
    if want("limits.memory_high"):
        out.append(Write("memory", "memory.high", v2_max(values["limits.memory_high"]),
                         "limits.memory_high"))
    if want("limits.memory_swap"):
        swap = values["limits.memory_swap"]
        if swap is not None and mem is not None and swap < mem:
            raise CgroupError(f"limits.memory_swap ({swap}) is below limits.memory ({mem})",
                              "memory_swap counts memory plus swap: make it at least "
                              "limits.memory")
        if swap is not None and mem is None and not live:
            raise CgroupError("limits.memory_swap needs limits.memory",
                              "memory_swap is memory plus swap: set limits.memory too")
        if swap is None:
            val = "max"
        elif mem is None:   # live change of swap alone: memory.max is read at apply time
            val = f"@{swap}"
        else:
            val = str(swap - mem)
        out.append(Write("memory", "memory.swap.max", val, "limits.memory_swap"))
    if want("limits.cpus"):
        v = values["limits.cpus"]
        out.append(Write("cpu", "cpu.max", f"max {CPU_PERIOD_US}" if v is None else
                         f"{max(1000, int(v * CPU_PERIOD_US))} {CPU_PERIOD_US}", "limits.cpus"))
    if want("limits.cpu_weight"):
        v = values["limits.cpu_weight"]
        out.append(Write("cpu", "cpu.weight", str(100 if v is None else v), "limits.cpu_weight"))
    if want("limits.cpuset"):
        out.append(Write("cpuset", "cpuset.cpus", values["limits.cpuset"] or "",
                         "limits.cpuset"))
    if want("limits.cpuset_mems"):
        out.append(Write("cpuset", "cpuset.mems", values["limits.cpuset_mems"] or "",
                         "limits.cpuset_mems"))
    if want("limits.pids"):
        out.append(Write("pids", "pids.max", v2_max(values["limits.pids"]), "limits.pids"))
    if want("limits.io_weight"):
        v = values["limits.io_weight"]
        out.append(Write("io", "io.weight", f"default {100 if v is None else v}",
                         "limits.io_weight"))
    if want("limits.hugepages"):
        for size, limit in (values["limits.hugepages"] or {}).items():
            out.append(Write("hugetlb", f"hugetlb.{size}.max", v2_max(limit), "limits.hugepages"))
    return out


class V2Cgroup(Cgroup):
    def _dir(self) -> Path:
        return self.driver.primary().path(self.path)

    def run_plan(self, steps) -> None:
        fixed = []
        for w in steps:
            if w.file == "memory.swap.max" and w.value.startswith("@"):
                cur = read_int(self._dir() / "memory.max")
                total = int(w.value[1:])
                val = "max" if cur is None else str(max(0, total - cur))
                w = Write(w.controller, w.file, val, w.key, w.optional)
            fixed.append(w)
        super().run_plan(fixed)

    def freezer_state(self) -> str:
        d = self._dir()
        want = (read_opt(d / "cgroup.freeze") or "").strip()
        if not want:
            raise CgroupError(f"cgroup {self.path}: no cgroup.freeze",
                              "the kernel is older than 5.2, or the cgroup is gone")
        frozen = keyed(read_opt(d / "cgroup.events")).get("frozen", 0)
        if want == "1":
            return "FROZEN" if frozen else "FREEZING"
        return "THAWED"

    def _set_frozen(self, frozen: bool) -> None:
        write_file(self._dir() / "cgroup.freeze", "1" if frozen else "0")

    def kill(self, timeout: float = 10.0) -> None:
        f = self._dir() / "cgroup.kill"
        if f.exists():
            write_file(f, "1")
            if self.wait_empty(timeout):
                return
        super().kill(timeout)

    def _stats(self) -> dict[str, Any]:
        d = self._dir()
        events = keyed(read_opt(d / "memory.events"))
        cpu = keyed(read_opt(d / "cpu.stat"))
        io_r = io_w = None
        text = read_opt(d / "io.stat")
        if text is not None:
            io_r = io_w = 0
            for line in text.splitlines():
                for kv in line.split()[1:]:
                    k, _, v = kv.partition("=")
                    if k == "rbytes":
                        io_r += int(v)
                    elif k == "wbytes":
                        io_w += int(v)
        return {
            "cgroup_version": 2,
            "memory_current": read_int(d / "memory.current"),
            "memory_peak": read_int(d / "memory.peak"),
            "memory_limit": read_int(d / "memory.max"),
            "swap_current": read_int(d / "memory.swap.current"),
            "oom_kills": events.get("oom_kill") if events else None,
            "cpu_usage_ns": cpu["usage_usec"] * 1000 if "usage_usec" in cpu else None,
            "pids_current": read_int(d / "pids.current"),
            "pids_limit": read_int(d / "pids.max"),
            "io_read_bytes": io_r,
            "io_write_bytes": io_w,
        }

    def apply_devices(self, cfg: Any) -> bool:
        ok, why = self.driver.device_support()
        if not ok:
            log.warning("%s: %s", NO_DEVICE_POLICY, why)
            return False
        try:
            bpf.attach_device_program(self._dir(), devices.rules(cfg.get("devices.allow")))
        except (OSError, KernelFeatureError) as e:
            log.warning("%s: %s", NO_DEVICE_POLICY, e)
            return False
        return True

    def container_mounts(self) -> list[CgroupMount]:
        return container_mounts_v2()


def container_mounts_v2() -> list[CgroupMount]:
    """cgroup2 at /sys/fs/cgroup: inside the cgroup namespace its root is the container's
    cgroup, which systemd may populate (writable; its parents are not visible)."""
    return [CgroupMount("cgroup2", "/sys/fs/cgroup", "cgroup2",
                        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME, "")]


class V2Driver(CgroupDriver):
    version = 2
    cgroup_class = V2Cgroup

    def __init__(self, layout: Any):
        super().__init__(layout)
        self._h = layout.unified
        self._own: str | None = None

    def hierarchies(self) -> tuple[Hierarchy, ...]:
        return (self._h,)

    def primary(self) -> Hierarchy:
        return self._h

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        if controller in self._h.controllers or controller == "cgroup":
            return self._h
        return None

    def plan(self, values: dict[str, Any], live: bool = False) -> list[Write]:
        return plan_v2(values, live)

    def limit_files(self, key: str) -> list[str]:
        return {
            "limits.memory": ["memory.max"], "limits.memory_high": ["memory.high"],
            "limits.memory_swap": ["memory.swap.max"], "limits.cpus": ["cpu.max"],
            "limits.cpu_weight": ["cpu.weight"], "limits.cpuset": ["cpuset.cpus"],
            "limits.cpuset_mems": ["cpuset.mems"], "limits.pids": ["pids.max"],
            "limits.io_weight": ["io.weight"],
            "limits.hugepages": sorted(p.name for p in self._h.mount.glob("hugetlb.*.max")),
        }[key]

    def device_support(self) -> tuple[bool, str]:
        return bpf.device_programs_supported()

    def supported(self) -> dict[str, tuple[bool, str]]:
        c = set(self._h.controllers)

        def ctl(name: str, what: str) -> tuple[bool, str]:
            if name in c:
                return True, what
            return False, f"the {name} controller is not available in {self._h.mount}"
        swap = (self._h.mount / "memory.swap.max").exists() or any(
            self._h.mount.glob("*/memory.swap.max"))
        dev_ok, dev_why = self.device_support()
        return {
            "limits.memory": ctl("memory", "memory.max"),
            "limits.memory_high": ctl("memory", "memory.high"),
            "limits.memory_swap": ctl("memory", "memory.swap.max") if swap or "memory" not in c
            else (False, "no swap accounting (memory.swap.max missing)"),
            "limits.cpus": ctl("cpu", "cpu.max"),
            "limits.cpu_weight": ctl("cpu", "cpu.weight"),
            "limits.cpuset": ctl("cpuset", "cpuset.cpus"),
            "limits.cpuset_mems": ctl("cpuset", "cpuset.mems"),
            "limits.pids": ctl("pids", "pids.max"),
            "limits.io_weight": ctl("io", "io.weight"),
            "limits.hugepages": ctl("hugetlb", "hugetlb.<size>.max"),
            "freeze": (True, "cgroup.freeze"),
            "devices": (True, "BPF device program") if dev_ok
            else (False, f"{NO_DEVICE_POLICY}: {dev_why}"),
        }

    # -- placement --------------------------------------------------------
    def own_cgroup(self) -> str:
        if self._own is None:
            self._own = ""
            try:
                for line in Path("/proc/self/cgroup").read_text().splitlines():
                    if line.startswith("0::"):
                        self._own = line[3:].strip().strip("/")
            except OSError:
                pass
        return self._own

    def base(self) -> str:
        own = self.own_cgroup()
        return own if delegated(own, self._h.mount) else ""

    def prepare_parent(self, parent: str) -> None:
        if self.base():
            _evacuate(self._h.mount / self.base())
        cur = self._h.mount
        for p in [p for p in parent.split("/") if p]:
            enable_subtree(cur)
            cur = cur / p
            make_dir(cur)
        enable_subtree(cur)

    def make(self, cg: Cgroup) -> None:
        make_dir(self._h.path(cg.path), exist_ok=False)


def delegated(own: str, mount: Path) -> bool:
    """Are we in a systemd unit's cgroup with Delegate=yes? (a .service/.scope that
    systemd marked trusted.delegate / user.delegate, or whose cgroup.subtree_control we own)."""
    if not own or not (own.endswith(".service") or own.endswith(".scope")):
        return False
    d = mount / own
    for attr in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(d, attr) == b"1":
                return True
        except OSError:
            pass
    return False


def _evacuate(unit: Path) -> None:
    """Delegate=yes: processes of the unit move to <unit>/lxpy.supervisor so controllers can
    be enabled below the unit's cgroup (no processes in inner nodes)."""
    procs = (read_opt(unit / "cgroup.procs") or "").split()
    if not procs:
        return
    leaf = unit / "lxpy.supervisor"
    leaf.mkdir(exist_ok=True)
    for pid in procs:
        try:
            write_file(leaf / "cgroup.procs", pid)
        except CgroupError as e:
            log.debug("cannot move %s: %s", pid, e)

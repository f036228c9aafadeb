"""The cgroup v1 driver, which also drives hybrid hosts (v1 controllers plus a cgroup2
unified hierarchy, where some controllers such as hugetlb may live)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import CgroupError
from ..linux.mount import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME, MS_REMOUNT
from . import devices
from .base import (CPU_PERIOD_US, Cgroup, CgroupDriver, CgroupMount, Hierarchy, Write, keyed,
                   make_dir, read_int, read_opt, v2_max, wanted, write_file)

log = logging.getLogger("lxpy.cgroups")


def plan_v1(values: dict[str, Any], versions: dict[str, int], live: bool = False,
            has_memsw: bool = True, io_file: str | None = "blkio.weight") -> list[Write]:
    """limits.* values -> writes, per controller version (hybrid: a controller on the
    unified hierarchy gets its v2 file). None means "no limit" on a live change and
    "leave alone" when applying a config."""
    out: list[Write] = []
    want = wanted(values, live)
    mem = values.get("limits.memory")
    swap = values.get("limits.memory_swap")
    if want("limits.memory_swap") and swap is not None and not has_memsw:
        raise CgroupError("limits.memory_swap: this host has no swap accounting "
                          "(memory.memsw.* files are missing)",
                          "boot the kernel with swapaccount=1, or unset limits.memory_swap")
    mem_w = Write("memory", "memory.limit_in_bytes", str(-1 if mem is None else mem),
                  "limits.memory") if want("limits.memory") else None
    swap_w = Write("memory", "memory.memsw.limit_in_bytes", str(-1 if swap is None else swap),
                   "limits.memory_swap", optional=swap is None) \
        if want("limits.memory_swap") and has_memsw else None
    # memsw must stay >= limit (V1Cgroup.run_plan orders the two against current values)
    if mem_w and swap_w and swap is not None and mem is not None and swap < mem:
        raise CgroupError(f"limits.memory_swap ({swap}) is below limits.memory ({mem})",
                          "memory_swap counts memory plus swap: make it at least limits.memory")
    out += ([mem_w] if mem_w else []) + ([swap_w] if swap_w else [])
    if want("limits.memory_high"):
        v = values["limits.memory_high"]
        out.append(Write("memory", "memory.soft_limit_in_bytes", str(-1 if v is None else v),
                         "limits.memory_high"))
    if want("limits.cpus"):
        v = values["limits.cpus"]
        if versions.get("cpu") == 2:
            out.append(Write("cpu", "cpu.max", "max" if v is None else
                             f"{max(1000, int(v * CPU_PERIOD_US))} {CPU_PERIOD_US}", "limits.cpus"))
        else:
            out.append(Write("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US), "limits.cpus"))
            out.append(Write("cpu", "cpu.cfs_quota_us",
                             "-1" if v is None else str(max(1000, int(v * CPU_PERIOD_US))),
                             "limits.cpus"))
    if want("limits.cpu_weight"):
        v = values["limits.cpu_weight"]
        out.append(Write("cpu", "cpu.shares", str(1024 if v is None else max(2, v * 1024 // 100)),
                         "limits.cpu_weight"))
    if want("limits.cpuset") and values["limits.cpuset"] is not None:
        out.append(Write("cpuset", "cpuset.cpus", values["limits.cpuset"], "limits.cpuset"))
    if want("limits.cpuset_mems") and values["limits.cpuset_mems"] is not None:
        out.append(Write("cpuset", "cpuset.mems", values["limits.cpuset_mems"],
                         "limits.cpuset_mems"))
    if want("limits.pids"):
        v = values["limits.pids"]
        out.append(Write("pids", "pids.max", "max" if v is None else str(v), "limits.pids"))
    if want("limits.io_weight"):
        v = values["limits.io_weight"]
        if versions.get("io") == 2:
            out.append(Write("io", "io.weight", f"default {100 if v is None else v}",
                             "limits.io_weight"))
        else:
            out.append(Write("blkio", io_file or "blkio.weight",
                             str(500 if v is None else min(1000, max(10, v * 5))),
                             "limits.io_weight"))
    if want("limits.hugepages"):
        for size, limit in (values["limits.hugepages"] or {}).items():
            if versions.get("hugetlb") == 2:
                out.append(Write("hugetlb", f"hugetlb.{size}.max", v2_max(limit),
                                 "limits.hugepages"))
            else:
                out.append(Write("hugetlb", f"hugetlb.{size}.limit_in_bytes",
                                 str(-1 if limit is None else limit), "limits.hugepages"))
    return out


class V1Cgroup(Cgroup):
    def run_plan(self, steps) -> None:
        steps = list(steps)
        files = [w.file for w in steps]
        md = self.hierarchy_for("memory")
        if ("memory.limit_in_bytes" in files and "memory.memsw.limit_in_bytes" not in files
                and md and (md.path(self.path) / "memory.memsw.limit_in_bytes").exists()):
            # a limit change alone keeps the swap allowance (memsw - limit) as it was
            d = md.path(self.path)
            cur_sw = read_int(d / "memory.memsw.limit_in_bytes")
            cur_mem = read_int(d / "memory.limit_in_bytes")
            if cur_sw is not None and cur_mem is not None and cur_sw < (1 << 62):
                w = steps[files.index("memory.limit_in_bytes")]
                new = int(w.value)
                val = -1 if new < 0 else new + max(0, cur_sw - cur_mem)
                steps.append(Write("memory", "memory.memsw.limit_in_bytes", str(val),
                                   "limits.memory_swap"))
                files.append("memory.memsw.limit_in_bytes")
        if "memory.limit_in_bytes" in files and "memory.memsw.limit_in_bytes" in files:
            # memsw >= limit at every moment: when the new limit is above the current
            # memsw, raise memsw first; otherwise set the limit first.
            i, j = files.index("memory.limit_in_bytes"), files.index("memory.memsw.limit_in_bytes")
            cur = read_int(self.dir_for("memory") / "memory.memsw.limit_in_bytes")
            new = int(steps[i].value)
            if cur is not None and (new < 0 or new > cur):
                steps[i], steps[j] = steps[j], steps[i]
        super().run_plan(steps)

    def freezer_state(self) -> str:
        s = read_opt(self.dir_for("freezer") / "freezer.state")
        if s is None:
            raise CgroupError(f"cgroup {self.path}: no freezer.state", "is it running?")
        return s.strip()

    def _set_frozen(self, frozen: bool) -> None:
        write_file(self.dir_for("freezer") / "freezer.state", "FROZEN" if frozen else "THAWED")

    def _stats(self) -> dict[str, Any]:
        mem = self.hierarchy_for("memory")
        md = mem.path(self.path) if mem else None
        usage = read_int(md / "memory.usage_in_bytes") if md else None
        memsw = read_int(md / "memory.memsw.usage_in_bytes") if md else None
        limit = read_int(md / "memory.limit_in_bytes") if md else None
        oom = keyed(read_opt(md / "memory.oom_control")) if md else {}
        cpu_h = self.hierarchy_for("cpuacct")
        cpu_ns = read_int(cpu_h.path(self.path) / "cpuacct.usage") if cpu_h else None
        pids_h = self.hierarchy_for("pids")
        pd = pids_h.path(self.path) if pids_h else None
        io_r = io_w = None
        blk = self.hierarchy_for("blkio")
        if blk:
            text = read_opt(blk.path(self.path) / "blkio.throttle.io_service_bytes_recursive")
            if text is not None:
                io_r = io_w = 0
                for line in text.splitlines():
                    p = line.split()
                    if len(p) == 3 and p[1] == "Read":
                        io_r += int(p[2])
                    elif len(p) == 3 and p[1] == "Write":
                        io_w += int(p[2])
        return {
            "cgroup_version": 1,
            "memory_current": usage,
            "memory_peak": read_int(md / "memory.max_usage_in_bytes") if md else None,
            "memory_limit": None if limit is None or limit >= (1 << 62) else limit,
            "swap_current": (memsw - usage) if memsw is not None and usage is not None else None,
            "oom_kills": oom.get("oom_kill"),
            "cpu_usage_ns": cpu_ns,
            "pids_current": read_int(pd / "pids.current") if pd else None,
            "pids_limit": read_int(pd / "pids.max") if pd else None,
            "io_read_bytes": io_r,
            "io_write_bytes": io_w,
        }

    def apply_devices(self, cfg: Any) -> bool:
        h = self.hierarchy_for("devices")
        if h is None:
            log.warning("device policy not enforced on this host (no devices controller)")
            return False
        d = h.path(self.path)
        write_file(d / "devices.deny", "a")
        for rule in devices.rules(cfg.get("devices.allow")):
            write_file(d / "devices.allow", rule.v1())
        return True

    def container_mounts(self) -> list[CgroupMount]:
        return container_mounts_v1(self.driver.layout)


def container_mounts_v1(layout: Any) -> list[CgroupMount]:
    """tmpfs at /sys/fs/cgroup, every hierarchy mounted in it as on the host (inside a
    cgroup namespace each shows the container's cgroup as its root), the host's symlinks
    (cpu -> cpu,cpuacct), then the tmpfs made read-only."""
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME
    root = Path(layout.root)
    out = [CgroupMount("tmpfs", "/sys/fs/cgroup", "tmpfs", flags, "mode=755,size=64k")]
    for h in layout.hierarchies:
        try:
            rel = h.mount.relative_to(root)
        except ValueError:
            rel = Path("unified" if h.version == 2 else h.options.replace("name=", ""))
        target = f"/sys/fs/cgroup/{rel}"
        if h.version == 2:
            out.append(CgroupMount("cgroup2", target, "cgroup2", flags, ""))
        else:
            out.append(CgroupMount("cgroup", target, "cgroup", flags, h.options))
    # symlinks next to the mounts (cpu -> cpu,cpuacct), as the host has them
    try:
        for e in sorted(root.iterdir()):
            if e.is_symlink():
                out.append(CgroupMount(os.readlink(e), f"/sys/fs/cgroup/{e.name}", "symlink",
                                       0, ""))
    except OSError:
        pass
    out.append(CgroupMount("", "/sys/fs/cgroup", "remount",
                           MS_REMOUNT | MS_RDONLY | flags, "mode=755,size=64k"))
    return out


def hugepage_sizes() -> list[str]:
    """The huge page sizes of this kernel as cgroup files name them: 2MB, 1GB."""
    out = []
    try:
        for p in Path("/sys/kernel/mm/hugepages").iterdir():
            kb = int(p.name.removeprefix("hugepages-").removesuffix("kB"))
            out.append(f"{kb >> 20}GB" if kb >= 1 << 20 else f"{kb >> 10}MB" if kb >= 1024
                       else f"{kb}KB")
    except (OSError, ValueError):
        pass
    return sorted(out)


class V1Driver(CgroupDriver):
    version = 1
    cgroup_class = V1Cgroup

    def __init__(self, layout: Any):
        super().__init__(layout)
        self._ctl = layout.controllers()

    def primary(self) -> Hierarchy:
        for want in ("name=systemd", "pids", "memory", "freezer"):
            if want in self._ctl:
                return self._ctl[want]
        return self.layout.hierarchies[0]

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        return self._ctl.get(controller)

    def _has_memsw(self) -> bool:
        h = self._ctl.get("memory")
        return bool(h and (h.mount / "memory.memsw.limit_in_bytes").exists())

    def _io_file(self) -> str | None:
        h = self._ctl.get("blkio")
        if h is None:
            return None
        for f in ("blkio.weight", "blkio.bfq.weight"):
            if (h.mount / f).exists():
                return f
        return None

    def _versions(self) -> dict[str, int]:
        return {c: h.version for c, h in self._ctl.items()}

    def plan(self, values: dict[str, Any], live: bool = False) -> list[Write]:
        return plan_v1(values, self._versions(), live, self._has_memsw(), self._io_file())

    def limit_files(self, key: str) -> list[str]:
        v = self._versions()
        hfile = "max" if v.get("hugetlb") == 2 else "limit_in_bytes"
        return {
            "limits.memory": ["memory.limit_in_bytes"],
            "limits.memory_high": ["memory.soft_limit_in_bytes"],
            "limits.memory_swap": ["memory.memsw.limit_in_bytes"],
            "limits.cpus": ["cpu.max"] if v.get("cpu") == 2 else ["cpu.cfs_quota_us",
                                                                  "cpu.cfs_period_us"],
            "limits.cpu_weight": ["cpu.shares"],
            "limits.cpuset": ["cpuset.cpus"],
            "limits.cpuset_mems": ["cpuset.mems"],
            "limits.pids": ["pids.max"],
            "limits.io_weight": [self._io_file() or "blkio.weight"],
            "limits.hugepages": [f"hugetlb.{s}.{hfile}" for s in hugepage_sizes()],
        }[key]

    def supported(self) -> dict[str, tuple[bool, str]]:
        c = self._ctl

        def ctl(name: str, what: str) -> tuple[bool, str]:
            if name in c:
                return True, f"{what} (v{c[name].version} {name} controller)"
            return False, f"no {name} controller mounted"
        out = {
            "limits.memory": ctl("memory", "memory.limit_in_bytes"),
            "limits.memory_high": ctl("memory", "memory.soft_limit_in_bytes"),
            "limits.memory_swap": (True, "memory.memsw.limit_in_bytes") if self._has_memsw()
            else (False, "no swap accounting (boot with swapaccount=1)"),
            "limits.cpus": ctl("cpu", "cfs quota"),
            "limits.cpu_weight": ctl("cpu", "cpu.shares"),
            "limits.cpuset": ctl("cpuset", "cpuset.cpus"),
            "limits.cpuset_mems": ctl("cpuset", "cpuset.mems"),
            "limits.pids": ctl("pids", "pids.max"),
            "limits.io_weight": (True, self._io_file() or "") if self._io_file()
            else (False, "blkio has no weight file (no BFQ I/O scheduler)"
                  if "blkio" in c else "no blkio controller mounted"),
            "limits.hugepages": ctl("hugetlb", "hugetlb limits"),
            "freeze": ctl("freezer", "freezer.state"),
            "devices": ctl("devices", "devices controller allowlist"),
        }
        return out

    # -- placement --------------------------------------------------------
    def prepare_parent(self, parent: str) -> None:
        if not parent:
            return
        for h in self.hierarchies():
            self._mkdirs(h, parent)

    def _mkdirs(self, h: Hierarchy, rel: str, exist_ok: bool = True) -> None:
        parts = [p for p in rel.split("/") if p]
        cur = h.mount
        for i, p in enumerate(parts):
            if h.version == 2:
                enable_subtree(cur)
            nxt = cur / p
            last = i == len(parts) - 1
            made = make_dir(nxt, exist_ok or not last)
            if h.version == 1 and "cpuset" in h.controllers:
                self._cpuset_init(cur, nxt, made)
            cur = nxt

    @staticmethod
    def _cpuset_init(parent: Path, d: Path, made: bool) -> None:
        # cpuset.cpus/mems start empty in v1, and a task cannot join then (ENOSPC)
        for f in ("cpuset.cpus", "cpuset.mems"):
            cur = (read_opt(d / f) or "").strip()
            if not cur:
                write_file(d / f, (read_opt(parent / f) or "").strip() or "\n")

    def make(self, cg: Cgroup) -> None:
        made: list[Hierarchy] = []
        try:
            for h in cg.hierarchies:
                self._mkdirs(h, cg.path, exist_ok=False)
                made.append(h)
        except BaseException:
            for h in made:
                try:
                    os.rmdir(h.path(cg.path))
                except OSError:
                    pass
            raise


def enable_subtree(d: Path) -> None:
    """On a cgroup2 hierarchy, enable for d's children every controller d has (quietly
    skipping what the kernel refuses, e.g. in a cgroup that holds processes)."""
    avail = (read_opt(d / "cgroup.controllers") or "").split()
    enabled = set((read_opt(d / "cgroup.subtree_control") or "").split())
    want = [c for c in avail if c not in enabled]
    if want:
        try:
            write_file(d / "cgroup.subtree_control", " ".join(f"+{c}" for c in want))
        except CgroupError:
            # one at a time, so one refusal does not block the rest
            for c in want:
                try:
                    write_file(d / "cgroup.subtree_control", f"+{c}")
                except CgroupError as e:
                    log.debug("cannot enable %s in %s: %s", c, d, e)


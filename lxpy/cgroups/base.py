"""The cgroup interface shared by the v1 (and hybrid) and v2 drivers.

A `Hierarchy` is one mounted cgroup filesystem (a v1 controller hierarchy, the v1
name=systemd one, or the cgroup2 unified one). A `Cgroup` is one relative path that exists
on every hierarchy the driver uses. Limits are planned as data (`Write` steps) from the one
`limits.*` vocabulary, then written with os.write so the kernel's refusal is never lost.
"""

from __future__ import annotations

import difflib
import errno
import logging
import os
import time
from collections import namedtuple
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.schema import BY_KEY
from ..errors import CgroupError
from ..paths import system_config

log = logging.getLogger("lxpy.cgroups")

# The limits vocabulary (lxpy/config/schema.py holds types and help).
LIMIT_KEYS = ("limits.memory", "limits.memory_high", "limits.memory_swap", "limits.cpus",
              "limits.cpu_weight", "limits.cpuset", "limits.cpuset_mems", "limits.pids",
              "limits.io_weight", "limits.hugepages")

# weights are advice: where the kernel lacks them, warn and go on instead of failing a start
SOFT_KEYS = ("limits.io_weight",)
CPU_PERIOD_US = 100_000
FREEZE_TIMEOUT = 30.0

# cgroup v1 file names -> their cgroup2 counterparts (hints on the other version's names)
V1_TO_V2 = {
    "memory.limit_in_bytes": "memory.max", "memory.soft_limit_in_bytes": "memory.high",
    "memory.usage_in_bytes": "memory.current", "memory.memsw.limit_in_bytes": "memory.swap.max",
    "memory.max_usage_in_bytes": "memory.peak", "memory.oom_control": "memory.events",
    "cpu.cfs_quota_us": "cpu.max", "cpu.cfs_period_us": "cpu.max", "cpu.shares": "cpu.weight",
    "cpuacct.usage": "cpu.stat", "blkio.weight": "io.weight", "freezer.state": "cgroup.freeze",
    "tasks": "cgroup.procs",
}


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    mount: Path                       # /sys/fs/cgroup/memory, /sys/fs/cgroup (v2) ...
    version: int                      # 1 or 2
    controllers: tuple[str, ...]      # ("memory",), ("name=systemd",), v2: enabled at root
    options: str = ""                 # v1 mount option naming it: "cpu,cpuacct" (or "")

    def path(self, rel: str) -> Path:
        return self.mount / rel.strip("/") if rel.strip("/") else self.mount


@dataclass(frozen=True)
class Write:
    """One planned write of a limit: which controller's file, what value, for which key."""

    controller: str
    file: str
    value: str
    key: str
    optional: bool = False            # skip quietly when the file is absent

    def describe(self) -> str:
        return f"{self.file} = {self.value}  ({self.key})"


class CgroupMount(namedtuple("CgroupMount", "source target fstype flags data")):
    """One step of the cgroup filesystem set-up inside a container, as data.

    fstype "symlink": source is the link text, target the link. fstype "remount": target
    is remounted with flags. Otherwise a mount(source, target, fstype, flags, data).
    Targets are absolute paths inside the container ("/sys/fs/cgroup/memory")."""

    __slots__ = ()


# ---------------------------------------------------------------------------
# File access: every write through os.write, every error a CgroupError.


def check_file_name(name: str) -> str:
    if (not name or "/" in name or ".." in name or name.startswith(".") or "\0" in name
            or "." not in name):
        raise CgroupError(f"{name!r} is not a cgroup file name",
                          "give a file like memory.max or pids.max, or a limits.* key")
    return name


def write_file(path: Path, value: str | int) -> None:
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"{path}: cannot open to write {str(value)!r}: {e.strerror}",
                          _hint(e.errno, path)) from None
    try:
        n = os.write(fd, data)
        if n != len(data):
            raise CgroupError(f"{path}: short write of {str(value)!r}")
    except OSError as e:
        raise CgroupError(f"{path}: cannot write {str(value)!r}: {e.strerror}",
                          _hint(e.errno, path)) from None
    finally:
        os.close(fd)


def _hint(err: int | None, path: Path) -> str | None:
    name = path.name
    if err == errno.EINVAL:
        return "the kernel refused the value: check its unit and range"
    if err == errno.ENOSPC and name == "cgroup.procs":
        return "set cpuset.cpus and cpuset.mems before a task joins"
    if err == errno.EBUSY and name == "cgroup.subtree_control":
        return "a cgroup with processes cannot enable controllers for its children"
    if err == errno.EBUSY and name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
        return "memory in use is above the new limit"
    if err == errno.ENOENT:
        return "this kernel does not have that file"
    if err == errno.EOPNOTSUPP:
        return "the controller does not support this on this kernel"
    return None


def read_file(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as e:
        raise CgroupError(f"{path}: cannot read: {e.strerror}", _hint(e.errno, path)) from None


def read_opt(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def read_int(path: Path) -> int | None:
    s = read_opt(path)
    if s is None:
        return None
    s = s.strip()
    if s == "max":
        return None
    try:
        return int(s)
    except ValueError:
        return None


def keyed(text: str | None) -> dict[str, int]:
    """'oom_kill 3\\nlow 0' -> {'oom_kill': 3, 'low': 0}."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def rmdir_tree(top: Path, timeout: float = 10.0) -> None:
    """rmdir a cgroup and its children depth-first; tolerant of already-gone ones."""
    if not top.exists():
        return
    dirs = [Path(d) for d, _, _ in os.walk(top, topdown=False)]
    for d in dirs:
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                # EBUSY while exiting tasks are still being torn down
                if e.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise CgroupError(f"{d}: cannot remove cgroup: {e.strerror}",
                                  "processes are still in it: stop the container first"
                                  if e.errno == errno.EBUSY else None) from None


def make_dir(d: Path, exist_ok: bool = True) -> bool:
    """mkdir a cgroup (0755): True when made, False when it was there already (exist_ok)."""
    try:
        os.mkdir(d, 0o755)
        return True
    except FileExistsError:
        if not exist_ok:
            raise
        return False
    except FileNotFoundError:
        raise               # its parent went (Driver._create_unique makes it again)
    except OSError as e:
        raise CgroupError(f"{d}: cannot create cgroup: {e.strerror}") from None


def v2_max(n: int | None) -> str:
    """A cgroup2 limit file's value: "max" for no limit."""
    return "max" if n is None else str(n)


def wanted(values: dict[str, Any], live: bool) -> Callable[[str], bool]:
    """Which limits.* keys a plan writes: set ones; None ones too on a live change."""
    return lambda key: key in values and (values[key] is not None or live)


def subtree_pids(top: Path) -> list[int]:
    out: set[int] = set()
    for d, _, _ in os.walk(top):
        s = read_opt(Path(d) / "cgroup.procs")
        if s:
            out.update(int(x) for x in s.split())
    return sorted(out)


# What a delegated cgroup's owner may write, by cgroup version, beside the directory itself
# (systemd's cg_set_access list; v1 is its "legacy" one: notify_on_release stays root's).
DELEGATED = {
    1: ("cgroup.procs", "tasks", "cgroup.clone_children"),
    2: ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads", "memory.oom.group",
        "memory.reclaim"),
}


# ---------------------------------------------------------------------------
# The interface.


@dataclass(repr=False)
class Cgroup:
    """A container's (or monitor's) cgroup: one relative path on every hierarchy."""

    driver: CgroupDriver
    path: str                                        # "lxpy/web1"
    hierarchies: tuple[Hierarchy, ...] = ()

    def __post_init__(self) -> None:
        self.path = self.path.strip("/")
        if not self.hierarchies:
            self.hierarchies = self.driver.hierarchies()

    def __repr__(self) -> str:
        return f"<Cgroup {self.path} ({self.driver.name})>"

    # -- where files live -------------------------------------------------
    def dirs(self) -> list[Path]:
        return [h.path(self.path) for h in self.hierarchies]

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        return self.driver.hierarchy_for(controller)

    def dir_for(self, controller: str) -> Path:
        h = self.hierarchy_for(controller)
        if h is None:
            raise CgroupError(f"no {controller} controller is available on this host",
                              "see lxpy-checkconfig")
        return h.path(self.path)

    def file_path(self, name: str) -> Path:
        check_file_name(name)
        controller = name.split(".", 1)[0]
        if controller in ("cgroup", "tasks", "notify_on_release"):
            d = self.driver.primary().path(self.path)
        else:
            d = self.dir_for(controller)
        return d / name

    def exists(self) -> bool:
        return self.driver.primary().path(self.path).is_dir()

    # -- raw access -------------------------------------------------------
    def get(self, name: str) -> str:
        p = self.file_path(name)
        if not p.exists():
            raise CgroupError(f"{name}: no such file in cgroup {self.path}"
                              f" ({p.parent})", self.driver.name_hint(name))
        return read_file(p)

    def set(self, name: str, value: str | int) -> None:
        p = self.file_path(name)
        if not p.exists():
            raise CgroupError(f"{name}: no such file in cgroup {self.path} ({p.parent})",
                              self.driver.name_hint(name))
        write_file(p, value)

    # -- limits -----------------------------------------------------------
    def apply_limits(self, cfg: Any) -> list[Write]:
        """Write every limits.* the config sets (and limits.raw.v1/v2 of this version).
        Call before any task joins. Returns what was written."""
        values = {k: cfg.get(k) for k in LIMIT_KEYS}
        raw = cfg.get(f"limits.raw.v{self.driver.version}") or {}
        steps = self.driver.plan(values) + [
            Write(n.split(".", 1)[0], n, str(v), f"limits.raw.v{self.driver.version}")
            for n, v in raw.items()]
        self.run_plan(steps)
        return steps

    def set_limit(self, key: str, value: Any) -> list[Write]:
        """A live change in the limits vocabulary: set_limit("limits.memory", "2G")."""
        if key not in LIMIT_KEYS:
            near = difflib.get_close_matches(key, LIMIT_KEYS, 1)
            raise CgroupError(f"{key!r} is not a limit" +
                              (f" (did you mean {near[0]}?)" if near else ""),
                              "limits: " + ", ".join(LIMIT_KEYS))
        setting = BY_KEY[key]
        if isinstance(value, str) and value.strip().lower() in ("", "none", "max", "unset"):
            parsed = None
        else:
            try:
                parsed = setting.parse(value)
            except ValueError as e:
                raise CgroupError(f"{key}: {e}") from None
        steps = self.driver.plan({key: parsed}, live=True)
        self.run_plan(steps)
        return steps

    def get_limit(self, key: str) -> str:
        if key not in LIMIT_KEYS:
            raise CgroupError(f"{key!r} is not a limit", "limits: " + ", ".join(LIMIT_KEYS))
        files = self.driver.limit_files(key)
        if key == "limits.cpus":
            cpus = self._cpus(files)
            if cpus is not None:
                return cpus
        out = []
        for f in files:
            p = self.file_path(f)
            if p.exists():
                v = read_file(p).strip()
                if v.isdigit() and int(v) >= 1 << 62:      # v1's "unlimited"
                    v = "max"
                out.append(v if len(files) == 1 else f"{f}: {v}")
        if not out:
            raise CgroupError(f"{key}: not available on this host",
                              self.driver.supported().get(key, (False, ""))[1] or None)
        return "\n".join(out)

    def _cpus(self, files: list[str]) -> str | None:
        """limits.cpus as the config writes it (0.5, 2, max) from cpu.max or v1's
        cfs_quota_us/cfs_period_us; None if the files are not there."""
        try:
            words = " ".join(read_file(self.file_path(f)).strip() for f in files).split()
        except (OSError, CgroupError):
            return None
        if len(words) != 2:
            return None
        quota, period = words
        if quota in ("max", "-1"):
            return "max"
        try:
            n = int(quota) / int(period)
        except (ValueError, ZeroDivisionError):
            return None
        return f"{n:.3f}".rstrip("0").rstrip(".")

    def run_plan(self, steps: Iterable[Write]) -> None:
        for w in steps:
            h = self.hierarchy_for(w.controller)
            p = h.path(self.path) / w.file if h is not None else None
            if w.key in SOFT_KEYS and (p is None or not p.exists()):
                log.warning("%s is not enforced on this host: %s", w.key,
                            self.driver.supported().get(w.key, (False, "unsupported"))[1])
                continue
            if h is None or p is None:
                if w.optional:
                    continue
                raise CgroupError(f"{w.key}: no {w.controller} controller on this host",
                                  "unset it, or see lxpy-checkconfig")
            if not p.exists():
                if w.optional:
                    continue
                raise CgroupError(f"{w.key}: {p} does not exist on this host",
                                  self.driver.name_hint(w.file))
            log.debug("cgroup %s: %s", self.path, w.describe())
            write_file(p, w.value)

    # -- tasks ------------------------------------------------------------
    def attach(self, pid: int) -> None:
        for d in self.dirs():
            write_file(d / "cgroup.procs", pid)

    def pids(self) -> list[int]:
        return subtree_pids(self.driver.primary().path(self.path))

    def populated(self) -> bool:
        return any(subtree_pids(d) for d in self.dirs() if d.exists())

    def wait_empty(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pids():
                return True
            time.sleep(0.02)
        return not self.pids()

    # -- freezer (per driver) --------------------------------------------
    def _set_frozen(self, frozen: bool) -> None:
        raise NotImplementedError

    def freeze(self, wait: bool = True, timeout: float = FREEZE_TIMEOUT) -> str:
        self._set_frozen(True)
        if not wait:
            return self.freezer_state()
        st = self._wait_state("FROZEN", timeout)
        if st != "FROZEN":
            raise CgroupError(f"cgroup {self.path}: still {st} after {timeout:.0f}s",
                              "a task is stuck in the kernel; lxpy-unfreeze and retry")
        return st

    def thaw(self, wait: bool = True, timeout: float = FREEZE_TIMEOUT) -> str:
        self._set_frozen(False)
        return self._wait_state("THAWED", timeout) if wait else self.freezer_state()

    def freezer_state(self) -> str:
        raise NotImplementedError

    def frozen(self) -> bool:
        return self.freezer_state() == "FROZEN"

    def _wait_state(self, want: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            st = self.freezer_state()
            if st == want or time.monotonic() > deadline:
                return st
            time.sleep(0.01)

    # -- the rest ---------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        try:
            fstate = self.freezer_state()
        except CgroupError:
            fstate = None
        return {"cgroup": self.path, **self._stats(), "freezer_state": fstate,
                "pids": len(self.pids())}

    def _stats(self) -> dict[str, Any]:
        """The driver's own part of stats(): version, memory, cpu, pids and io counters."""
        raise NotImplementedError

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL every task: freeze so none can fork away, kill, thaw, wait for empty."""
        try:
            self.freeze(timeout=5)
        except CgroupError:
            pass
        for _ in range(5):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)    # SIGKILL (the signal module: ~3 ms of enums)
                except ProcessLookupError:
                    pass
            try:
                self.thaw(wait=False)
            except CgroupError:
                pass
            if self.wait_empty(timeout / 5):
                break
        try:
            self.thaw(wait=False)      # never leave an empty cgroup FROZEN (it may be reused)
        except CgroupError:
            pass
        if not self.wait_empty(0.1):
            raise CgroupError(f"cgroup {self.path}: tasks survived SIGKILL: {self.pids()}")

    def destroy(self) -> None:
        """Remove the cgroup and its children on every hierarchy (kill tasks first)."""
        if self.populated():
            self.kill()
        for d in self.dirs():
            rmdir_tree(d)

    def apply_devices(self, cfg: Any) -> bool:
        """Enforce the device allowlist. Returns False (and warns) where it cannot."""
        raise NotImplementedError

    def container_mounts(self) -> list[CgroupMount]:
        raise NotImplementedError

    def delegate(self, uid: int, gid: int) -> None:
        """Give this cgroup to uid:gid (an unprivileged container's root), as systemd's
        Delegate= does (cg_set_access): on every hierarchy the directory, so that it makes
        child cgroups, and DELEGATED[version], so that it moves its processes and enables
        controllers for its children. Its limit files stay root's: it cannot raise them."""
        for h in self.hierarchies:
            d = h.path(self.path)
            for p in (d, *(d / f for f in DELEGATED[h.version])):
                try:
                    os.chown(p, uid, gid)
                except FileNotFoundError:       # (a file this kernel does not have)
                    if p == d:
                        raise CgroupError(f"{d}: no such cgroup",
                                          "was it removed while the container started?")
                except OSError as e:
                    raise CgroupError(f"{p}: cannot delegate it to {uid}:{gid}: "
                                      f"{e.strerror}") from None


class CgroupDriver:
    """One cgroup version on this host: where hierarchies are and how limits map."""

    version = 0

    def __init__(self, layout: Any):
        self.layout = layout
        self.name = f"cgroup-{layout.kind}"          # cgroup-v2, cgroup-v1, cgroup-hybrid

    # -- hierarchies ------------------------------------------------------
    def hierarchies(self) -> tuple[Hierarchy, ...]:
        return tuple(self.layout.hierarchies)

    def primary(self) -> Hierarchy:
        raise NotImplementedError

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        raise NotImplementedError

    def name_hint(self, file: str) -> str | None:
        """A hint for a raw file name of the other cgroup version."""
        if self.version == 2:
            names = V1_TO_V2
        else:   # the first v1 name of each v2 one; cgroup.procs is a v1 name too
            names = {v2: v1 for v1, v2 in reversed(V1_TO_V2.items()) if v1 != "tasks"}
        if file in names:
            return f"this is cgroup v{self.version} here: use {names[file]}, or a limits.* key"
        return None

    # -- capability report ------------------------------------------------
    def supported(self) -> dict[str, tuple[bool, str]]:
        raise NotImplementedError

    # -- planning (pure) --------------------------------------------------
    def plan(self, values: dict[str, Any], live: bool = False) -> list[Write]:
        raise NotImplementedError

    def limit_files(self, key: str) -> list[str]:
        raise NotImplementedError

    # -- placement --------------------------------------------------------
    cgroup_class: type[Cgroup] = Cgroup

    def base(self) -> str:
        """Where containers go: "" (the hierarchy root), or our own cgroup under a systemd
        unit with Delegate=yes."""
        return ""

    def default_parent(self) -> str:
        return system_config().cgroup_parent

    def parent_path(self, parent: str | None) -> str:
        parent = (self.default_parent() if parent is None else parent).strip("/")
        if ".." in parent.split("/"):
            raise CgroupError(f"cgroup parent {parent!r} must not contain '..'")
        return "/".join(p for p in (self.base(), parent) if p)

    def open(self, path: str) -> Cgroup:
        cg = self.cgroup_class(self, path)
        if not cg.exists():
            raise CgroupError(f"cgroup {path} does not exist",
                              "is the container running?")
        return cg

    def create(self, name: str, parent: str | None = None) -> Cgroup:
        """The payload cgroup <parent>/<name> (or <name>-1 ... when one with live tasks
        exists; a stale empty one is removed and reused)."""
        return self._create_unique(self.parent_path(parent), name)

    def create_monitor(self, name: str, parent: str | None = None) -> Cgroup:
        return self._create_unique(self.parent_path(parent), f"lxpy.monitor.{name}")

    def _create_unique(self, parent: str, name: str) -> Cgroup:
        if not name or "/" in name or name in (".", ".."):
            raise CgroupError(f"{name!r} is not a cgroup name")
        self.prepare_parent(parent)
        for i in range(0, 1000):
            cand = name if i == 0 else f"{name}-{i}"
            rel = f"{parent}/{cand}" if parent else cand
            cg = self.cgroup_class(self, rel)
            if cg.exists() or any(d.exists() for d in cg.dirs()):
                if cg.populated():
                    continue
                log.info("removing stale cgroup %s", rel)
                try:
                    for d in cg.dirs():
                        rmdir_tree(d)
                except CgroupError:
                    continue
            try:
                self.make(cg)
            except FileExistsError:
                continue
            except FileNotFoundError:
                # the parent went meanwhile: a monitor removes it when its container was the
                # last one in it
                self.prepare_parent(parent)
                try:
                    self.make(cg)
                except FileExistsError:
                    continue
            return cg
        raise CgroupError(f"no free cgroup name for {name} under {parent}")

    def prepare_parent(self, parent: str) -> None:
        """Make the parent cgroup on every hierarchy (v2: controllers enabled down)."""
        raise NotImplementedError

    def make(self, cg: Cgroup) -> None:
        raise NotImplementedError

    def remove_parent(self, parent: str | None = None) -> None:
        """Remove the parent cgroup if nothing is left in it (tests; lxpy-destroy --all)."""
        rel = self.parent_path(parent)
        if not rel:
            return
        for h in self.hierarchies():
            d = h.path(rel)
            if d.exists() and not subtree_pids(d):
                rmdir_tree(d)

"""What this kernel and host support, as lxc-checkconfig tells it: each item yes/no + hint."""

from __future__ import annotations

import ctypes.util
import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import cgroups, hostlimits
from .container import Container
from .paths import system_config
from .storage import quota


@dataclass
class Check:
    section: str
    name: str
    ok: bool | None          # None: unknown / informational
    detail: str = ""
    hint: str = ""
    required: bool = True
    info: bool = False       # a fact to show, not a feature to check
    words: tuple[str, str] = ("enabled", "missing")     # what ok and not ok are called


def _kconfig() -> dict[str, str]:
    cands = [Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")]
    for p in cands:
        try:
            raw = gzip.open(p, "rt").read() if p.suffix == ".gz" else p.read_text()
        except OSError:
            continue
        out = {}
        for line in raw.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
        return out
    return {}


def _kc(kc: dict[str, str], key: str) -> bool | None:
    if not kc:
        return None
    return kc.get(key) in ("y", "m")


def _filesystems() -> set[str]:
    try:
        return {line.split()[-1] for line in open("/proc/filesystems") if line.strip()}
    except OSError:
        return set()


def host_limits(lxpath: Path | str | None = None) -> list[Check]:
    """The kernel limits all containers share (hostlimits.LIMITS), against the containers
    defined in lxpath: too low is a warning, with the sysctl that raises it."""
    n = len(Container.all(lxpath))
    out = []
    for lim in hostlimits.LIMITS:
        cur = hostlimits.read(lim.key)
        if not lim.per_container or cur is None:
            detail = "not in this kernel" if cur is None else f"{cur} ({lim.what})"
            out.append(Check("Host limits", lim.key, True, f"{detail}; lxpy's "
                             f"{hostlimits.SYSCTL_FILE} sets {lim.value}", info=True))
            continue
        need = lim.need(n)
        out.append(Check(
            "Host limits", lim.key, cur >= need,
            f"{cur}; {n} container{'' if n == 1 else 's'} defined need{'s' if n == 1 else ''} "
            f"about {need} {lim.what}",
            f"sysctl -w {lim.key}={max(need, lim.value)}; to keep it, install "
            f"{hostlimits.SYSCTL_FILE} (scripts/setup-host and the lxpy package do)",
            required=False, words=("ok", "too low")))
    return out


def checks(lxpath: Path | str | None = None) -> list[Check]:
    kc = _kconfig()
    out: list[Check] = []
    ns_files = {"mnt": "Mount", "pid": "PID", "uts": "UTS", "ipc": "IPC", "net": "Network",
                "cgroup": "Cgroup", "user": "User", "time": "Time"}
    for ns, label in ns_files.items():
        ok = os.path.exists(f"/proc/self/ns/{ns}")
        out.append(Check("Namespaces", f"{label} namespace", ok, required=ns not in ("time",),
                         hint="" if ok else f"enable CONFIG_{ns.upper()}_NS in the kernel"))
    try:
        maxu = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        maxu = -1
    out.append(Check("Namespaces", "User namespaces allowed", maxu > 0 if maxu >= 0 else None,
                     f"max_user_namespaces={maxu}" if maxu >= 0 else "",
                     "sysctl -w user.max_user_namespaces=15000", required=False))
    clone = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if clone.exists():
        v = clone.read_text().strip()
        out.append(Check("Namespaces", "Unprivileged user namespaces", v == "1",
                         f"unprivileged_userns_clone={v}",
                         "sysctl -w kernel.unprivileged_userns_clone=1", required=False))

    try:
        lay = cgroups.layout()
        out.append(Check("Cgroups", "Cgroup layout", True, lay.kind, info=True))
        for h in lay.hierarchies:
            out.append(Check("Cgroups", f"  {h.mount}", True,
                             f"v{h.version}: {','.join(h.controllers) or '(no controllers)'}",
                             info=True))
        try:
            sup = cgroups.driver().supported()
        except Exception:  # noqa: BLE001 - report what we can
            sup = {}
        for key, (ok, why) in sorted(sup.items()):
            out.append(Check("Cgroups", key, ok, why if ok else "", hint="" if ok else why,
                             required=False))
    except (ImportError, AttributeError):
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        out.append(Check("Cgroups", "Cgroup layout", True, "v2" if v2 else "v1 or hybrid",
                         info=True))
    for key, label in (("CONFIG_CGROUP_DEVICE", "Cgroup device (v1)"),
                       ("CONFIG_CGROUP_BPF", "Cgroup BPF (v2 device policy)"),
                       ("CONFIG_CGROUP_FREEZER", "Cgroup freezer (v1)"),
                       ("CONFIG_CPUSETS", "Cgroup cpuset"),
                       ("CONFIG_MEMCG", "Cgroup memory"),
                       ("CONFIG_CGROUP_PIDS", "Cgroup pids"),
                       ("CONFIG_CGROUP_SCHED", "Cgroup cpu")):
        out.append(Check("Cgroups", label, _kc(kc, key), hint=f"enable {key}"))

    fss = _filesystems()
    out.append(Check("Storage", "overlayfs", "overlay" in fss or _kc(kc, "CONFIG_OVERLAY_FS"),
                     hint="modprobe overlay", required=False))
    out.append(Check("Storage", "btrfs", "btrfs" in fss or _kc(kc, "CONFIG_BTRFS_FS"),
                     hint="modprobe btrfs; apt install btrfs-progs", required=False))
    rel = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2] if x.isdigit())
    out.append(Check("Storage", "Idmapped mounts", rel >= (5, 12) if rel else None,
                     f"kernel {os.uname().release}", "needs Linux 5.12 or newer", required=False))

    out += _disk_checks(kc, fss)

    for key, label, req in (("CONFIG_VETH", "veth", True), ("CONFIG_BRIDGE", "bridge", True),
                            ("CONFIG_MACVLAN", "macvlan", False),
                            ("CONFIG_NF_TABLES", "nftables (NAT, port forwards)", False)):
        out.append(Check("Network", label, _kc(kc, key), hint=f"enable {key}", required=req))

    seccomp = _kc(kc, "CONFIG_SECCOMP_FILTER")
    try:
        lib = ctypes.util.find_library("seccomp")
    except Exception:  # noqa: BLE001
        lib = None
    out.append(Check("Security", "Seccomp filters", seccomp, hint="enable CONFIG_SECCOMP_FILTER"))
    out.append(Check("Security", "libseccomp", lib is not None, lib or "",
                     "apt install libseccomp2", required=False))
    out.append(Check("Security", "Capabilities", os.path.exists("/proc/self/status")))
    out.append(Check("Misc", "pidfd_open", rel >= (5, 3) if rel else None,
                     hint="needs Linux 5.3 or newer"))
    out.append(Check("Misc", "openat2 (symlink-safe writes)", rel >= (5, 6) if rel else None,
                     hint="needs Linux 5.6 or newer"))
    return out + host_limits(lxpath)


def _disk_checks(kc: dict[str, str], fss: set[str]) -> list[Check]:
    """Which backends enforce limits.disk here: btrfs by qgroups (in a btrfs lxpath or an
    lxpy-storage pool), dir and overlay by project quotas on the lxpath's ext4 or xfs."""
    lx = system_config().lxpath
    btrfs = ("btrfs" in fss or _kc(kc, "CONFIG_BTRFS_FS")) and shutil.which("btrfs") is not None
    out = [Check("Storage", "limits.disk on btrfs (qgroups)", bool(btrfs),
                 "in a btrfs lxpath or pool (lxpy-storage create --driver btrfs)" if btrfs
                 else "", "modprobe btrfs; apt install btrfs-progs", required=False)]
    ext4 = _kc(kc, "CONFIG_QFMT_V2")
    ext4 = ext4 and _kc(kc, "CONFIG_QUOTA") if ext4 is not None else None
    out.append(Check("Storage", "Project quotas on ext4", ext4,
                     hint="needs CONFIG_QUOTA and CONFIG_QFMT_V2: use btrfs pools for "
                     "limits.disk", required=False))
    out.append(Check("Storage", "Project quotas on xfs (pools --driver xfs)",
                     _kc(kc, "CONFIG_XFS_QUOTA"),
                     hint="needs CONFIG_XFS_QUOTA: use btrfs pools for limits.disk",
                     required=False))
    ok, why = quota.enforceable("dir", lx)
    out.append(Check("Storage", f"limits.disk on dir and overlay in {lx}", ok, why,
                     quota.POOL_HINT, required=False))
    return out

"""What this kernel and host support, as lxc-checkconfig tells it: each item yes/no + hint."""

from __future__ import annotations

import ctypes.util
import gzip
import os
import shutil
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from . import cgroups, hostlimits, idmap, storage
from .container import Container
from .errors import LxpyError
from .linux import mount as m
from .linux import ns
from .linux.prctl import fs_ids
from .paths import default_lxpath, system_config
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


def _subids() -> Check:
    """root's subordinate ids: blocks for idmap = "auto" (the default), and how many are
    held."""
    name = "Subordinate ids for root (/etc/subuid, /etc/subgid)"
    try:
        free = len(idmap.HOST.slots()) - 1     # slot 0 is the "shared" block
        held = len(idmap.HOST.read())
    except LxpyError as e:
        return Check("Namespaces", name, False, e.message, e.hint or "")
    return Check("Namespaces", name, free > 0, f"{free} blocks of {idmap.BLOCK} ids for "
                 f"idmap = \"auto\", {held} held ({idmap.HOST.db})", idmap.RANGE_HINT)


PROBE_ID = 100000       # the probe's user namespace maps 0..65535 to 100000..


def _userns_holder() -> tuple[int, int]:
    """(pid, fd of its user namespace): a child waiting in a new user namespace whose ids
    0..65535 are PROBE_ID.. on the host (the caller kills and reaps it)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            ns.unshare(ns.CLONE_NEWUSER)
            os.write(w, b"x")
            os.close(w)
            os.pause()
        finally:
            os._exit(0)
    os.close(w)
    try:
        if os.read(r, 1) != b"x":
            raise OSError(1, "unshare(): a user namespace cannot be made here")
    finally:
        os.close(r)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(f"0 {PROBE_ID} 65536\n")
    return pid, os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)


def _probe_backend(backend, where: Path) -> str:
    """In a private mount namespace (a forked child): a tiny container of this backend in a
    temporary directory under where, its rootfs idmapped as an unprivileged start makes it
    (Backend.idmapped_tree), a file written through it by the container's root; "" when it
    lands on disk owned by 0, else what went wrong."""
    tmp = Path(tempfile.mkdtemp(prefix=".lxpy-idmap-probe-", dir=where))
    holder = -1
    try:
        ns.unshare(ns.CLONE_NEWNS)
        m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
        (tmp / "base").mkdir()
        (tmp / "c").mkdir()
        keys = backend.create_from(tmp / "base", tmp / "c")
        cfg = types.SimpleNamespace(rootfs=types.SimpleNamespace(
            **{k.split(".", 1)[1]: v for k, v in keys.items()}, origin=None))
        holder, userns = _userns_holder()
        tree = backend.idmapped_tree(tmp / "c", cfg, userns, (PROBE_ID, PROBE_ID), tmp)
        (tmp / "m").mkdir()
        m.move_mount(tree, tmp / "m")
        os.close(tree)
        with fs_ids(PROBE_ID, PROBE_ID):
            os.close(os.open(tmp / "m" / "probe", os.O_WRONLY | os.O_CREAT, 0o644))
        m.umount2(tmp / "m", m.MNT_DETACH)
        st = os.stat(backend.data_path(tmp / "c", cfg) / "probe")
        if (st.st_uid, st.st_gid) != (0, 0):
            return f"a file the container's root made is owned {st.st_uid}:{st.st_gid} on disk"
        backend.destroy(tmp / "c", cfg)
        return ""
    except LxpyError as e:
        return e.message.replace(f"{tmp}/c/rootfs", str(where)).replace(str(tmp), str(where))
    except OSError as e:
        return f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    finally:
        if holder > 0:
            os.kill(holder, 9)
            os.waitpid(holder, 0)
        for mp in m.mounts_under(tmp):
            m.umount2(mp, m.MNT_DETACH)
        shutil.rmtree(tmp, ignore_errors=True)


def _idmapped_rootfs(lxpath: Path) -> list[Check]:
    """Per backend: can an unprivileged container's rootfs be idmapped in lxpath? Probed for
    real (a few milliseconds each), in a forked child."""
    where = Path(lxpath)
    while not where.exists() and where != where.parent:
        where = where.parent
    out = []
    for name, backend in storage.BACKENDS.items():
        label = f"Idmapped rootfs ({name})"
        ok, why = backend.available(Path(lxpath))
        if not ok:
            out.append(Check("Storage", label, None, f"backend not usable in {lxpath}: {why}",
                             required=False))
            continue
        if os.geteuid() != 0:
            out.append(Check("Storage", label, None, "run as root to probe", required=False))
            continue
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.write(w, _probe_backend(backend, where).encode()[:4000] or b"ok")
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            answer = f.read().decode(errors="replace")
        os.waitpid(pid, 0)
        out.append(Check("Storage", label, answer == "ok", f"in {where}" if answer == "ok" else
                         answer or "the probe died", "unprivileged containers cannot use the "
                         f"{name} backend in {lxpath}", required=False))
    return out


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
    """lxpath: where the idmapped rootfs probes run and whose containers the host limits
    count (the default lxpath if None)."""
    kc = _kconfig()
    out: list[Check] = []
    ns_files = {"mnt": "Mount", "pid": "PID", "uts": "UTS", "ipc": "IPC", "net": "Network",
                "cgroup": "Cgroup", "user": "User", "time": "Time"}
    for nsname, label in ns_files.items():
        ok = os.path.exists(f"/proc/self/ns/{nsname}")
        out.append(Check("Namespaces", f"{label} namespace", ok, required=nsname != "time",
                         hint="" if ok else f"enable CONFIG_{nsname.upper()}_NS in the kernel"))
    try:
        maxu = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        maxu = -1
    # unprivileged containers (the default) need them; privileged ones (idmap = "none") not
    out.append(Check("Namespaces", "User namespaces allowed", maxu > 0 if maxu >= 0 else None,
                     f"max_user_namespaces={maxu}" if maxu >= 0 else "",
                     "sysctl -w user.max_user_namespaces=15000"))
    out.append(_subids())
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
    out += _idmapped_rootfs(Path(lxpath) if lxpath else default_lxpath())

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

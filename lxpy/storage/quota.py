"""limits.disk: how much a container may write, enforced by the filesystem under its data
(the backend's data_path: dir's rootfs, overlay's delta, btrfs's rootfs subvolume). One
enforcer per backend, in QUOTAS:

- btrfs: a qgroup limit on the container's subvolume (quotas are enabled on the filesystem
  the first time one is needed, and lxpy says so). The limit is on *exclusive* bytes: what
  only this container holds. A snapshot clone, or a container made from the cache by a
  subvolume snapshot, is charged for what it writes, not for the extents it shares with its
  origin (as overlay's delta is), so a 100M limit on a clone of a 300M tree means 100M of
  its own. The catch: when the origin goes, shared extents become exclusive and count.
  btrfs qgroups do not change statfs, so `df /` inside shows the whole filesystem.
- dir and overlay: a project quota on ext4 or xfs. The tree (dir) or upper (overlay) gets
  its own project id (its top directory's inode number) with the inherit flag, set on every
  file and directory (FS_IOC_FSSETXATTR), and quotactl sets that project's block limit. The
  filesystem must have project quotas on (ext4: mkfs -O quota,project, mount -o prjquota;
  xfs: mount -o prjquota); `df /` inside then shows the limit. A user namespace cannot
  change a project id; a privileged container's root can (chattr -p). On ext4, a task with
  CAP_SYS_RESOURCE writes past quotas: a privileged container must drop it (check() says
  so). xfs answers a full project with ENOSPC, ext4 with EDQUOT.

A limit that cannot be enforced is an error (at lxpy-config set and at start), never
ignored.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..linux.fsops import EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, fs_name, is_btrfs, \
    is_btrfs_subvolume, statfs_type
from ..linux.quota import FS_XFLAG_PROJINHERIT, PRJQUOTA, fsxattr_get, fsxattr_set_project, \
    open_dir, quotactl_fd_get, quotactl_fd_info, quotactl_fd_set_block_limit
from . import get

log = logging.getLogger("lxpy.storage")

POOL_HINT = ("put the container in a pool that enforces it: lxpy-storage create POOL --driver "
             "btrfs --size 50G, then lxpy-copy -n NAME -N NAME -p POOL_PATH -B btrfs")


def _existing(p: Path) -> Path:
    p = Path(os.path.abspath(p))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


class Enforcer:
    """One way of enforcing limits.disk on a backend's data path."""

    name = ""

    def available(self, path: Path) -> tuple[bool, str]:
        """(True, "") when the filesystem under path can enforce a limit, else (False, what
        is missing)."""
        raise NotImplementedError

    def target_ok(self, path: Path) -> tuple[bool, str]:
        """Can this data path itself carry a limit?"""
        return True, ""

    def bypass(self, path: Path, cfg: Any) -> str:
        """Why the container's root could write past the limit, or ""."""
        return ""

    def apply(self, path: Path, limit: int | None, companions: tuple[Path, ...] = ()) -> None:
        """Set path's limit in bytes (None: no limit); companions: directories whose files
        move into path and must count alike (overlay's work dir)."""
        raise NotImplementedError

    def state(self, path: Path) -> tuple[int, int | None]:
        """(bytes used, limit in bytes or None) as the filesystem counts them."""
        raise NotImplementedError


class BtrfsQgroup(Enforcer):
    name = "btrfs qgroup (exclusive)"

    def available(self, path: Path) -> tuple[bool, str]:
        p = _existing(path)
        try:
            if not is_btrfs(p):
                return False, f"{p} is on {fs_name(p)}, not btrfs"
        except OSError as e:
            return False, f"cannot inspect {p}: {e.strerror}"
        if not shutil.which("btrfs"):
            return False, "the btrfs command is missing (apt install btrfs-progs)"
        return True, ""

    def target_ok(self, path: Path) -> tuple[bool, str]:
        if not is_btrfs_subvolume(path):
            return False, f"{path} is not a btrfs subvolume (a qgroup limits subvolumes)"
        return True, ""

    @staticmethod
    def _btrfs(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["btrfs", *args], capture_output=True, text=True)

    def _show(self, path: Path, sync: bool = False) -> subprocess.CompletedProcess:
        """The qgroups over path; sync: after a commit, so that the numbers are current
        (a sync of the filesystem: lxpy-info only, never on the way to a start)."""
        return self._btrfs("qgroup", "show", "-ref", "--raw", *(["--sync"] if sync else []),
                           os.fspath(path))

    def _ensure_enabled(self, path: Path) -> None:
        if self._show(path).returncode == 0:
            return
        log.warning("enabling quotas on the btrfs filesystem of %s (limits.disk needs them; "
                    "they cost some write speed on that filesystem)", path)
        r = self._btrfs("quota", "enable", os.fspath(path))
        if r.returncode == 0:
            r = self._btrfs("quota", "rescan", "-w", os.fspath(path))
        if r.returncode != 0:
            raise StorageError(f"btrfs: cannot enable quotas for {path}: {r.stderr.strip()}")

    def apply(self, path: Path, limit: int | None, companions: tuple[Path, ...] = ()) -> None:
        if limit is None and self._show(path).returncode != 0:
            return                      # no quotas on this filesystem: no limit to remove
        self._ensure_enabled(path)
        r = self._btrfs("qgroup", "limit", "-e", "none" if limit is None else str(limit),
                        os.fspath(path))
        if r.returncode != 0:
            raise StorageError(f"btrfs: cannot set the qgroup limit of {path}: "
                               f"{r.stderr.strip()}")

    def state(self, path: Path) -> tuple[int, int | None]:
        r = self._show(path, sync=True)
        if r.returncode != 0:
            raise StorageError(f"btrfs: no qgroup for {path}: {r.stderr.strip()}",
                               "lxpy-config set NAME limits.disk SIZE sets one")
        for line in r.stdout.splitlines():
            f = line.split()
            if f and f[0].startswith("0/") and len(f) >= 5:
                return int(f[2]), None if f[4] == "none" else int(f[4])
        raise StorageError(f"btrfs: no qgroup for {path} in: {r.stdout.strip()}")


class ProjectQuota(Enforcer):
    name = "project quota"

    def available(self, path: Path) -> tuple[bool, str]:
        p = _existing(path)
        try:
            fs = statfs_type(p)
        except OSError as e:
            return False, f"cannot inspect {p}: {e.strerror}"
        if fs not in (EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC):
            return False, f"{p} is on {fs_name(p)}, which has no project quotas (ext4 or xfs do)"
        try:
            fd = open_dir(p)
        except OSError as e:
            return False, f"cannot open {p}: {e.strerror}"
        try:
            quotactl_fd_info(fd, PRJQUOTA, os.fspath(p))
        except OSError as e:
            return False, self._why(p, e)
        finally:
            os.close(fd)
        return True, ""

    @staticmethod
    def _why(p: Path, e: OSError) -> str:
        name = fs_name(p)
        if e.errno == errno.ENOSYS:
            return f"this kernel has no disk quotas (CONFIG_QUOTA) for the {name} of {p}"
        if e.errno == errno.ESRCH:
            how = "-O quota,project, mounted -o prjquota" if name == "ext4" else \
                "mounted -o prjquota"
            return f"the {name} of {p} has no project quotas on (it needs {how})"
        return f"project quotas unusable on the {name} of {p}: {e.strerror}"

    @staticmethod
    def project_id(path: Path) -> int:
        """The data path's own project id: its top directory's inode number (unique on its
        filesystem while the container exists), folded into 32 bits."""
        ino = os.stat(path).st_ino
        return ino if 0 < ino < 1 << 32 else ino % 0xFFFFFFFE + 1

    @staticmethod
    def _tag_tree(path: Path, projid: int) -> None:
        """Every directory and regular file under path gets projid; directories inherit it
        (what is made there later gets it too). Symlinks, devices, fifos and sockets hold
        no blocks: skipped. Opened relative to their directory with O_NOFOLLOW, so a running
        container swapping a directory for a symlink never redirects this outside."""
        top = open_dir(path)
        try:
            fsxattr_set_project(top, projid, inherit=True)
        finally:
            os.close(top)
        for _root, dirs, files, dfd in os.fwalk(path, follow_symlinks=False):
            for name, is_dir in [(d, True) for d in dirs] + [(f, False) for f in files]:
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                        continue
                    fd = os.open(name, flags, dir_fd=dfd)
                except FileNotFoundError:
                    continue            # removed meanwhile (a running container)
                try:
                    fsxattr_set_project(fd, projid, inherit=is_dir)
                finally:
                    os.close(fd)

    def bypass(self, path: Path, cfg: Any) -> str:
        """ext4's quotas (the kernel's generic quota code) let a task with CAP_SYS_RESOURCE
        in the host's user namespace write past a hard limit (xfs's do not): a privileged
        container's root, unless the capability is dropped."""
        if statfs_type(_existing(path)) != EXT4_SUPER_MAGIC or cfg.idmap.uid:
            return ""
        sec = cfg.security
        keeps = "sys_resource" in sec.cap_keep if sec.cap_keep else \
            "sys_resource" not in sec.cap_drop
        if not keeps:
            return ""
        return ("its root would hold CAP_SYS_RESOURCE, which writes past ext4 quotas: add "
                "sys_resource to security.cap_drop, or make it unprivileged (idmap)")

    def apply(self, path: Path, limit: int | None, companions: tuple[Path, ...] = ()) -> None:
        projid = self.project_id(path)
        fd = open_dir(path)
        try:
            xflags, have = fsxattr_get(fd)
            if limit is not None and (have != projid or not xflags & FS_XFLAG_PROJINHERIT):
                self._tag_tree(path, projid)
            for other in companions if limit is not None else ():
                self._tag_tree(other, projid)
            quotactl_fd_set_block_limit(fd, PRJQUOTA, projid, limit or 0, os.fspath(path))
        except OSError as e:
            raise StorageError(f"cannot set the project quota of {path}: {e.strerror}",
                               self._why(path, e)) from None
        finally:
            os.close(fd)

    def state(self, path: Path) -> tuple[int, int | None]:
        fd = open_dir(path)
        try:
            used, limit = quotactl_fd_get(fd, PRJQUOTA, self.project_id(path), os.fspath(path))
        except OSError as e:
            raise StorageError(f"cannot read the project quota of {path}: {e.strerror}") \
                from None
        finally:
            os.close(fd)
        return used, limit or None


# backend name -> how limits.disk is enforced on it
QUOTAS: dict[str, Enforcer] = {
    "btrfs": BtrfsQgroup(),
    "dir": ProjectQuota(),
    "overlay": ProjectQuota(),
}


# backend name -> directories of the container (relative to its dir) that must share its
# data path's project id: overlay's copy-up renames a file from work/ into the delta, and
# a rename into a directory of another project fails (EXDEV)
COMPANIONS: dict[str, tuple[str, ...]] = {"overlay": ("work",)}


def _data_path(cdir: Path, cfg: Any) -> tuple[Enforcer, Path]:
    backend = str(cfg.rootfs.backend or "dir")
    return QUOTAS[backend], get(backend).data_path(Path(cdir), cfg)


def enforceable(backend: str, lxpath: Path) -> tuple[bool, str]:
    """Can limits.disk be enforced for backend's containers in lxpath (lxpy-checkconfig)?"""
    return QUOTAS[backend].available(Path(lxpath))


def check(name: str, cdir: Path, cfg: Any) -> None:
    """Raise StorageError saying what is missing when limits.disk cannot be enforced for
    this container (with the config it would have)."""
    enf, path = _data_path(cdir, cfg)
    ok, why = enf.available(path)
    if ok and path.exists():
        ok, why = enf.target_ok(path)
    if ok:
        why = enf.bypass(path, cfg)
        ok = not why
    if not ok:
        raise StorageError(f"container {name!r}: limits.disk cannot be enforced: {why}",
                           POOL_HINT)


def apply(name: str, cdir: Path, cfg: Any) -> None:
    """Make the filesystem enforce cfg's limits.disk (None: lift the limit)."""
    limit = cfg.get("limits.disk")
    enf, path = _data_path(cdir, cfg)
    if limit is None:
        if enf.available(path)[0]:
            enf.apply(path, None)
        return
    check(name, cdir, cfg)
    companions = tuple(Path(cdir) / d for d in COMPANIONS.get(str(cfg.rootfs.backend), ()))
    enf.apply(path, int(limit), companions)


def state(cdir: Path, cfg: Any) -> dict[str, Any]:
    """{"used", "limit", "by"} as the filesystem enforces limits.disk for this container."""
    enf, path = _data_path(cdir, cfg)
    used, limit = enf.state(path)
    return {"used": used, "limit": limit, "by": enf.name}

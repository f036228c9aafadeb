"""The storage backend interface. A backend is one module in this package that defines a
Backend subclass, listed in lxpy.storage.BACKENDS."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from ..errors import KernelFeatureError, StorageError
from ..linux import mount as m
from ..linux.fsops import fs_name
from .tree import tree_usage

IDMAP_KERNELS = ("Linux >= 5.12 for ext4 and xfs, 5.15 for btrfs, 5.19 for overlay layers, "
                 "6.3 for tmpfs")


def rootfs_dir(cdir: Path, cfg: Any) -> Path:
    """cfg.rootfs.path resolved against the container directory cdir (which may be a temp
    name: relative paths follow the directory when it is renamed)."""
    p = Path(str(cfg.rootfs.path or "rootfs"))
    return p if p.is_absolute() else Path(cdir) / p


def require_rootfs(root: Path) -> Path:
    if not root.is_dir():
        raise StorageError(f"{root}: the container's rootfs is missing",
                           "the container directory is damaged; restore a snapshot or recreate")
    return root


def own_path(cdir: Path, p: Path) -> bool:
    """Is p inside the container directory cdir (after "..", and symlinks on the way)? Only
    such paths are the container's to remove: a rootfs.path elsewhere (absolute, or with
    "..") names the admin's tree, which destroy keeps."""
    cdir_abs, p_abs = os.path.abspath(cdir), os.path.abspath(p)
    if p_abs == cdir_abs or not p_abs.startswith(cdir_abs.rstrip("/") + "/"):
        return False
    parent = os.path.realpath(os.path.dirname(p_abs))     # p itself may be a symlink: kept
    real_cdir = os.path.realpath(cdir_abs)
    return parent == real_cdir or parent.startswith(real_cdir.rstrip("/") + "/")


def split_lowers(value: str, cdir: Path) -> list[Path]:
    """rootfs.lower: overlay lower dirs, topmost first, ':'-separated; relative entries are
    relative to the container directory."""
    out = []
    for part in str(value or "").split(":"):
        if part:
            p = Path(part)
            out.append(p if p.is_absolute() else Path(cdir) / p)
    return out


def join_lowers(paths: list[Path]) -> str:
    for p in paths:
        s = os.fspath(p)
        if ":" in s or "," in s or "\\" in s:
            raise StorageError(f"{s}: overlay cannot use a lower directory whose path has "
                               "':', ',' or '\\' in it", "move the lxpath or cache elsewhere")
    return ":".join(os.fspath(p) for p in paths)


def _fs_of(path: str | os.PathLike) -> str:
    try:
        return fs_name(path)
    except OSError:
        return "unknown"


def idmapped_clone(path: str | os.PathLike, userns_fd: int, *, recursive: bool = True,
                   readonly: bool = False) -> int:
    """A detached clone of the mount at path (with the mounts under it when recursive)
    whose ids are mapped through the user namespace userns_fd: an idmapped mount, owned as
    on disk for the namespace's ids (O_CLOEXEC). Needs the host's user namespace. A
    filesystem that cannot be idmapped is a KernelFeatureError naming it: nothing falls
    back to a privileged mount or to chowning the tree."""
    rec = m.AT_RECURSIVE if recursive else 0
    try:
        fd = m.open_tree(path, m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC | rec)
    except OSError as e:
        raise StorageError(f"cannot clone the mount of {path}: {e.strerror}",
                           "check that it exists") from None
    try:
        m.mount_setattr(fd, m.MOUNT_ATTR_IDMAP | (m.MOUNT_ATTR_RDONLY if readonly else 0),
                        userns_fd=userns_fd, flags=m.AT_EMPTY_PATH | rec)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EINVAL, errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        what = f"the filesystem of {path} ({_fs_of(path)})"
        if recursive:
            below = [p for p in m.mounts_under(path) if p != os.path.realpath(path)]
            if below:
                what += " or of a mount under it (" + ", ".join(
                    f"{p}: {_fs_of(p)}" for p in below[:3]) + ")"
        raise KernelFeatureError(
            f"{what} does not support idmapped mounts, which an unprivileged container "
            f"needs ({IDMAP_KERNELS}; {e.strerror})",
            "put it on a filesystem that does (ext4, xfs, btrfs), or make the container "
            "privileged; lxpy-checkconfig tells what works on this host") from None
    return fd


class Backend:
    """One way of storing a container's rootfs. Every method takes the container directory
    cdir explicitly (it may be a temporary name) and the container's Config."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: what lxpy-snapshot keeps in snaps/snapN/ ("rootfs" or "delta")
    snapshot_part: ClassVar[str] = "rootfs"

    # -- the interface other parts use (docs/internals.md) -------------------------------
    def available(self, lxpath: Path) -> tuple[bool, str]:
        """(True, "") when containers in lxpath can use this backend, else (False, why)."""
        raise NotImplementedError

    def create_from(self, base: Path, cdir: Path) -> dict[str, str]:
        """Make the container's rootfs in cdir from the read-only tree base; return the
        rootfs.* config keys to record (rootfs.path relative to cdir)."""
        raise NotImplementedError

    @contextmanager
    def mounted(self, cdir: Path, cfg: Any) -> Iterator[Path]:
        """A writable host-side path of the container's tree for the duration."""
        yield rootfs_dir(cdir, cfg)

    def mount(self, cdir: Path, cfg: Any, target: Path) -> None:
        """Make the rootfs appear at target (in the caller's mount namespace)."""
        raise NotImplementedError

    def idmapped_tree(self, cdir: Path, cfg: Any, userns_fd: int, owner: tuple[int, int],
                      scratch: Path) -> int:
        """The rootfs as a detached mount tree (an fd) whose ids are mapped through the user
        namespace userns_fd, for an unprivileged container's PID 1 to move into place; the
        tree on disk stays as it is. Runs as host root in the host's user namespace, in a
        private mount namespace of its own (scratch: a directory for temporary mount
        points); owner: the host uid and gid of the container's root.
        dir and btrfs: the rootfs directory, recursively."""
        return idmapped_clone(require_rootfs(rootfs_dir(cdir, cfg)), userns_fd)

    @contextmanager
    def editable(self, cdir: Path, cfg: Any, rels: tuple[str, ...]) -> Iterator[Path]:
        """A root under which the files rels (relative paths) can be read and replaced
        with the same effect as in the container's tree; cheaper than mounted() where the
        backend can (overlay: its upper dir, when it already holds all of them)."""
        with self.mounted(cdir, cfg) as root:
            yield root

    def destroy(self, cdir: Path, cfg: Any) -> None:
        """Remove the container's rootfs data (what is special about it: mounts, subvolumes);
        the caller removes cdir itself."""
        raise NotImplementedError

    def usage(self, cdir: Path, cfg: Any) -> int:
        """Bytes of disk used by this container's own data."""
        return tree_usage(self.data_path(cdir, cfg))

    # -- used by copy and snapshot (lxpy/lifecycle/) -----------------------------------------
    def data_path(self, cdir: Path, cfg: Any) -> Path:
        """The directory that holds this container's own data (rootfs, or overlay's delta)."""
        return rootfs_dir(cdir, cfg)

    def full_copy(self, src_cdir: Path, src_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        """An independent copy of a container of this backend into dst_cdir."""
        raise NotImplementedError

    def snapshot_clone(self, src_cdir: Path, src_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        """A copy-on-write clone (cheap, may depend on the source) into dst_cdir."""
        raise StorageError(f"the {self.name} backend cannot make snapshot clones",
                           "drop -s for a full copy")

    def save_snapshot(self, cdir: Path, cfg: Any, snapdir: Path) -> None:
        """Keep the container's data in snapdir/<snapshot_part>."""
        raise NotImplementedError

    def from_snapshot(self, snapdir: Path, snap_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        """Make a container's data in dst_cdir from a snapshot; return rootfs.* keys."""
        raise NotImplementedError

    def import_tree(self, tree: Path, dst_cdir: Path) -> dict[str, str]:
        """An independent container of this backend holding a copy of tree (a full copy
        from another backend)."""
        return self.create_from(tree, dst_cdir)

    def __repr__(self) -> str:
        return f"<storage backend {self.name}>"

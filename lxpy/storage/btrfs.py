"""btrfs: the rootfs is a subvolume. Create from a cache on the same btrfs filesystem, clones
and snapshots are subvolume snapshots: O(1) and independent both ways."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..linux.fsops import btrfs_snapshot, btrfs_subvol_create, fs_name, is_btrfs, is_btrfs_subvolume
from .base import Backend, own_path, rootfs_dir
from .dir import bind_rootfs
from .tree import copy_contents, copy_dir_attrs, remove_tree

log = logging.getLogger("lxpy.storage")

# errors that mean "a snapshot cannot be made here, copy instead"
_NO_SNAPSHOT = (errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOTDIR)


def _existing(p: Path) -> Path:
    p = Path(os.path.abspath(p))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _storage_error(e: OSError, what: str) -> StorageError:
    hint = "the disk may be full" if e.errno == errno.ENOSPC else None
    return StorageError(f"btrfs: {what}: {e.strerror or e}", hint)


class BtrfsBackend(Backend):
    name = "btrfs"
    description = "btrfs subvolumes; clones and snapshots are subvolume snapshots"

    def available(self, lxpath: Path) -> tuple[bool, str]:
        p = _existing(Path(lxpath))
        try:
            if is_btrfs(p):
                return True, ""
            return False, f"{p} is on {fs_name(p)}, not btrfs"
        except OSError as e:
            return False, f"cannot inspect {p}: {e.strerror}"

    def _require(self, cdir: Path) -> None:
        ok, why = self.available(Path(cdir))
        if not ok:
            raise StorageError(f"the btrfs backend cannot be used here: {why}",
                               "put the lxpath on a btrfs filesystem, or use -B overlay or dir")

    def _snapshot_or_copy(self, src: Path, dst: Path, readonly: bool = False) -> None:
        """dst becomes a subvolume holding src's tree: a snapshot when src is a subvolume on
        the same filesystem, else a new subvolume with a (reflinked) copy."""
        if not Path(src).is_dir():
            raise StorageError(f"{src}: the tree to copy is missing")
        if is_btrfs_subvolume(src):
            try:
                btrfs_snapshot(src, dst, readonly=readonly)
                return
            except OSError as e:
                if e.errno not in _NO_SNAPSHOT:
                    raise _storage_error(e, f"snapshot of {src} as {dst}") from None
                log.debug("no snapshot of %s (%s): copying", src, e)
        try:
            btrfs_subvol_create(dst)
        except OSError as e:
            raise _storage_error(e, f"create subvolume {dst}") from None
        try:
            copy_dir_attrs(src, dst)
            copy_contents(src, dst)
            if readonly:
                self._set_readonly(dst)
        except BaseException:
            remove_tree(dst)
            raise

    @staticmethod
    def _set_readonly(path: Path) -> None:
        subprocess.run(["btrfs", "property", "set", "-ts", os.fspath(path), "ro", "true"],
                       check=False, capture_output=True)

    # -- interface -----------------------------------------------------------------------
    def create_from(self, base: Path, cdir: Path) -> dict[str, str]:
        self._require(cdir)
        self._snapshot_or_copy(Path(base), Path(cdir) / "rootfs")
        return {"rootfs.backend": "btrfs", "rootfs.path": "rootfs"}

    def mount(self, cdir: Path, cfg: Any, target: Path) -> None:
        bind_rootfs(rootfs_dir(cdir, cfg), target)

    def destroy(self, cdir: Path, cfg: Any) -> None:
        root = rootfs_dir(cdir, cfg)
        if own_path(cdir, root):      # a subvolume elsewhere is the admin's: kept
            remove_tree(root)

    # -- clone and snapshot --------------------------------------------------------------
    def full_copy(self, src_cdir: Path, src_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        # a btrfs snapshot is already a fully independent copy
        return self.create_from(rootfs_dir(src_cdir, src_cfg), dst_cdir)

    def snapshot_clone(self, src_cdir: Path, src_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        if src_cfg.rootfs.backend != "btrfs":
            raise StorageError("a btrfs snapshot clone needs a btrfs source",
                               "use -B overlay for a snapshot clone, or drop -s")
        return self.full_copy(src_cdir, src_cfg, dst_cdir)

    def save_snapshot(self, cdir: Path, cfg: Any, snapdir: Path) -> None:
        self._snapshot_or_copy(rootfs_dir(cdir, cfg), Path(snapdir) / "rootfs", readonly=True)

    def from_snapshot(self, snapdir: Path, snap_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        return self.create_from(Path(snapdir) / "rootfs", dst_cdir)

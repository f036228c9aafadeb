"""dir: the rootfs is a plain directory tree in the container directory. Full copies use
reflinks where the filesystem can; snapshot clones of a dir container are overlays on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..linux.mount import MS_BIND, MS_REC, mount
from .base import Backend, own_path, require_rootfs, rootfs_dir
from .tree import copy_tree, remove_tree


def bind_rootfs(src: Path, target: Path) -> None:
    mount(require_rootfs(src), target, None, MS_BIND | MS_REC)


class DirBackend(Backend):
    name = "dir"
    description = "a plain directory tree (full copies, reflinked where the filesystem can)"

    def available(self, lxpath: Path) -> tuple[bool, str]:
        return True, ""

    def create_from(self, base: Path, cdir: Path) -> dict[str, str]:
        copy_tree(base, Path(cdir) / "rootfs")
        return {"rootfs.backend": "dir", "rootfs.path": "rootfs"}

    def mount(self, cdir: Path, cfg: Any, target: Path) -> None:
        bind_rootfs(rootfs_dir(cdir, cfg), target)

    def destroy(self, cdir: Path, cfg: Any) -> None:
        root = rootfs_dir(cdir, cfg)
        if own_path(cdir, root):      # an absolute rootfs elsewhere is the admin's, kept
            remove_tree(root)

    def full_copy(self, src_cdir: Path, src_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        return self.create_from(rootfs_dir(src_cdir, src_cfg), dst_cdir)

    def save_snapshot(self, cdir: Path, cfg: Any, snapdir: Path) -> None:
        copy_tree(rootfs_dir(cdir, cfg), Path(snapdir) / "rootfs")

    def from_snapshot(self, snapdir: Path, snap_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        return self.create_from(Path(snapdir) / "rootfs", dst_cdir)

"""Storage backends (dir, overlay, btrfs), listed in BACKENDS (see base.py for their
interface), and the tree helpers they share (tree.py, layers.py, copyup.py); a new backend
is one new file and one line in the table. Container-level operations built on them
(create, copy, snapshot, destroy...) live in lxpy.lifecycle.

    storage.get("overlay").create_from(base, cdir)
    storage.best(lxpath)            # -B best: btrfs on btrfs, else overlay, else dir
    storage.names()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..linux.fsops import btrfs_subvol_create, is_btrfs
from .base import Backend
from .btrfs import BtrfsBackend
from .dir import DirBackend
from .overlay import OverlayBackend

# name -> backend; -B best tries them in this order
BACKENDS: dict[str, Backend] = {
    "btrfs": BtrfsBackend(),
    "overlay": OverlayBackend(),
    "dir": DirBackend(),
}


def names() -> list[str]:
    return sorted(BACKENDS)


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise StorageError(f"{name!r} is not a storage backend",
                           f"use one of: {', '.join(names())}, or best")
    return BACKENDS[name]


def best(lxpath: Path) -> Backend:
    """The fastest backend available for containers in lxpath."""
    for b in BACKENDS.values():
        if b.available(Path(lxpath))[0]:
            return b
    raise StorageError(f"no storage backend is available for {lxpath}")


def new_tree_dir(path: Path, mode: int = 0o755) -> None:
    """mkdir for a tree others will clone (a cache entry): a btrfs subvolume where the
    filesystem is btrfs, so the btrfs backend can snapshot it in O(1)."""
    path = Path(path)
    try:
        if is_btrfs(path.parent):
            btrfs_subvol_create(path)
            path.chmod(mode)
            return
    except OSError:
        pass
    path.mkdir(mode=mode)


def for_config(cfg: Any) -> Backend:
    return get(str(cfg.rootfs.backend or "dir"))

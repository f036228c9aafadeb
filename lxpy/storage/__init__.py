"""Storage backends (dir, overlay, btrfs), listed in BACKENDS (see base.py for their
interface); a new backend is one new file and one line in the table.

    storage.get("overlay").create_from(base, cdir)
    storage.best(lxpath)            # -B best: btrfs on btrfs, else overlay, else dir
    storage.names()
    storage.dependants(container)   # containers whose rootfs depends on this one
    storage.destroy_container(cdir, cfg)   # the rootfs, snapshots included
"""

from __future__ import annotations

import importlib
from functools import cache

from ..errors import StorageError

TYPE_CHECKING = False  # typing costs every command ~5 ms of import, pathlib ~14 (fastclone)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any
    from ..container import Container
    from .base import Backend

# name -> module:class, imported when it is used (PID 1 mounts with one of them);
# -B best tries them in this order
BACKENDS = {
    "btrfs": "lxpy.storage.btrfs:BtrfsBackend",
    "overlay": "lxpy.storage.overlay:OverlayBackend",
    "dir": "lxpy.storage.dir:DirBackend",
}


def names() -> list[str]:
    return sorted(BACKENDS)


@cache
def get(name: str) -> Backend:
    try:
        module, _, cls = BACKENDS[name].partition(":")
    except KeyError:
        raise StorageError(f"{name!r} is not a storage backend",
                           f"use one of: {', '.join(names())}, or best") from None
    return getattr(importlib.import_module(module), cls)()


def best(lxpath: Path) -> Backend:
    """The fastest backend available for containers in lxpath."""
    from pathlib import Path
    for n in BACKENDS:
        if get(n).available(Path(lxpath))[0]:
            return get(n)
    raise StorageError(f"no storage backend is available for {lxpath}")


def new_tree_dir(path: Path, mode: int = 0o755) -> None:
    """mkdir for a tree others will clone (a cache entry): a btrfs subvolume where the
    filesystem is btrfs, so the btrfs backend can snapshot it in O(1)."""
    from pathlib import Path

    from ..linux.fsops import btrfs_subvol_create, is_btrfs
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


def dependants(container: Container) -> list[str]:
    """Names of the containers (in the same lxpath) that are snapshot clones of container
    or whose rootfs lies on its tree: destroying it would break them."""
    from .clone import dependants as _dependants
    return _dependants(container)


def destroy_container(cdir: Path, cfg: Any) -> None:
    """Remove a container's storage: its rootfs (mounts, subvolumes) and its snapshots."""
    from pathlib import Path

    from .clone import destroy_container as _destroy
    _destroy(Path(cdir), cfg)


def sweep(lxpath: Path) -> None:
    """Clean what killed clone/snapshot/rename/create/destroy commands left in lxpath."""
    from pathlib import Path

    from .clone import sweep as _sweep
    _sweep(Path(lxpath))

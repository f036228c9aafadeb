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


def for_config(cfg: Any) -> Backend:
    return get(str(cfg.rootfs.backend or "dir"))

"""An overlay container's own read-only layers (<dir>/layers/N) and the seal that makes
them.

The seal makes a stopped overlay container's changes (delta/) a read-only layer of its
own, layers/N on top of its lowers, and gives it a fresh empty delta: its state so far can
no longer change, so a snapshot clone can share all its lowers in O(1), while the source
goes on, started and changed, on its new delta. Nothing when the delta is already empty
(nothing changed since the last seal).

Crash-safe: the config first lists a new empty layer (the same view as before), then one
renameat2(RENAME_EXCHANGE) swaps the delta with it (the same view again); the empty dirs
made before are harmless if we are killed before either."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ..config.atomic import write_new
from ..errors import StorageError
from ..linux.fsops import RENAME_EXCHANGE, renameat2
from ..linux.mount import is_mountpoint
from .base import rootfs_dir, split_lowers
from .tree import copy_dir_attrs, is_empty_dir

log = logging.getLogger("lxpy.storage")

LAYERS = "layers"       # <cdir>/layers/N: read-only layers of its own
MAX_LOWERS = 500        # the kernel's OVL_MAX_STACK
MAX_OPTIONS = 4000      # mount(2) data is one page, with the other options and a NUL


def too_deep(lowers: list, upper: Any, work: Any) -> bool:
    """True when these layers cannot be one overlay mount (too many, or their paths too long
    for the one page of mount options)."""
    n = len(lowers) + sum(len(os.fspath(p)) + 1 for p in (*lowers, upper, work))
    return len(lowers) > MAX_LOWERS or n + len("lowerdir=,upperdir=,workdir=") > MAX_OPTIONS


def seal(cdir: str, name: str, cfg: Any, dst_dir: str,
         render: Callable[[str], str]) -> str | None:
    """Seal the overlay container in cdir (its Config cfg) for a snapshot clone into
    dst_dir. render(new_lower) gives the new config.toml text with rootfs.lower set to
    new_lower. None: nothing to seal (an empty delta, a tmpfs delta (-e -t), a mounted
    rootfs: the clone copies the delta). Else the text config.toml holds now."""
    delta = f"{cdir}/delta"
    if os.path.islink(delta) or not os.path.isdir(delta) or is_empty_dir(delta):
        return None
    if is_mountpoint(rootfs_dir(cdir, cfg)):
        log.info("%s: its rootfs is mounted; the clone copies its delta", name)
        return None
    layers = f"{cdir}/{LAYERS}"
    used = [int(e) for e in (os.listdir(layers) if os.path.isdir(layers) else ())
            if e.isdigit()]
    rel = f"{LAYERS}/{max(used) + 1 if used else 0}"
    lowers = [f"{cdir}/{rel}", *split_lowers(cfg.rootfs.lower, cdir)]
    for upper, work in ((delta, f"{cdir}/work"), (f"{dst_dir}/delta", f"{dst_dir}/work")):
        if too_deep(lowers, upper, work):
            raise StorageError(f"container {name!r} has too many overlay layers "
                               f"({len(lowers)}) for a snapshot clone",
                               "lxpy-copy without -s makes an independent copy")
    text = render(f"{rel}:{cfg.rootfs.lower}")
    os.makedirs(layers, mode=0o755, exist_ok=True)
    layer = f"{cdir}/{rel}"
    os.mkdir(layer, 0o755)
    copy_dir_attrs(delta, layer)
    write_new(f"{cdir}/config.toml", text)          # atomic, fsynced
    renameat2(delta, layer, RENAME_EXCHANGE)        # the commit point
    log.info("%s: its changes so far are now its read-only layer %s", name, rel)
    return text

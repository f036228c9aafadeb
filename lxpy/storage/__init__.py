"""Storage backends (dir, overlay, btrfs), found through a registry: each module in this
package registers a Backend subclass (see base.py); a new backend is one new file.

    storage.get("overlay").create_from(base, cdir)
    storage.best(lxpath)            # -B best: btrfs on btrfs, else overlay, else dir
    storage.names()
    storage.dependants(container)   # containers whose rootfs depends on this one
    storage.destroy_container(cdir, cfg)   # the rootfs, snapshots included
"""

from __future__ import annotations

import os

from ..errors import StorageError

TYPE_CHECKING = False  # typing costs every command ~5 ms of import, pathlib ~14 (fastclone)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any
    from ..container import Container
    from .base import Backend

# modules of this package that are not backends
_HELPERS = frozenset({"base", "copy", "clone", "snapshot", "rename", "safewrite", "copyup",
                      "fastclone", "identity", "layers"})
# the order -B best tries them in
_PREFERENCE = ("btrfs", "overlay", "dir")


def _backend_modules() -> list[str]:
    import pkgutil  # with inspect, ~5 ms: only where every backend is wanted
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in _HELPERS)


def _is_backend_module(name: str) -> bool:
    """What `name in _backend_modules()` says, for one name, without listing the package."""
    if not name or name.startswith("_") or name in _HELPERS or not name.isidentifier():
        return False
    return any(os.path.exists(os.path.join(d, f"{name}{ext}")) for d in __path__
               for ext in (".py", ".pyc")) or name in _backend_modules()


def _load_all() -> dict[str, Backend]:
    from .base import _REGISTRY
    for mod in _backend_modules():
        if mod not in _REGISTRY:
            __import__(f"{__name__}.{mod}")   # (not importlib: ~0.5 ms)
    return _REGISTRY


def names() -> list[str]:
    return sorted(_load_all())


def get(name: str) -> Backend:
    from .base import _REGISTRY
    if name not in _REGISTRY and _is_backend_module(name):
        __import__(f"{__name__}.{name}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise StorageError(f"{name!r} is not a storage backend",
                           f"use one of: {', '.join(names())}, or best") from None


def best(lxpath: Path) -> Backend:
    """The fastest backend available for containers in lxpath."""
    from pathlib import Path
    reg = _load_all()
    order = [n for n in _PREFERENCE if n in reg] + sorted(set(reg) - set(_PREFERENCE))
    for n in order:
        ok, _ = reg[n].available(Path(lxpath))
        if ok:
            return reg[n]
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

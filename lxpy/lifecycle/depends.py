"""What holds a container: the snapshot clones and overlay stacks that depend on its tree
(destroy, rename and restore refuse while there are any), read from their configs even when
those do not load; and what its storage needs of a config that does not load."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from ..config.loader import validate
from ..container import Container
from ..errors import ConfigError
from ..linux.fsops import is_btrfs_subvolume
from ..storage.base import rootfs_dir
from ..storage.tree import is_inside

def _rootfs_table(config_path: Path) -> dict[str, Any] | None:
    """The [rootfs] table of a config; None when the file is not valid TOML."""
    try:
        with open(config_path, "rb") as f:
            data = tomllib.load(f)
    except OSError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    t = data.get("rootfs")
    return t if isinstance(t, dict) else {}


def _may_depend(config_path: Path, container: Container) -> bool:
    """A config that is not valid TOML (edited by hand, say) still counts as a dependant
    when its text names the container's directory or the container as its origin:
    destroying the origin would take the layers that clone's data sits on."""
    try:
        text = config_path.read_bytes().decode(errors="replace")
    except OSError:
        return False
    if f"{container.dir}/" in text or f"{os.path.realpath(container.dir)}/" in text:
        return True
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() == "origin" and value.strip().strip("\"'") == container.name:
            return True
    return False


def dependants(container: Container, hard_only: bool = False) -> list[str]:
    """Containers in the same lxpath recorded as snapshot clones of container
    (rootfs.origin), or whose rootfs uses its tree as an overlay lower: destroying it would
    break them. With hard_only, only the latter (those whose data would change if the
    container's tree changed)."""
    out = []
    for other in Container.all(container.lxpath):
        if other.name == container.name:
            continue
        t = _rootfs_table(other.config_path)
        if t is None:
            if _may_depend(other.config_path, container):
                out.append(other.name)
            continue
        lowers = [p for p in str(t.get("lower", "")).split(":") if p]
        path = str(t.get("path", ""))
        hard = any(os.path.isabs(p) and is_inside(p, container.dir) for p in lowers) or (
            os.path.isabs(path) and is_inside(path, container.dir))
        if hard or (not hard_only and t.get("origin") == container.name):
            out.append(other.name)
    return out


def fallback_config(c: Container) -> Any:
    """What the storage of c needs of its config when config.toml does not load (not TOML,
    an unknown key, a bad value): its [rootfs] table as far as it reads; a backend the file
    does not name (or not validly) is guessed from what is on disk: a delta/ dir is an
    overlay, a btrfs subvolume a btrfs rootfs."""
    table = _rootfs_table(c.config_path) or {}
    rootfs = {k: v for k, v in table.items()
              if k in ("backend", "path", "lower", "origin") and isinstance(v, str)}
    for t in (rootfs, {k: v for k, v in rootfs.items() if k != "backend"}, {}):
        try:
            cfg = validate({"rootfs": t}, str(c.config_path))
        except ConfigError:
            continue
        if "backend" in t:
            return cfg
        break
    if (c.dir / "delta").is_dir():
        guess = "overlay"
    elif is_btrfs_subvolume(rootfs_dir(c.dir, cfg)):
        guess = "btrfs"
    else:
        guess = "dir"
    return validate({"rootfs": {**t, "backend": guess}}, str(c.config_path))

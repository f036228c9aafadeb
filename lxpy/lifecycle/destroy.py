"""Destroying a container: refuse while it runs (or stop it with force), refuse while
snapshot clones depend on it, run destroy hooks, then remove it in one visible step."""

from __future__ import annotations

import logging
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from .. import storage
from ..config.loader import validate
from ..container import Container
from ..errors import ConfigError, LxpyError, StateError, StorageError
from ..linux.fsops import is_btrfs_subvolume
from ..runtime.stop import stop
from ..status import state_of
from ..storage.base import rootfs_dir
from ..storage.tree import is_inside, remove_tree
from . import ACTIVE
from .sweep import new_tmp

log = logging.getLogger("lxpy.destroy")


# -- dependencies ---------------------------------------------------------------------------

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


# -- destroy --------------------------------------------------------------------------------

def destroy_container(cdir: Path, cfg: Any) -> None:
    """Remove a container's storage: its snapshots, its rootfs (mounts and subvolumes
    included), then the directory."""
    remove_tree(cdir / "snaps")
    try:
        storage.for_config(cfg).destroy(cdir, cfg)
    finally:
        remove_tree(cdir)


def run_hooks(c: Container, which: str) -> None:
    cmds = getattr(c.config.hooks, which)
    if not cmds:
        return
    env = dict(os.environ, LXPY_NAME=c.name, LXPY_PATH=str(c.lxpath),
               LXPY_CONFIG_FILE=str(c.config_path), LXPY_ROOTFS=str(c.rootfs),
               LXPY_HOOK=which)
    for cmd in cmds:
        r = subprocess.run(["/bin/sh", "-c", cmd], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or [""])[-1]
            raise LxpyError(f"{which} hook {cmd!r} failed with status {r.returncode}"
                            + (f": {tail}" if tail else ""))


def destroy(c: Container, force: bool = False, snapshots: bool = False) -> None:
    c.require()
    with c.lock(wait=30, what="busy"):
        try:
            cfg, broken = c.config, None
        except ConfigError as e:        # a broken config never traps a container
            cfg, broken = fallback_config(c), e
        st = state_of(c)
        if st.state in ACTIVE:
            if not force:
                raise StateError(f"container {c.name!r} is {st.state.lower()}",
                                 "stop it first with lxpy-stop, or use lxpy-destroy -f")
            stop(c, kill=True)
        deps = dependants(c)
        if deps:
            raise StorageError(f"container {c.name!r} has snapshot clones that depend on it: "
                               f"{', '.join(deps)}", "destroy those first")
        snaps = c.dir / "snaps"
        if snaps.is_dir() and any(snaps.iterdir()) and not snapshots:
            raise StorageError(f"container {c.name!r} has snapshots",
                               "lxpy-destroy -s removes them too, or lxpy-snapshot -d ALL")
        if broken is None:
            run_hooks(c, "destroy")
        else:
            log.warning("%s: its config does not load, so its destroy hooks do not run (%s)",
                        c.name, broken)
        # One rename makes it vanish from lxpy-ls; then the slow part.
        gone = new_tmp(c.lxpath, "destroy", c.name)
        os.rename(c.dir, gone)
        destroy_container(gone, cfg)
    try:
        c.lock_path.unlink()
    except FileNotFoundError:
        pass

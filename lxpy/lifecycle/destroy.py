"""Destroying a container: refuse while it runs (or stop it with force), refuse while
snapshot clones depend on it, run destroy hooks, then remove it in one visible step."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from .. import idmap, storage
from ..container import Container
from ..errors import ConfigError, LxpyError, StateError, StorageError
from ..runtime.stop import stop
from ..runtime.state import query
from ..storage.tree import remove_tree
from . import ACTIVE
from .depends import dependants, fallback_config
from .sweep import new_tmp

log = logging.getLogger("lxpy.destroy")


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
        st = query(c)
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
        idmap.release(c)                # its block of ids is free for the next container
        destroy_container(gone, cfg)
    try:
        c.lock_path.unlink()
    except FileNotFoundError:
        pass

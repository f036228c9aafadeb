"""Destroying a container: refuse while it runs (or stop it with force), refuse while
snapshot clones depend on it, run destroy hooks, then remove it in one visible step."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess

from .container import Container
from .errors import ConfigError, LxpyError, StateError, StorageError
from .linux.mount import MNT_DETACH, mounts_under, umount2

log = logging.getLogger("lxpy.destroy")

ACTIVE = ("RUNNING", "STARTING", "STOPPING", "FROZEN", "FREEZING", "ABORTING")


def run_hooks(c: Container, which: str, extra_env: dict[str, str] | None = None) -> None:
    cmds = getattr(c.config.hooks, which)
    if not cmds:
        return
    env = dict(os.environ, LXPY_NAME=c.name, LXPY_PATH=str(c.lxpath),
               LXPY_CONFIG_FILE=str(c.config_path), LXPY_ROOTFS=str(c.rootfs),
               LXPY_HOOK=which, **(extra_env or {}))
    for cmd in cmds:
        r = subprocess.run(["/bin/sh", "-c", cmd], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or [""])[-1]
            raise LxpyError(f"{which} hook {cmd!r} failed with status {r.returncode}"
                            + (f": {tail}" if tail else ""))


def destroy(c: Container, force: bool = False, snapshots: bool = False) -> None:
    from . import storage
    from .status import state_of
    c.require()
    with c.lock(wait=30, what="busy"):
        try:
            cfg, broken = c.config, None
        except ConfigError as e:        # a broken config never traps a container
            from .storage.clone import fallback_config
            cfg, broken = fallback_config(c), e
        st = state_of(c)
        if st.state in ACTIVE:
            if not force:
                raise StateError(f"container {c.name!r} is {st.state.lower()}",
                                 "stop it first with lxpy-stop, or use lxpy-destroy -f")
            from .runtime.stop import stop
            stop(c, kill=True)
        deps = storage.dependants(c)
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
        gone = c.lxpath / f".tmp-destroy-{c.name}-{secrets.token_hex(4)}"
        os.rename(c.dir, gone)
        try:
            storage.destroy_container(gone, cfg)
        finally:
            for mp in mounts_under(gone):
                try:
                    umount2(mp, MNT_DETACH)
                except OSError:
                    pass
            shutil.rmtree(gone, ignore_errors=True)
    try:
        c.lock_path.unlink()
    except FileNotFoundError:
        pass

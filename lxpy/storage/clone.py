"""Container-level storage work: clone (full, snapshot), rename, dependency tracking,
destroy, and the sweep of what killed commands left behind.

Crash safety: every operation builds in a temporary place inside the lxpath (a name starting
with ".", which lxpy-ls never lists) and becomes visible with one rename. The next command
sweeps stale temporary directories whose container lock is free."""

from __future__ import annotations

import json
import logging
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any

from ..container import CONFIG_NAME, Container
from ..errors import LockBusy
from .copy import remove_tree

log = logging.getLogger("lxpy.storage")

TMP = ".tmp-"
RENAME_JOURNAL = ".lxpy-rename.json"


# -- dependencies ---------------------------------------------------------------------------

def _rootfs_table(config_path: Path) -> dict[str, Any]:
    try:
        with open(config_path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    t = data.get("rootfs")
    return t if isinstance(t, dict) else {}


def _inside(path: str | Path, directory: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(directory))
        return True
    except ValueError:
        return False


def dependants(container: Container, hard_only: bool = False) -> list[str]:
    """Containers in the same lxpath recorded as snapshot clones of container
    (rootfs.origin), or whose rootfs uses its tree as an overlay lower. With hard_only, only
    the latter (those whose data would change if the container's tree changed)."""
    out = []
    for other in Container.all(container.lxpath):
        if other.name == container.name:
            continue
        t = _rootfs_table(other.config_path)
        lowers = [p for p in str(t.get("lower", "")).split(":") if p]
        path = str(t.get("path", ""))
        hard = any(os.path.isabs(p) and _inside(p, container.dir) for p in lowers) or (
            os.path.isabs(path) and _inside(path, container.dir))
        if hard or (not hard_only and t.get("origin") == container.name):
            out.append(other.name)
    return out


def destroy_container(cdir: Path, cfg: Any) -> None:
    """Remove a container's storage: its snapshots, its rootfs (mounts and subvolumes
    included), then the directory."""
    from . import for_config
    remove_tree(cdir / "snaps")
    try:
        for_config(cfg).destroy(cdir, cfg)
    finally:
        remove_tree(cdir)


# -- the sweep ------------------------------------------------------------------------------

def _tmp_owner(entry: str) -> tuple[str, str] | None:
    """('copy', name) for '.tmp-copy-NAME-abcd1234', None when it is not ours."""
    if not entry.startswith(TMP):
        return None
    rest = entry[len(TMP):]
    op, _, rest = rest.partition("-")
    name, _, token = rest.rpartition("-")
    if not op or not name or not token:
        return None
    return op, name


def _try_lock(lxpath: Path, name: str):
    """A held lock context for name, or None when someone holds it."""
    from contextlib import ExitStack
    stack = ExitStack()
    try:
        stack.enter_context(Container(name, lxpath).lock(wait=0))
    except (LockBusy, Exception):  # noqa: BLE001 - a bad name is just not ours
        stack.close()
        return None
    return stack


def sweep(lxpath: Path) -> None:
    """Finish or undo what killed commands left in lxpath: temporary copies, creates and
    destroys are removed, an interrupted rename is rolled back. Only entries whose
    container lock is free are touched."""
    try:
        entries = os.listdir(lxpath)
    except FileNotFoundError:
        return
    for e in entries:
        owner = _tmp_owner(e)
        if owner is None:
            continue
        op, name = owner
        p = lxpath / e
        if not p.is_dir():
            continue
        lock = _try_lock(lxpath, name)
        if lock is None:
            continue
        with lock:
            if not p.exists():
                continue
            if op == "rename":
                _undo_rename(lxpath, p)
                continue
            log.info("removing %s left by an interrupted command", p)
            try:
                remove_tree(p)
            except OSError as err:
                log.warning("could not remove %s: %s", p, err)


def _undo_rename(lxpath: Path, tmp: Path) -> None:
    """Put an interrupted rename back as it was (the journal has the old name and files)."""
    from .rename import undo
    undo(lxpath, tmp)


def new_tmp(lxpath: Path, op: str, name: str) -> Path:
    return lxpath / f"{TMP}{op}-{name}-{secrets.token_hex(4)}"


def write_json(path: Path, data: dict) -> None:
    from ..config.edit import write_new
    write_new(path, json.dumps(data))

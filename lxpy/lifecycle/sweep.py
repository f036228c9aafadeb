"""Temporary directories, the one rename that publishes them, and the sweep that finishes
or undoes what killed commands left in an lxpath (an interrupted rename is put back from
its journal)."""

from __future__ import annotations

import json
import logging
import os
from contextlib import ExitStack
from pathlib import Path

from .. import storage
from ..config.atomic import write_new
from ..config.loader import load
from ..container import CONFIG_NAME, Container
from ..errors import ContainerExists
from ..linux.fsops import RENAME_NOREPLACE, renameat2
from ..storage.tree import remove_tree
from .identity import restore_files

log = logging.getLogger("lxpy.lifecycle")

TMP = ".tmp-"
RENAME_JOURNAL = ".lxpy-rename.json"


def new_tmp(lxpath: Path, op: str, name: str) -> Path:
    return lxpath / f"{TMP}{op}-{name}-{os.urandom(4).hex()}"


def write_json(path: Path, data: dict) -> None:
    write_new(path, json.dumps(data))


def publish(tmp: Path, final: Path) -> None:
    """The one rename that makes a new container visible; refuses to replace anything."""
    try:
        renameat2(tmp, final, RENAME_NOREPLACE)
    except FileExistsError:
        raise ContainerExists(f"container {final.name!r} already exists") from None


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
    stack = ExitStack()
    try:
        stack.enter_context(Container(name, lxpath).lock(wait=0))
    except Exception:  # noqa: BLE001 - busy, or a bad name: not ours
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
                undo_rename(lxpath, p)
                continue
            log.info("removing %s left by an interrupted command", p)
            try:
                remove_tree(p)
            except OSError as err:
                log.warning("could not remove %s: %s", p, err)


def undo_rename(lxpath: Path, tmp: Path) -> None:
    """Put an interrupted rename back under the old name, with its old config and files."""
    if not tmp.exists():
        return
    try:
        j = json.loads((tmp / RENAME_JOURNAL).read_text())
    except (OSError, ValueError):
        log.warning("%s: an interrupted rename without a journal; left as it is", tmp)
        return
    old = Container(j["old"], lxpath)
    if j.get("files"):
        try:
            cfg = load(tmp / CONFIG_NAME)
            with storage.for_config(cfg).editable(tmp, cfg, tuple(j["files"])) as root:
                restore_files(root, {k: (bytes.fromhex(v) if v is not None else None)
                                     for k, v in j["files"].items()})
        except Exception as e:  # noqa: BLE001 - the tree is still there, say so
            log.warning("%s: could not restore /etc/hostname and /etc/hosts: %s", tmp, e)
    write_new(tmp / CONFIG_NAME, j["config"])
    if old.dir.exists():
        log.warning("%s: cannot move back to %s, which exists now", tmp, old.dir)
        return
    os.rename(tmp, old.dir)
    try:
        (old.dir / RENAME_JOURNAL).unlink()
    except FileNotFoundError:
        pass
    log.info("put back %s after an interrupted rename", old.name)


def claim(stack: ExitStack, src: Container, dst: Container) -> None:
    """For an operation making dst from src: sweep dst's lxpath, lock src (busy) and dst
    (being created) on stack; refuse a dst that exists."""
    sweep(dst.lxpath)
    stack.enter_context(src.lock(wait=5, what="busy"))
    stack.enter_context(dst.lock(wait=0, what="being created"))
    if dst.dir.exists() or dst.dir.is_symlink():
        raise ContainerExists(f"container {dst.name!r} already exists in {dst.lxpath}",
                              "pick another name, or lxpy-destroy it first")

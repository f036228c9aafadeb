"""lxpy-snapshot: snapshots kept in <cdir>/snaps/snapN/{config.toml, rootfs|delta,
meta.toml}; list, restore in place or into a new container, destroy.

Each snapshot is built in snaps/.tmp-* and appears with one rename; a restore in place
builds the restored data beside the container and swaps it in with one
renameat2(RENAME_EXCHANGE), so a failed or killed restore leaves the container as it was
(or restored: never half of each)."""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
import tomllib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import storage
from ..config.atomic import write_new
from ..config.edit import edit_text, toml_str
from ..config.loader import load
from ..container import CONFIG_NAME, Container
from ..errors import StorageError, UsageError
from ..linux.fsops import RENAME_EXCHANGE, RENAME_NOREPLACE, renameat2
from ..storage.tree import remove_tree
from . import require_stopped
from .copy import MERGED, make_another
from .depends import dependants
from .identity import clone_config
from .sweep import TMP, claim, new_tmp, publish

log = logging.getLogger("lxpy.lifecycle")

SNAP_RE = re.compile(r"^snap(\d{1,9})$")
META = "meta.toml"


@dataclass
class Snapshot:
    name: str
    path: Path
    time: float
    comment: str
    backend: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                         time.gmtime(self.time)),
                "comment": self.comment, "backend": self.backend, "path": str(self.path)}


def snaps_dir(c: Container) -> Path:
    return c.dir / "snaps"


def _sweep_snaps(c: Container) -> None:
    """Temp dirs of killed snapshot commands (we hold the container's lock)."""
    d = snaps_dir(c)
    for p in [*(d.iterdir() if d.is_dir() else ()), *c.dir.iterdir()]:
        if p.name.startswith(TMP) or p.name.startswith(".restore-"):
            log.info("removing %s left by an interrupted command", p)
            remove_tree(p)


def list_snapshots(c: Container) -> list[Snapshot]:
    c.require()
    out = []
    d = snaps_dir(c)
    if not d.is_dir():
        return out
    for e in d.iterdir():
        m = SNAP_RE.match(e.name)
        if not m or not (e / CONFIG_NAME).is_file():
            continue
        try:
            with open(e / META, "rb") as f:
                meta = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError):
            meta = {}
        out.append(Snapshot(e.name, e, float(meta.get("time", e.stat().st_mtime)),
                            str(meta.get("comment", "")), str(meta.get("backend", ""))))
    return sorted(out, key=lambda s: int(s.name[4:]))


def get_snapshot(c: Container, name: str) -> Snapshot:
    for s in list_snapshots(c):
        if s.name == name:
            return s
    names = ", ".join(s.name for s in list_snapshots(c)) or "none"
    raise UsageError(f"container {c.name!r} has no snapshot {name!r} (it has: {names})",
                     "lxpy-snapshot -L lists them")


def create_snapshot(c: Container, comment: str = "") -> Snapshot:
    c.require()
    with c.lock(wait=5, what="busy"):
        require_stopped(c, "a snapshot")
        _sweep_snaps(c)
        cfg = load(c.config_path)
        b = storage.for_config(cfg)
        d = snaps_dir(c)
        d.mkdir(mode=0o700, exist_ok=True)
        used = [int(m.group(1)) for e in os.listdir(d) if (m := SNAP_RE.match(e))]
        name = f"snap{max(used) + 1 if used else 0}"
        tmp = d / f"{TMP}{name}-{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o700)
        try:
            b.save_snapshot(c.dir, cfg, tmp)
            write_new(tmp / CONFIG_NAME, c.config_path.read_text())
            now = time.time()
            write_new(tmp / META, f"time = {now!r}\ncomment = {toml_str(comment)}\n"
                                  f"backend = {toml_str(b.name)}\n")
            renameat2(tmp, d / name, RENAME_NOREPLACE)
        except BaseException:
            remove_tree(tmp)
            raise
    log.info("snapshot %s of %s made", name, c.name)
    return Snapshot(name, d / name, now, comment, b.name)


def destroy_snapshot(c: Container, name: str) -> list[str]:
    """Destroy one snapshot, or all with name "ALL"; returns the names destroyed."""
    c.require()
    with c.lock(wait=5, what="busy"):
        snaps = list_snapshots(c) if name == "ALL" else [get_snapshot(c, name)]
        for s in snaps:
            gone = snaps_dir(c) / f"{TMP}del-{s.name}-{secrets.token_hex(4)}"
            os.rename(s.path, gone)            # one rename: it is no longer listed
            remove_tree(gone)
        _sweep_snaps(c)
    return [s.name for s in snaps]


def restore_snapshot(c: Container, name: str, new_name: str | None = None) -> Container:
    """Restore snapshot name of c: in place (c stopped), or as a new container new_name."""
    c.require()
    if new_name:
        return _restore_new(c, name, new_name)
    return _restore_in_place(c, name)


def _restore_in_place(c: Container, name: str) -> Container:
    with c.lock(wait=5, what="busy"):
        require_stopped(c, "restoring a snapshot")
        _sweep_snaps(c)
        snap = get_snapshot(c, name)
        snap_cfg = load(snap.path / CONFIG_NAME)
        sb = storage.get(snap_cfg.rootfs.backend)
        # an overlay restore swaps the delta only: the trees clones use as lowers (the own
        # layers, a frozen dir tree) stay as they are
        deps = [] if sb.snapshot_part == "delta" else dependants(c, hard_only=True)
        if deps:
            raise StorageError(f"cannot restore {c.name!r} in place: the rootfs of "
                               f"{', '.join(deps)} lies on its tree",
                               "restore into a new container with -N, or destroy those first")
        cur_cfg = load(c.config_path)
        if cur_cfg.rootfs.backend != sb.name and not (sb.name == "dir" and
                                                      cur_cfg.rootfs.backend == "overlay"):
            raise StorageError(f"{name} was taken with the {sb.name} backend; "
                               f"{c.name!r} now uses {cur_cfg.rootfs.backend}",
                               "restore it into a new container with -N")
        stage = c.dir / f".restore-{secrets.token_hex(4)}"
        stage.mkdir(mode=0o700)
        try:
            keys = sb.from_snapshot(snap.path, snap_cfg, stage)
            lower = str(snap_cfg.rootfs.lower or "")
            if lower:
                keys["rootfs.lower"] = lower      # its relative parts are relative to c: keep
            text = edit_text((snap.path / CONFIG_NAME).read_text(), keys,
                             () if "rootfs.lower" in keys else ("rootfs.lower",))
            write_new(stage / CONFIG_NAME, text)
            part = sb.snapshot_part
            cur = c.dir / part
            if cur.exists():
                renameat2(stage / part, cur, RENAME_EXCHANGE)     # the commit point
            else:
                os.rename(stage / part, cur)
            os.replace(stage / CONFIG_NAME, c.config_path)
            if part == "delta":             # the overlay work dir belongs to the old upper
                remove_tree(c.dir / "work")
                (c.dir / "work").mkdir(mode=0o700)
            elif cur_cfg.rootfs.backend == "overlay":
                # a dir snapshot restored over a sealed dir container (copy.seal_for_clone):
                # it is a dir container again; its overlay parts go
                for p in ("delta", "work", MERGED):
                    if p != part:
                        remove_tree(c.dir / p)
        finally:
            remove_tree(stage)
    log.info("restored %s of %s", name, c.name)
    return c


def _restore_new(c: Container, name: str, new_name: str) -> Container:
    dst = Container(new_name, c.lxpath)
    if dst.name == c.name:
        raise UsageError("to restore in place, leave out -N")
    with ExitStack() as stack:
        claim(stack, c, dst)
        snap = get_snapshot(c, name)
        snap_cfg = load(snap.path / CONFIG_NAME)
        sb = storage.get(snap_cfg.rootfs.backend)
        tmp = new_tmp(c.lxpath, "copy", new_name)
        tmp.mkdir(mode=0o700)
        stack.callback(remove_tree, tmp)
        keys = sb.from_snapshot(snap.path, snap_cfg, tmp)
        text = clone_config((snap.path / CONFIG_NAME).read_text(), keys=keys, old_dir=c.dir,
                            new_dir=dst.dir, old_name=c.name, new_name=new_name,
                            keep_hostname=False, keep_macs=False, origin=None)
        write_new(tmp / CONFIG_NAME, text)
        os.chmod(tmp, 0o755)
        make_another(sb, tmp, c.name, snap_cfg.hostname or c.name, dst)
        publish(tmp, dst.dir)
    return dst

"""lxpy-copy: a full or snapshot clone of a container, built in a temporary directory and
published with one rename. An overlay snapshot clone of a stopped dir (or btrfs) container
first seals the source over its own tree (seal_for_clone); of an overlay container, its
changes so far become a read-only layer (storage.layers.seal)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .. import idmap, storage
from ..config.atomic import write_new
from ..config.edit import edit_text, set_keys
from ..config.loader import load
from ..container import CONFIG_NAME, Container
from ..errors import LxpyError, StorageError, UsageError
from ..linux.mount import MS_NODEV, MS_NOSUID, mount
from ..paths import LOG_SUBDIR
from ..storage.base import Backend, rootfs_dir, split_lowers
from ..storage.layers import seal
from ..storage.overlay import LAYERS, OverlayBackend
from ..storage.tree import copy_dir_attrs, copy_tree, is_empty_dir, is_inside, remove_tree
from . import is_active, require_stopped
from .identity import HOST_FILES, clone_config, update_hostname
from .sweep import claim, new_tmp, publish

log = logging.getLogger("lxpy.lifecycle")

MERGED = "merged"       # the overlay mount point of a sealed dir container (seal_for_clone)


def run_clone_hooks(cfg: Any, cdir: Path, rootfs: Path, name: str, src_name: str,
                    lxpath: Path) -> None:
    for cmd in cfg.hooks.clone:
        env = dict(os.environ, LXPY_NAME=name, LXPY_SRC_NAME=src_name, LXPY_PATH=str(lxpath),
                   LXPY_CONFIG_FILE=str(cdir / CONFIG_NAME), LXPY_ROOTFS=str(rootfs),
                   LXPY_HOOK="clone", LXPY_HOOK_TYPE="clone")
        r = subprocess.run(["/bin/sh", "-c", cmd], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, errors="replace", cwd=str(cdir))
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or [""])[-1]
            raise LxpyError(f"clone hook {cmd!r} failed with status {r.returncode}"
                            + (f": {tail}" if tail else ""), "nothing was made")


def make_another(b: Backend, tmp: Path, src_name: str, old_host: str | None, new: Container
                 ) -> None:
    """The clone in tmp (of src_name) becomes new: its /etc/hostname and /etc/hosts get its
    hostname instead of old_host (None: kept), then its clone hooks run."""
    cfg = load(tmp / CONFIG_NAME)
    if cfg.hooks.clone:
        with b.mounted(tmp, cfg) as root:
            if old_host is not None:
                update_hostname(root, old_host, cfg.hostname or new.name)
            run_clone_hooks(cfg, tmp, root, new.name, src_name, new.lxpath)
    elif old_host is not None:
        with b.editable(tmp, cfg, HOST_FILES) as root:
            update_hostname(root, old_host, cfg.hostname or new.name)


def _storage_entries(cfg: Any, cdir: Path) -> set[str]:
    names = {CONFIG_NAME, "rootfs", "delta", "work", "snaps", MERGED, LAYERS}
    root = rootfs_dir(cdir, cfg)
    if root.parent == cdir:
        names.add(root.name)
    return names


def copy_extras(src_dir: Path, src_cfg: Any, dst_dir: Path) -> None:
    """Copy what else the admin keeps in the container directory (hook scripts, notes)."""
    skip = _storage_entries(src_cfg, src_dir) | {LOG_SUBDIR}   # a clone's history is its own
    for e in os.listdir(src_dir):
        if e in skip or e.startswith("."):
            continue
        s = src_dir / e
        if s.is_dir() and not s.is_symlink():
            copy_tree(s, dst_dir / e)
        else:
            shutil.copy2(s, dst_dir / e, follow_symlinks=False)


def _container_lowers(cfg: Any, cdir: Path, lxpath: Path) -> bool:
    """True when the overlay's lowers include a container's tree (in lxpath), other than
    its own layers (layers/N, which a full copy copies)."""
    if cfg.rootfs.backend != "overlay":
        return False
    return any(is_inside(p, lxpath) and OverlayBackend.own_layer(cdir, p) is None
               for p in split_lowers(cfg.rootfs.lower, cdir))


def _config_of(c: Container) -> tuple[str, Any]:
    """c's config.toml text and c's Config, both of the same text."""
    while True:
        text = c.config_path.read_text()
        cfg = c.reload()
        if c.config_path.read_text() == text:       # not edited meanwhile
            return text, cfg


def copy_container(src: Container, new_name: str, *, snapshot: bool = False,
                   backend: str | None = None, keep_hostname: bool = False,
                   keep_macs: bool = False, allow_running: bool = False,
                   new_lxpath: Path | None = None, before_publish=None) -> Container:
    """lxpy-copy: a full (default) or snapshot (-s) clone of src named new_name."""
    src.require()
    dst = Container(new_name, new_lxpath or src.lxpath)
    if dst.dir == src.dir:
        raise UsageError("the new name is the same as the old one")
    dst.lxpath.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        claim(stack, src, dst)
        require_stopped(src, "copying it", allow_running)
        src_text, src_cfg = _config_of(src)
        sb = storage.for_config(src_cfg)
        if snapshot:
            tb = storage.get(backend) if backend else (
                sb if sb.name == "btrfs" else storage.get("overlay"))
        elif backend:
            tb = storage.get(backend)
        elif _container_lowers(src_cfg, src.dir, src.lxpath):
            tb = storage.get("dir")  # flatten: a full copy must not depend on another container
        else:
            tb = sb
        ok, why = tb.available(dst.lxpath)
        if not ok:
            raise StorageError(f"backend {tb.name!r} is not available here: {why}",
                               "pick another with -B")
        tmp = new_tmp(dst.lxpath, "copy", new_name)
        tmp.mkdir(mode=0o700)
        stack.callback(remove_tree, tmp)      # a no-op once it has been renamed
        log.info("%s %s to %s (%s)", "snapshot-cloning" if snapshot else "copying",
                 src.name, new_name, tb.name)
        if snapshot and tb.name == "overlay" and dst.lxpath.resolve() != src.lxpath.resolve() \
                and (sb.name != "overlay" or _container_lowers(src_cfg, src.dir, src.lxpath)):
            raise StorageError("this snapshot clone would depend on a container in another "
                               "lxpath, where lxpy-destroy could not see it",
                               "make it in the same lxpath, or drop -s for a full copy")
        if snapshot and tb.name == "overlay" and sb.name != "overlay":
            if is_active(src):
                raise StorageError(f"container {src.name!r} is running: an overlay snapshot "
                                   "clone of a dir or btrfs container needs it stopped",
                                   "stop it, or drop -s for a full copy")
            src_cfg = seal_for_clone(src, src_cfg)
            src_text = src.config_path.read_text()
            sb = storage.for_config(src_cfg)
        if snapshot and tb.name == "overlay" and sb.name == "overlay" \
                and dst.lxpath.resolve() != src.lxpath.resolve():
            keys = tb.full_copy(src.dir, src_cfg, tmp)     # independent of src: copies
        elif snapshot:
            if tb.name == "overlay" and sb.name == "overlay" and not is_active(src):
                src_cfg, src_text = _seal(src, src_cfg, tmp, src_text)
            keys = tb.snapshot_clone(src.dir, src_cfg, tmp)
        elif tb.name == sb.name and not _container_lowers(src_cfg, src.dir, src.lxpath):
            keys = tb.full_copy(src.dir, src_cfg, tmp)
        else:
            with sb.mounted(src.dir, src_cfg) as view:
                keys = tb.import_tree(view, tmp)
        copy_extras(src.dir, src_cfg, tmp)
        text = clone_config(src_text, keys=keys, old_dir=src.dir, new_dir=dst.dir,
                            old_name=src.name, new_name=new_name,
                            keep_hostname=keep_hostname, keep_macs=keep_macs,
                            origin=src.name if snapshot else None)
        write_new(tmp / CONFIG_NAME, text)
        os.chmod(tmp, os.stat(src.dir).st_mode & 0o7777)
        make_another(tb, tmp, src.name,
                     None if keep_hostname else src_cfg.hostname or src.name, dst)
        if before_publish is not None:
            before_publish(tmp)
        idmap.assign(dst, load(tmp / CONFIG_NAME))    # a block of its own (dst is locked)
        try:
            publish(tmp, dst.dir)
        except BaseException:
            if not dst.dir.exists():
                idmap.release(dst)
            raise
    return dst


def seal_for_clone(src: Container, src_cfg: Any) -> Any:
    """Turn a stopped dir (or btrfs) container into an overlay over its own tree, which
    stays where it is, byte for byte, and becomes read-only: its own changes go to delta/
    from now on, so it and its snapshot clones (overlays on the same tree) never see each
    other's writes. One atomic config replace switches it; the new empty dirs made before
    are harmless if we are killed before that. Returns the new config."""
    tree = rootfs_dir(src.dir, src_cfg)
    if not tree.is_dir():
        raise StorageError(f"{tree}: the rootfs of {src.name!r} is missing")
    rel = os.path.relpath(tree, src.dir) if is_inside(tree, src.dir) else os.fspath(tree)
    if rel == MERGED:
        raise StorageError(f"{src.name!r}: its rootfs is named {MERGED!r}, which an overlay "
                           "snapshot clone needs", "drop -s for a full copy")
    (src.dir / MERGED).mkdir(mode=0o755, exist_ok=True)
    delta = src.dir / "delta"
    if delta.exists() and not (delta.is_dir() and is_empty_dir(delta)):
        raise StorageError(f"{delta}: in the way of an overlay snapshot clone",
                           "move it away, or drop -s for a full copy")
    delta.mkdir(mode=0o755, exist_ok=True)
    copy_dir_attrs(tree, delta)
    (src.dir / "work").mkdir(mode=0o700, exist_ok=True)
    set_keys(src.config_path, {"rootfs.backend": "overlay", "rootfs.path": MERGED,
                               "rootfs.lower": rel})
    log.info("%s is now an overlay over its own tree %s (sealed for its snapshot clones)",
             src.name, tree)
    return load(src.config_path)


def _seal(src: Container, src_cfg: Any, dst_dir: Path, text: str) -> tuple[Any, str]:
    """layers.seal of src (its config src_cfg, its config.toml's text) for a snapshot clone
    into dst_dir: the (new) config and text."""
    new_text = seal(os.fspath(src.dir), src.name, src_cfg, os.fspath(dst_dir),
                    lambda lower: edit_text(text, {"rootfs.lower": lower}))
    if new_text is None:
        return src_cfg, text
    return load(src.config_path), new_text


def changes_on_tmpfs(cdir: Path) -> None:
    """Move an overlay container's delta and work dirs onto a tmpfs mounted in cdir (for
    ephemeral copies: lxpy-copy -e -t); they become symlinks to it. Destroy unmounts it."""
    cfg = load(cdir / CONFIG_NAME)
    if cfg.rootfs.backend != "overlay":
        raise StorageError("-t needs an overlay copy", "use -e -t without -B, or -B overlay")
    t = cdir / ".tmpfs"
    t.mkdir(mode=0o700)
    mount("tmpfs", t, "tmpfs", MS_NODEV | MS_NOSUID, "mode=0700")
    for part in ("delta", "work"):
        copy_tree(cdir / part, t / part)
        remove_tree(cdir / part)
        os.symlink(f".tmpfs/{part}", cdir / part)

"""lxpy-copy -R: rename a container in place (O(1)). Killed at any moment, the next lxpy
command puts it back under its old name (sweep.undo_rename, from the journal)."""

from __future__ import annotations

import os
from contextlib import ExitStack

from .. import idmap, storage
from ..config.atomic import write_new
from ..config.loader import load
from ..container import CONFIG_NAME, Container
from ..errors import StorageError, UsageError
from . import require_stopped
from .depends import dependants
from .identity import HOST_FILES, clone_config, read_host_files, update_hostname
from .sweep import RENAME_JOURNAL, claim, new_tmp, publish, undo_rename, write_json


def rename_container(src: Container, new_name: str, keep_hostname: bool = False) -> Container:
    """Rename src to new_name (in the same lxpath)."""
    src.require()
    dst = Container(new_name, src.lxpath)
    if dst.name == src.name:
        raise UsageError("the new name is the same as the old one")
    with ExitStack() as stack:
        claim(stack, src, dst)
        require_stopped(src, "renaming it")
        deps = dependants(src, hard_only=True)
        if deps:
            raise StorageError(f"container {src.name!r} cannot be renamed: the rootfs of "
                               f"{', '.join(deps)} lies on its tree",
                               "destroy those first")
        cfg = load(src.config_path)
        old_text = src.config_path.read_text()
        tmp = new_tmp(src.lxpath, "rename", new_name)
        journal = {"old": src.name, "new": new_name, "config": old_text, "files": None}
        write_json(src.dir / RENAME_JOURNAL, journal)
        os.rename(src.dir, tmp)        # gone from lxpy-ls; the sweep can put it back
        try:
            text = clone_config(old_text, keys=None, old_dir=src.dir, new_dir=dst.dir,
                                old_name=src.name, new_name=new_name,
                                keep_hostname=keep_hostname, keep_macs=True, origin=None)
            if not keep_hostname:
                with storage.for_config(cfg).editable(tmp, cfg, HOST_FILES) as root:
                    # the journal holds the files before they change: killed in between,
                    # the sweep puts back what was there
                    before = read_host_files(root)
                    write_json(tmp / RENAME_JOURNAL, {**journal, "files": {
                        k: (v.hex() if v is not None else None) for k, v in before.items()}})
                    update_hostname(root, cfg.hostname or src.name,
                                    new_name if not cfg.hostname or
                                    cfg.hostname == src.name else cfg.hostname, before)
            write_new(tmp / CONFIG_NAME, text)
            publish(tmp, dst.dir)
        except BaseException:
            undo_rename(src.lxpath, tmp)
            raise
        idmap.moved(src, dst)           # both locks held: no allocation prunes it meanwhile
    for p in (dst.dir / RENAME_JOURNAL, src.lock_path):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    return dst

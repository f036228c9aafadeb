"""The rootfs cache: one entry directory per (template, key), built once, under a lock.

    <cache_root>/<template>/<key>/
        rootfs -> rootfs.20261128T010203-1a2b     the current version (a relative symlink)
        rootfs.20261128T010203-1a2b/              a complete, read-only base tree
        meta.toml                                 what the current version was made from
        <method>.log                              the log of the last build
        .lock                                     flock: one build at a time
        .build-*/                                 a build in progress (or left by a killed one)

A build happens in `.build-*` beside the versions and is renamed into place when complete,
then `rootfs` is switched to it with one rename, so a reader sees either the old complete
tree or the new one. ensure() returns the versioned path (what an overlay container
records as its lower dir): a `--flush-cache` rebuild makes a new version and never
deletes an old one, so containers built on it keep working; `prune()` removes old
versions no container refers to.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config.edit import toml_str
from ..errors import BootstrapError
from ..linux.mount import MNT_DETACH, mounts_under, umount2

log = logging.getLogger("lxpy.bootstrap")

CURRENT = "rootfs"
VERSION_PREFIX = "rootfs."
BUILD_PREFIX = ".build-"


def current(entry: Path) -> Path | None:
    """The complete current tree of an entry, or None."""
    link = entry / CURRENT
    try:
        st = os.lstat(link)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):          # a plain directory: made by hand or by an old lxpy
        return link
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(link)
        if "/" in target:
            return None
        p = entry / target
        return p if p.is_dir() and not p.is_symlink() else None
    return None


@contextmanager
def locked(entry: Path, what: str, progress: Callable[[str], None] | None) -> Iterator[None]:
    entry.mkdir(parents=True, exist_ok=True)
    fd = os.open(entry / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"waiting for another lxpy-create that is bootstrapping {what}"
            log.info("%s", msg)
            if progress:
                progress(msg)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """rm -rf that first detaches whatever is mounted below (a killed debootstrap leaves
    proc/sys/dev mounted in its target) and never crosses into another filesystem."""
    if not path.exists() and not path.is_symlink():
        return
    for mp in mounts_under(path):
        try:
            umount2(mp, MNT_DETACH)
        except OSError as e:
            raise BootstrapError(f"cannot unmount {mp} left by an interrupted build: "
                                 f"{e.strerror}", f"umount -l {mp}, then retry") from None
    dev = os.lstat(path).st_dev

    def onerror(func, p, exc_info):  # noqa: ANN001 - shutil's signature
        e = exc_info[1]
        if isinstance(e, FileNotFoundError):
            return
        if isinstance(e, PermissionError):  # immutable or read-only dirs: make writable
            try:
                os.chmod(os.path.dirname(p), 0o755)
                func(p)
                return
            except OSError:
                pass
        raise e
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, _ in os.walk(path):
            for d in list(dirnames):
                full = os.path.join(dirpath, d)
                try:
                    if os.lstat(full).st_dev != dev:
                        raise BootstrapError(f"{full} is on another filesystem; "
                                             "not removing it", "unmount it and retry")
                except FileNotFoundError:
                    pass
        shutil.rmtree(path, onerror=onerror)
    else:
        os.unlink(path)


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def _write_meta(entry: Path, meta: dict[str, Any]) -> None:
    lines = []
    for k, v in meta.items():
        if isinstance(v, (list, tuple)):
            lines.append(f"{k} = [{', '.join(toml_str(x) for x in v)}]")
        elif isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            lines.append(f"{k} = {v}")
        else:
            lines.append(f"{k} = {toml_str(v)}")
    tmp = entry / f".meta.toml.{secrets.token_hex(4)}"
    tmp.write_text("\n".join(lines) + "\n")
    os.rename(tmp, entry / "meta.toml")


def ensure(entry: Path, build: Callable[[Path], None], meta: dict[str, Any], *,
           what: str, flush: bool = False,
           progress: Callable[[str], None] | None = None) -> Path:
    """The current version of entry, built with build(tmpdir) first if missing (or flush)."""
    if not flush:
        p = current(entry)
        if p is not None:
            return p
    with locked(entry, what, progress):
        if not flush:
            p = current(entry)
            if p is not None:           # someone else built it while we waited
                return p
        for name in os.listdir(entry):
            if name.startswith(BUILD_PREFIX):     # left by a killed build: we hold the lock
                log.info("removing %s left by an interrupted build", entry / name)
                remove_tree(entry / name)
        stamp = _stamp()
        tmp = entry / f"{BUILD_PREFIX}{stamp}"
        tmp.mkdir(mode=0o755)
        final = entry / f"{VERSION_PREFIX}{stamp}"
        try:
            build(tmp)
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        except BaseException:
            try:
                remove_tree(tmp)
            except Exception as e:  # noqa: BLE001 - report the build's error, not this
                log.warning("could not remove %s: %s", tmp, e)
            raise
        link = entry / CURRENT
        if link.is_dir() and not link.is_symlink():
            # an old plain-directory cache: keep it under a version name, never delete it
            os.rename(link, entry / f"{VERSION_PREFIX}{_stamp()}-old")
        newlink = entry / f".{CURRENT}.{stamp}"
        os.symlink(final.name, newlink)
        os.rename(newlink, link)
        _write_meta(entry, {**meta, "version": final.name,
                            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        _fsync_dir(entry)
        return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def versions(entry: Path) -> list[Path]:
    """Every complete version in an entry, oldest first."""
    try:
        names = os.listdir(entry)
    except FileNotFoundError:
        return []
    return sorted(entry / n for n in names
                  if n.startswith(VERSION_PREFIX) and (entry / n).is_dir()
                  and not (entry / n).is_symlink())


def prune(entry: Path, in_use: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the versions of entry that are not current and not in in_use (paths that
    containers refer to, such as their overlay lower dirs). Returns what was removed."""
    used = {os.path.realpath(p) for p in in_use}
    cur = current(entry)
    removed = []
    with locked(entry, str(entry), None):
        for v in versions(entry):
            if cur is not None and v == cur:
                continue
            real = os.path.realpath(v)
            if any(u == real or u.startswith(real + "/") for u in used):
                continue
            remove_tree(v)
            removed.append(v)
    return removed

"""Copy-up by hand into an overlay's upper directory, as the kernel would on a write (see
OverlayBackend.editable: a clone's /etc/hostname and /etc/hosts change without a mount)."""

from __future__ import annotations

import logging
import os
import stat

from ..config.atomic import write_all
from .tree import copy_dir_attrs, copy_file


def xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:          # ENODATA, or no xattrs on that filesystem
        return None


def copy_xattrs(src: str, dst: str) -> None:
    for name in os.listxattr(src, follow_symlinks=False):
        if name.startswith("trusted.overlay."):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=False)
        except OSError as e:
            logging.getLogger("lxpy.storage").debug("xattr %s of %s: %s", name, src, e)


def read_file(path: str) -> bytes:
    """A regular file's content (not through a symlink)."""
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
        return f.read()


def write_file(path: str, data: bytes, mode: int) -> None:
    """data as the new file path (not through a symlink), with mode's permission bits."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        write_all(fd, data)
        os.fchmod(fd, stat.S_IMODE(mode))
    finally:
        os.close(fd)


def copy_up(upper: str, lowers: list[str], rel: str, edit=None) -> bool:
    """Copy up rel's parent dirs and rel itself into upper as the kernel would: True when
    done (or nothing to do: rel is a new file in a merged dir), False when the layers
    hold anything this does not follow (whiteouts or non-dirs on the way, a whiteout
    or symlink at rel, redirects, metacopy, the xwhiteout flavour of opaque): the caller
    then mounts. Lookup as overlayfs does it: a name resolves in the topmost layer that
    has it; a directory merges with the directories of the same name below it, down to
    the first opaque one; a whiteout or non-directory below a directory is hidden.
    edit: called with the file's content when rel is a file in a lower layer; what it
    returns, unless None, is the copy's content instead (with the file's owner, mode and
    xattrs, and a new mtime)."""
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return False
    upper = os.fspath(upper)
    active = [upper, *map(os.fspath, lowers)]   # the layers whose dir here merge
    for i in range(len(parts)):
        sub = "/".join(parts[:i + 1])
        last = i == len(parts) - 1
        found: list[tuple[str, os.stat_result]] = []
        for layer in active:
            try:
                st = os.lstat(f"{layer}/{sub}")
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                if not found:
                    found.append((layer, st))
                break              # a non-dir (or whiteout) ends the lookup here
            found.append((layer, st))
            opaque = xattr(f"{layer}/{sub}", "trusted.overlay.opaque")
            if opaque not in (None, b"y") or \
                    xattr(f"{layer}/{sub}", "trusted.overlay.redirect") is not None:
                return False
            if opaque == b"y" or last:
                break
        if not found:
            return last            # a new file in an existing (merged) dir
        top, st = found[0]
        if last:
            if not stat.S_ISREG(st.st_mode) or any(
                    xattr(f"{top}/{sub}", x) is not None
                    for x in ("trusted.overlay.metacopy", "trusted.overlay.whiteout")):
                return False
            if top != upper:
                dst = f"{upper}/{sub}"
                data = None if edit is None else edit(read_file(f"{top}/{sub}"))
                if data is None:
                    copy_file(f"{top}/{sub}", dst)
                else:
                    write_file(dst, data, st.st_mode)
                os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
                os.chmod(dst, st.st_mode & 0o7777)
                copy_xattrs(f"{top}/{sub}", dst)
            return True
        if not stat.S_ISDIR(st.st_mode):
            return False           # a file or whiteout where a dir is needed
        if top != upper:
            os.mkdir(f"{upper}/{sub}")
            copy_dir_attrs(f"{top}/{sub}", f"{upper}/{sub}")
            copy_xattrs(f"{top}/{sub}", f"{upper}/{sub}")
        active = [layer for layer, _ in found]
        if top != upper:
            active.insert(0, upper)
    return True

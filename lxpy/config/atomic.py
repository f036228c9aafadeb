"""Atomic, fsynced replacement of a small file (a config.toml, a snapshot's meta): a temp
file beside it, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of data is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new(path: str | Path, text: str) -> None:
    """Replace path with text: written and fsynced beside it, then renamed over it (its
    mode kept; 0644 for a new file)."""
    path = os.path.normpath(os.fspath(path))
    parent, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=parent or ".")
    try:
        try:
            write_all(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

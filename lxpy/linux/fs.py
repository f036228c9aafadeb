"""openat2(2) with struct open_how and the RESOLVE_* flags, for path resolution that cannot
leave a directory (RESOLVE_IN_ROOT treats the dirfd as "/" for absolute symlinks and "..")."""

from __future__ import annotations

import ctypes
import os

from .fsops import AT_FDCWD
from .libc import cstr, syscall

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20

__all__ = ["AT_FDCWD", "RESOLVE_BENEATH", "RESOLVE_CACHED", "RESOLVE_IN_ROOT",
           "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_SYMLINKS", "RESOLVE_NO_XDEV", "have_openat2",
           "openat2", "read_to_eof"]


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str | os.PathLike | bytes, flags: int, mode: int = 0,
            resolve: int = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) -> int:
    """Open path relative to dirfd; returns a new fd (O_CLOEXEC is always added)."""
    how = OpenHow(flags | os.O_CLOEXEC, mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0,
                  resolve)
    return syscall("openat2", ctypes.c_int(dirfd), cstr(path), ctypes.byref(how),
                   ctypes.c_size_t(ctypes.sizeof(how)), path=path)


def have_openat2() -> bool:
    """True when this kernel (5.6+) has openat2."""
    try:
        fd = openat2(AT_FDCWD, "/", os.O_PATH | os.O_DIRECTORY, resolve=0)
    except OSError:
        return False
    os.close(fd)
    return True


def read_to_eof(fd: int) -> bytes:
    """All that fd gives until its writer closes it (a pipe)."""
    chunks = []
    while b := os.read(fd, 65536):
        chunks.append(b)
    return b"".join(chunks)

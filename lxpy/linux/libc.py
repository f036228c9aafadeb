"""libc loading and the one error helper every wrapper uses."""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)

# the syscall numbers are rawc's (openat2 needs them without the ctypes package)
from .rawc import _MACHINE, NR  # noqa: E402

libc.syscall.restype = ctypes.c_long


def check(ret: int, name: str, path: str | os.PathLike | None = None) -> int:
    """Raise OSError naming the syscall (and path) when ret is -1."""
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}(): {os.strerror(err)}",
                      None if path is None else os.fspath(path))
    return ret


def syscall(name: str, *args, path: str | os.PathLike | None = None) -> int:
    """Call a syscall by name through libc.syscall(NR_...)."""
    try:
        nr = NR[name]
    except KeyError:
        raise OSError(38, f"{name}(): not supported on {_MACHINE}") from None
    return check(libc.syscall(nr, *args), name, path)


def cstr(p: str | os.PathLike | bytes | None) -> bytes | None:
    if p is None:
        return None
    if isinstance(p, bytes):
        return p
    return os.fsencode(os.fspath(p))

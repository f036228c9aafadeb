"""libc loading, the syscall numbers for what libc may lack, and the one error helper every
wrapper uses."""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

_MACHINE = os.uname().machine
# Syscall numbers for what libc may lack: x86_64's, or aarch64's (the generic table); the
# newer ones are the same on both.
_NEWER = {"pidfd_open": 434, "pidfd_send_signal": 424, "open_tree": 428, "move_mount": 429,
          "fsopen": 430, "fsconfig": 431, "fsmount": 432, "mount_setattr": 442,
          "openat2": 437, "close_range": 436, "clone3": 435, "pidfd_getfd": 438}
if _MACHINE == "x86_64":
    NR = {"pivot_root": 155, "setns": 308, "unshare": 272, **_NEWER}
elif _MACHINE == "aarch64":
    NR = {"pivot_root": 41, "setns": 268, "unshare": 97, **_NEWER}
else:  # pragma: no cover - other architectures are not supported yet
    NR = {}


def check(ret: int, name: str, path: str | os.PathLike | bytes | None = None) -> int:
    """Raise OSError naming the syscall (and path) when ret is -1."""
    if ret == -1:
        err = ctypes.get_errno()
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        raise OSError(err, f"{name}(): {os.strerror(err)}",
                      None if path is None else os.fspath(path))
    return ret


def syscall(name: str, *args, path: str | os.PathLike | bytes | None = None) -> int:
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

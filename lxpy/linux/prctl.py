"""prctl(2) with the kernel's option names, and thin wrappers for the ones lxpy uses.

(PR_CAPBSET_* and PR_CAP_AMBIENT wrappers live in caps.py, PR_SET_SECCOMP in seccomp.py.)
"""

from __future__ import annotations

import ctypes

from .libc import check, libc

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_GET_NAME = 16
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_GET_SECUREBITS = 27
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

_ul = ctypes.c_ulong
libc.prctl.argtypes = [ctypes.c_int, _ul, _ul, _ul, _ul]
libc.prctl.restype = ctypes.c_int


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); raises OSError("prctl(): ...") on -1."""
    return check(libc.prctl(option, arg2, arg3, arg4, arg5), "prctl")


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def get_no_new_privs() -> bool:
    return bool(prctl(PR_GET_NO_NEW_PRIVS))


def set_child_subreaper(on: bool = True) -> None:
    prctl(PR_SET_CHILD_SUBREAPER, int(on))


def get_child_subreaper() -> bool:
    v = ctypes.c_int(0)
    check(libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(v), 0, 0, 0), "prctl")
    return bool(v.value)


def set_pdeathsig(sig: int) -> None:
    """Deliver sig to this process when its parent (thread) dies; 0 clears."""
    prctl(PR_SET_PDEATHSIG, int(sig))


def get_pdeathsig() -> int:
    v = ctypes.c_int(0)
    check(libc.prctl(PR_GET_PDEATHSIG, ctypes.addressof(v), 0, 0, 0), "prctl")
    return v.value


def set_name(name: str | bytes) -> None:
    """The thread's comm (15 bytes at most; longer names are cut)."""
    b = name if isinstance(name, bytes) else name.encode()
    buf = ctypes.create_string_buffer(b[:15], 16)
    check(libc.prctl(PR_SET_NAME, ctypes.addressof(buf), 0, 0, 0), "prctl")


def get_name() -> str:
    buf = ctypes.create_string_buffer(16)
    check(libc.prctl(PR_GET_NAME, ctypes.addressof(buf), 0, 0, 0), "prctl")
    return buf.value.decode(errors="replace")


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, int(on))


def set_keepcaps(on: bool) -> None:
    prctl(PR_SET_KEEPCAPS, int(on))

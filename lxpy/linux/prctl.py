"""prctl(2) with the kernel's option names, and thin wrappers for the ones lxpy uses; the
filesystem ids (setfsuid(2), setfsgid(2)) that go with its securebits.

(PR_CAPBSET_* and PR_CAP_AMBIENT wrappers live in caps.py, PR_SET_SECCOMP in seccomp.py.)
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

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

# securebits (linux/securebits.h)
SECBIT_NOROOT = 1 << 0
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_KEEP_CAPS = 1 << 4

_ul = ctypes.c_ulong
libc.prctl.argtypes = [ctypes.c_int, _ul, _ul, _ul, _ul]
libc.prctl.restype = ctypes.c_int
libc.setfsuid.argtypes = [ctypes.c_uint]
libc.setfsuid.restype = ctypes.c_int
libc.setfsgid.argtypes = [ctypes.c_uint]
libc.setfsgid.restype = ctypes.c_int


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


def get_securebits() -> int:
    return prctl(PR_GET_SECUREBITS)


def set_securebits(bits: int) -> None:
    prctl(PR_SET_SECUREBITS, bits)


def setfsuid(uid: int) -> int:
    """setfsuid(2): the previous fsuid. It reports no error: the change is checked by
    reading the fsuid back (a second call with an invalid id), OSError(EPERM) if refused."""
    old = libc.setfsuid(uid)
    if libc.setfsuid(0xFFFFFFFF) != uid:
        raise OSError(1, "setfsuid(): Operation not permitted", str(uid))
    return old


def setfsgid(gid: int) -> int:
    """setfsgid(2), checked as setfsuid() is."""
    old = libc.setfsgid(gid)
    if libc.setfsgid(0xFFFFFFFF) != gid:
        raise OSError(1, "setfsgid(): Operation not permitted", str(gid))
    return old


@contextmanager
def fs_ids(uid: int, gid: int) -> Iterator[None]:
    """Act on files as uid:gid (fsuid, fsgid, no supplementary groups) while keeping
    every capability (SECBIT_NO_SETUID_FIXUP: leaving fsuid 0 drops none); all restored
    afterwards. A mount made meanwhile records these as its mounter's credentials."""
    bits = get_securebits()
    groups = os.getgroups()
    set_securebits(bits | SECBIT_NO_SETUID_FIXUP)
    try:
        os.setgroups([])
        old_gid = setfsgid(gid)
        try:
            old_uid = setfsuid(uid)
            try:
                yield
            finally:
                setfsuid(old_uid)
        finally:
            setfsgid(old_gid)
            os.setgroups(groups)
    finally:
        set_securebits(bits)

"""renameat2(2), statfs(2) and openat2(2) through _ctypes, the C half of ctypes, without the
ctypes package: `import ctypes` is ~3 ms (it imports types and struct and defines some sixty
classes), and lxpy-copy -s, whose whole budget next to lxc-copy is ~19 ms, needs these three
calls only. Everything else goes through libc.py and ctypes as usual; fsops and fs re-export
these.

What is used of _ctypes is what ctypes/__init__.py itself builds on (CDLL and c_int are
a handle from dlopen and subclasses of CFuncPtr and _SimpleCData), unchanged since
Python 3.3."""

from __future__ import annotations

import os
import sys

import _ctypes


class _Int(_ctypes._SimpleCData):
    _type_ = "i"


class _Long(_ctypes._SimpleCData):
    _type_ = "l"


class _Char(_ctypes._SimpleCData):
    _type_ = "c"


class _Func(_ctypes.CFuncPtr):
    """A libc function returning int, keeping errno for get_errno (CDLL(use_errno=True))."""
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _LongFunc(_ctypes.CFuncPtr):
    """syscall(2): long syscall(long number, ...)."""
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Long


class _StatfsBuf(_ctypes.Array):
    """Room for struct statfs (120 bytes on 64-bit Linux), read as bytes."""
    _type_ = _Char
    _length_ = 256


_libc = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)
_renameat2 = _Func(_ctypes.dlsym(_libc, "renameat2"))
_statfs = _Func(_ctypes.dlsym(_libc, "statfs"))
_syscall = _LongFunc(_ctypes.dlsym(_libc, "syscall"))

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

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

# statfs f_type values (linux/magic.h)
BTRFS_SUPER_MAGIC = 0x9123683E
EXT4_SUPER_MAGIC = 0xEF53
XFS_SUPER_MAGIC = 0x58465342
TMPFS_MAGIC = 0x01021994
OVERLAYFS_SUPER_MAGIC = 0x794C7630

FS_NAMES = {BTRFS_SUPER_MAGIC: "btrfs", EXT4_SUPER_MAGIC: "ext4", XFS_SUPER_MAGIC: "xfs",
            TMPFS_MAGIC: "tmpfs", OVERLAYFS_SUPER_MAGIC: "overlay"}


def _fail(name: str, path) -> OSError:
    err = _ctypes.get_errno()
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    return OSError(err, f"{name}(): {os.strerror(err)}", os.fspath(path))


def renameat2(old: str | os.PathLike, new: str | os.PathLike, flags: int = 0) -> None:
    """rename(2) with flags: RENAME_NOREPLACE fails with EEXIST if new exists,
    RENAME_EXCHANGE swaps the two atomically."""
    if _renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) == -1:
        raise _fail("renameat2", new)


def statfs_type(path: str | os.PathLike) -> int:
    """The f_type magic of the filesystem holding path."""
    buf = _StatfsBuf()
    if _statfs(os.fsencode(path), buf) == -1:
        raise _fail("statfs", path)
    # f_type is the first field, a long (__fsword_t), in every Linux ABI lxpy runs on
    return int.from_bytes(buf.raw[:8], sys.byteorder) & 0xFFFFFFFF


def openat2(dirfd: int, path: str | os.PathLike | bytes, flags: int, mode: int,
            resolve: int) -> int:
    """openat2(2) with struct open_how {u64 flags, mode, resolve}: a new fd."""
    nr = NR.get("openat2")
    if nr is None:
        raise OSError(38, f"openat2(): not supported on {_MACHINE}", os.fsdecode(path))
    how = b"".join(v.to_bytes(8, sys.byteorder) for v in (flags, mode, resolve))
    fd = _syscall(_Long(nr), _Long(dirfd), os.fsencode(path), how, _Long(len(how)))
    if fd == -1:
        raise _fail("openat2", path)
    return fd

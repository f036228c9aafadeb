"""Filesystem operations the storage backends need: statfs(2) (which filesystem is this?),
renameat2(2) (RENAME_NOREPLACE, RENAME_EXCHANGE), FICLONE (reflink one file) and the btrfs
subvolume ioctls (BTRFS_IOC_SUBVOL_CREATE, BTRFS_IOC_SNAP_CREATE_V2, BTRFS_IOC_SNAP_DESTROY)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import stat
import struct
import tempfile

from .libc import check, cstr, libc

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

libc.renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint)
libc.statfs.argtypes = (ctypes.c_char_p, ctypes.c_void_p)


def renameat2(old: str | os.PathLike, new: str | os.PathLike, flags: int = 0) -> None:
    """rename(2) with flags: RENAME_NOREPLACE fails with EEXIST if new exists,
    RENAME_EXCHANGE swaps the two atomically."""
    check(libc.renameat2(AT_FDCWD, cstr(old), AT_FDCWD, cstr(new), flags), "renameat2", new)


def statfs_type(path: str | os.PathLike) -> int:
    """The f_type magic of the filesystem holding path."""
    buf = ctypes.create_string_buffer(256)      # room for struct statfs (120 bytes)
    check(libc.statfs(cstr(path), buf), "statfs", path)
    # f_type is the first field, a long (__fsword_t), in every Linux ABI lxpy runs on
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF

BTRFS_FIRST_FREE_OBJECTID = 256  # st_ino of a subvolume's root directory


def fs_name(path: str | os.PathLike) -> str:
    t = statfs_type(path)
    return FS_NAMES.get(t, hex(t))


def is_btrfs(path: str | os.PathLike) -> bool:
    return statfs_type(path) == BTRFS_SUPER_MAGIC


def is_btrfs_subvolume(path: str | os.PathLike) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_ino == BTRFS_FIRST_FREE_OBJECTID
            and is_btrfs(path))


def _ioc(direction: int, typ: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (typ << 8) | nr


_IOC_WRITE = 1
BTRFS_IOCTL_MAGIC = 0x94
BTRFS_PATH_NAME_MAX = 4087
BTRFS_SUBVOL_NAME_MAX = 4039
_VOL_ARGS_SIZE = 4096       # struct btrfs_ioctl_vol_args { __s64 fd; char name[4088]; }
_VOL_ARGS_V2_SIZE = 4096    # fd, transid, flags, unused[4], name[4040]
BTRFS_IOC_SNAP_CREATE = _ioc(_IOC_WRITE, BTRFS_IOCTL_MAGIC, 1, _VOL_ARGS_SIZE)
BTRFS_IOC_SUBVOL_CREATE = _ioc(_IOC_WRITE, BTRFS_IOCTL_MAGIC, 14, _VOL_ARGS_SIZE)
BTRFS_IOC_SNAP_DESTROY = _ioc(_IOC_WRITE, BTRFS_IOCTL_MAGIC, 15, _VOL_ARGS_SIZE)
BTRFS_IOC_SNAP_CREATE_V2 = _ioc(_IOC_WRITE, BTRFS_IOCTL_MAGIC, 23, _VOL_ARGS_V2_SIZE)
BTRFS_SUBVOL_RDONLY = 1 << 1
FICLONE = _ioc(_IOC_WRITE, 0x94, 9, 4)


def _name_arg(name: str, limit: int) -> bytes:
    b = os.fsencode(name)
    if b"/" in b or not b or len(b) > limit:
        raise OSError(22, f"btrfs: bad subvolume name {name!r}")
    return b


def _dirfd(path: str | os.PathLike) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _ioctl_in_parent(path: str | os.PathLike, request: int, name: str, args) -> None:
    """ioctl(request) on the directory that holds path; a failure names the call and path."""
    fd = _dirfd(os.path.dirname(os.path.abspath(path)))
    try:
        fcntl.ioctl(fd, request, args, True)
    except OSError as e:
        raise OSError(e.errno, f"ioctl({name}): {os.strerror(e.errno)}",
                      os.fspath(path)) from None
    finally:
        os.close(fd)


def _vol_args(path: str | os.PathLike) -> bytearray:
    """struct btrfs_ioctl_vol_args naming path's last component."""
    name = os.path.basename(os.path.abspath(path))
    return bytearray(struct.pack("q4088s", 0, _name_arg(name, BTRFS_PATH_NAME_MAX)))


def btrfs_subvol_create(path: str | os.PathLike) -> None:
    """Create a new, empty subvolume at path (its parent must exist)."""
    _ioctl_in_parent(path, BTRFS_IOC_SUBVOL_CREATE, "BTRFS_IOC_SUBVOL_CREATE", _vol_args(path))


def btrfs_snapshot(source: str | os.PathLike, dest: str | os.PathLike,
                   readonly: bool = False) -> None:
    """Snapshot the subvolume source as dest (same filesystem, dest must not exist)."""
    name = os.path.basename(os.path.abspath(dest))
    src = _dirfd(source)
    try:
        args = bytearray(struct.pack("qQQ32s4040s", src, 0,
                                     BTRFS_SUBVOL_RDONLY if readonly else 0,
                                     b"", _name_arg(name, BTRFS_SUBVOL_NAME_MAX)))
        _ioctl_in_parent(dest, BTRFS_IOC_SNAP_CREATE_V2, "BTRFS_IOC_SNAP_CREATE_V2", args)
    finally:
        os.close(src)


def btrfs_subvol_delete(path: str | os.PathLike) -> None:
    """Delete the subvolume at path, with its contents (not the subvolumes nested in it)."""
    _ioctl_in_parent(path, BTRFS_IOC_SNAP_DESTROY, "BTRFS_IOC_SNAP_DESTROY", _vol_args(path))


def ficlone(src_fd: int, dst_fd: int) -> None:
    """Make dst share src's extents (reflink); EOPNOTSUPP/EXDEV where the fs cannot."""
    fcntl.ioctl(dst_fd, FICLONE, src_fd)


def reflink_works(directory: str | os.PathLike) -> bool:
    """True when files in directory can be reflinked (btrfs, xfs with reflink=1...)."""
    try:
        with tempfile.TemporaryFile(dir=directory) as a, tempfile.TemporaryFile(dir=directory) as b:
            a.write(b"x")
            a.flush()
            ficlone(a.fileno(), b.fileno())
        return True
    except OSError:
        return False

"""mount(2), umount2(2), pivot_root(2) and the new mount API (open_tree, move_mount,
mount_setattr), with the kernel's constant names."""

from __future__ import annotations

import ctypes
import os

from .libc import check, cstr, libc, syscall

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# open_tree / move_mount / mount_setattr
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x100000

# Mount option words as mount(8) spells them -> (flag, clear?)
FLAG_WORDS = {
    "ro": (MS_RDONLY, False), "rw": (MS_RDONLY, True),
    "nosuid": (MS_NOSUID, False), "suid": (MS_NOSUID, True),
    "nodev": (MS_NODEV, False), "dev": (MS_NODEV, True),
    "noexec": (MS_NOEXEC, False), "exec": (MS_NOEXEC, True),
    "sync": (MS_SYNCHRONOUS, False), "async": (MS_SYNCHRONOUS, True),
    "dirsync": (MS_DIRSYNC, False),
    "noatime": (MS_NOATIME, False), "atime": (MS_NOATIME, True),
    "nodiratime": (MS_NODIRATIME, False), "diratime": (MS_NODIRATIME, True),
    "relatime": (MS_RELATIME, False), "norelatime": (MS_RELATIME, True),
    "strictatime": (MS_STRICTATIME, False), "lazytime": (MS_LAZYTIME, False),
    "bind": (MS_BIND, False), "rbind": (MS_BIND | MS_REC, False),
    "private": (MS_PRIVATE, False), "rprivate": (MS_PRIVATE | MS_REC, False),
    "slave": (MS_SLAVE, False), "rslave": (MS_SLAVE | MS_REC, False),
    "shared": (MS_SHARED, False), "rshared": (MS_SHARED | MS_REC, False),
}


# lxpy's own mount option words, not the kernel's: parse_options() drops them
#   noidmap: a bind mount in an unprivileged container keeps the host's ids as they are
#            (not idmapped; meaningless in a privileged container)
LXPY_WORDS = frozenset({"noidmap"})


class mount_attr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.mount.restype = ctypes.c_int
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.umount2.restype = ctypes.c_int


def parse_options(options: list[str] | tuple[str, ...]) -> tuple[int, str]:
    """Split mount(8)-style words into (flags, data string); lxpy's own words
    (LXPY_WORDS) are neither."""
    flags = 0
    data: list[str] = []
    for word in options:
        if word in LXPY_WORDS:
            continue
        if word in FLAG_WORDS:
            bit, clear = FLAG_WORDS[word]
            flags = flags & ~bit if clear else flags | bit
        else:
            data.append(word)
    return flags, ",".join(data)


def mount(source: str | os.PathLike | None, target: str | os.PathLike, fstype: str | None = None,
          flags: int = 0, data: str | None = None) -> None:
    ret = libc.mount(cstr(source), cstr(target), cstr(fstype), flags, cstr(data) if data else None)
    check(ret, "mount", target)


def umount2(target: str | os.PathLike, flags: int = 0) -> None:
    check(libc.umount2(cstr(target), flags), "umount2", target)


def umount(target: str | os.PathLike, lazy: bool = False) -> None:
    umount2(target, MNT_DETACH if lazy else 0)


def pivot_root(new_root: str | os.PathLike, put_old: str | os.PathLike) -> None:
    syscall("pivot_root", cstr(new_root), cstr(put_old), path=new_root)


def open_tree(path: str | os.PathLike, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
              dfd: int = AT_FDCWD) -> int:
    return syscall("open_tree", dfd, cstr(path), flags, path=path)


def move_mount(from_fd: int, to_path: str | os.PathLike, *, from_path: str = "",
               to_dfd: int = AT_FDCWD, flags: int = MOVE_MOUNT_F_EMPTY_PATH) -> None:
    syscall("move_mount", from_fd, cstr(from_path), to_dfd, cstr(to_path), flags, path=to_path)


def mount_setattr(fd: int, attr_set: int = 0, attr_clr: int = 0, userns_fd: int = 0,
                  path: str = "", flags: int = AT_EMPTY_PATH) -> None:
    attr = mount_attr(attr_set, attr_clr, 0, userns_fd)
    syscall("mount_setattr", fd, cstr(path), flags, ctypes.byref(attr), ctypes.sizeof(attr),
            path=path or None)


def is_mountpoint(path: str | os.PathLike) -> bool:
    """True when path is the root of a mount, read from /proc/self/mountinfo."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split(b" ", 5)[4].decode("unicode_escape")
            if mp == target:
                return True
    return False


def mounts_under(path: str | os.PathLike) -> list[str]:
    """Mount points at or below path, deepest first (the order to unmount them)."""
    target = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split(b" ", 5)[4].decode("unicode_escape")
            if mp == target or mp.startswith(target.rstrip("/") + "/"):
                found.append(mp)
    return sorted(found, key=lambda m: m.count("/"), reverse=True)

"""Namespaces: unshare(2), setns(2), sethostname(2), with the kernel's constant names."""

from __future__ import annotations

import ctypes
import os

from .libc import check, libc

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# config names (namespaces.create) -> flag, and the /proc/PID/ns/ file name
FLAGS = {
    "mnt": CLONE_NEWNS, "pid": CLONE_NEWPID, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC,
    "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP, "user": CLONE_NEWUSER,
    "time": CLONE_NEWTIME,
}
PROC_NAMES = {"mnt": "mnt", "pid": "pid", "uts": "uts", "ipc": "ipc", "net": "net",
              "cgroup": "cgroup", "user": "user", "time": "time"}

libc.unshare.argtypes = [ctypes.c_int]
libc.unshare.restype = ctypes.c_int
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.setns.restype = ctypes.c_int
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.sethostname.restype = ctypes.c_int
libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.setdomainname.restype = ctypes.c_int


def flags_of(names) -> int:
    f = 0
    for n in names:
        f |= FLAGS[n]
    return f


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """fd: a /proc/PID/ns/* file or (kernel 5.8+) a pidfd with several CLONE_NEW* bits."""
    check(libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    b = name.encode()
    check(libc.sethostname(b, len(b)), "sethostname")


def setdomainname(name: str) -> None:
    b = name.encode()
    check(libc.setdomainname(b, len(b)), "setdomainname")


def same_ns(pid: int, ns: str, other: int | str = "self") -> bool:
    """True when pid and other share the namespace ns (compares /proc/*/ns inodes)."""
    a = os.stat(f"/proc/{pid}/ns/{PROC_NAMES[ns]}")
    b = os.stat(f"/proc/{other}/ns/{PROC_NAMES[ns]}")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

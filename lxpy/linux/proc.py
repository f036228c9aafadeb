"""Process helpers: prctl(2), process identity (pid + start time), inotify(7).

pidfd_open/pidfd_send_signal come from the standard library (os.pidfd_open,
signal.pidfd_send_signal); this module holds what it lacks."""

from __future__ import annotations

import ctypes
import os
import struct

from .libc import check, cstr, libc

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
libc.prctl.restype = ctypes.c_int


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return check(libc.prctl(option, arg2, arg3, arg4, arg5), "prctl")


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_name(name: str) -> None:
    """The thread name (comm) shown by ps/top, 15 bytes at most."""
    libc.prctl(PR_SET_NAME, ctypes.cast(ctypes.c_char_p(name.encode()[:15]), ctypes.c_void_p)
               .value or 0, 0, 0, 0)


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


# -- inotify -----------------------------------------------------------------------------

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

libc.inotify_init1.argtypes = [ctypes.c_int]
libc.inotify_init1.restype = ctypes.c_int
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
libc.inotify_add_watch.restype = ctypes.c_int


def inotify_init(flags: int = IN_CLOEXEC) -> int:
    return check(libc.inotify_init1(flags), "inotify_init1")


def inotify_add_watch(fd: int, path: str | os.PathLike, mask: int) -> int:
    return check(libc.inotify_add_watch(fd, cstr(path), mask), "inotify_add_watch", path)


def inotify_read(fd: int) -> list[tuple[int, int, str]]:
    """Read pending events: (wd, mask, name)."""
    data = os.read(fd, 65536)
    out = []
    i = 0
    while i + 16 <= len(data):
        wd, mask, _cookie, ln = struct.unpack_from("iIII", data, i)
        name = data[i + 16:i + 16 + ln].split(b"\0", 1)[0].decode(errors="replace")
        out.append((wd, mask, name))
        i += 16 + ln
    return out

"""Process helpers: prctl(2), process identity (pid + start time), inotify(7), a fork
born in a cgroup (clone3 with CLONE_INTO_CGROUP).

pidfd_open/pidfd_send_signal come from the standard library (os.pidfd_open,
signal.pidfd_send_signal); this module holds what it lacks."""

from __future__ import annotations

import ctypes
import os
import struct

from .libc import NR, check, cstr, libc

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


# -- fork into a cgroup ------------------------------------------------------------------

CLONE_INTO_CGROUP = 0x200000000


class _CloneArgs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


_clone3 = None


def fork_into_cgroup(cgroup_fd: int) -> int:
    """os.fork(), with the child born in the cgroup2 cgroup open as cgroup_fd (clone3 with
    CLONE_INTO_CGROUP, Linux >= 5.7): 0 in the child, its pid in the parent.

    Why: writing a pid to cgroup.procs takes the kernel's global threadgroup rwsem for
    writing, whose rcu_sync costs an RCU grace period on the first move (8-15 ms measured
    here, once per command); a child born in its cgroup only takes it for reading.
    As os.fork does: PyOS_BeforeFork, the syscall with the GIL held (a PyDLL function),
    then PyOS_AfterFork_Child/Parent (locks re-made, os.register_at_fork hooks run).
    The caller must have one thread (glibc's own fork bookkeeping is skipped: only what a
    single-threaded child that execs or exits soon needs is right).
    Raises OSError: ENOSYS (old kernel), EBUSY (a cgroup with controllers enabled below
    it), EOPNOTSUPP, EINVAL, EAGAIN/ENOMEM as fork."""
    global _clone3
    if _clone3 is None:
        f = ctypes.PyDLL(None, use_errno=True).syscall
        f.restype = ctypes.c_long
        f.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t]
        _clone3 = f
    nr = NR.get("clone3")
    if nr is None:
        raise OSError(38, "clone3(): not supported on this architecture")
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=17, cgroup=cgroup_fd)  # SIGCHLD
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _clone3(nr, ctypes.addressof(args), ctypes.sizeof(args))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone3(): {os.strerror(err)}")
    return pid

"""Joining cgroups without the kernel's slow path, for the runtime's own processes.

Writing a pid to cgroup.procs takes the kernel's global cgroup_threadgroup_rwsem for
writing; its rcu_sync costs an RCU grace period on a first move (8-15 ms measured on these
hosts, on every command that moves a process: attach, start, execute). Two ways around it,
both measured at 0.1-1.5 ms:
- cgroup2: a child born in its cgroup (clone3 CLONE_INTO_CGROUP, linux.proc.fork_into_cgroup);
- cgroup v1: "0" written to `tasks` moves the calling thread only, under no global lock;
  for a process with one thread (a fresh fork) that is the whole process.
Only os is imported here: lxpy-start, the monitor and the namespace helper use it.
"""

from __future__ import annotations

import os


def fork_into(d: str) -> int | None:
    """fork(), the child born in the cgroup2 directory d (clone3 CLONE_INTO_CGROUP, see
    linux.proc.fork_into_cgroup): its pid (0 in the child). None, having forked nothing,
    when that cannot be done: d is gone or not a leaf (ENOENT, EBUSY, EOPNOTSUPP), or the
    kernel refuses (ENOSYS before Linux 5.7, EINVAL, EPERM). EAGAIN and ENOMEM raise, as
    fork's would."""
    from ..linux.proc import fork_into_cgroup  # monitor path: ctypes only when it forks
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return fork_into_cgroup(fd)
    except OSError as e:
        if e.errno in (11, 12):     # EAGAIN, ENOMEM
            raise
        return None
    finally:
        os.close(fd)


def fork_payload(d: str) -> tuple[int, str]:
    """fork() for the namespace helper: on a host with cgroup2, the child is born in the
    payload cgroup there (d, "" for none). (pid, the cgroup2 directory it was born in or "")."""
    pid = fork_into(d) if d else None
    return (os.fork(), "") if pid is None else (pid, d)


def join_self(d: str) -> None:
    """Move this process into cgroup directory d. On cgroup v1, and when this process has
    one thread (a fresh fork always has), "0" written to `tasks` moves the calling thread
    without the global lock a cgroup.procs write takes; cgroup2 has no `tasks`."""
    try:
        if len(os.listdir("/proc/self/task")) != 1:
            raise FileNotFoundError
        fd = os.open(f"{d}/tasks", os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(f"{d}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)

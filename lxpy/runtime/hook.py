"""Running a hook: one shell command, waited for (the monitor's hooks and PID 1's)."""

from __future__ import annotations

import os


def run_shell(cmd: str, env: dict) -> int:
    """Run cmd with /bin/sh -c in env; its exit code (127 when sh cannot be run)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execve("/bin/sh", ["/bin/sh", "-c", cmd], env)
        finally:
            os._exit(127)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st)

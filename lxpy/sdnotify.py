"""sd_notify(3) without libsystemd: tell systemd about readiness and status.

Under a `Type=notify` unit systemd sets $NOTIFY_SOCKET to a datagram socket (a path, or an
abstract name written with a leading "@"). Each message is newline-separated KEY=VALUE
assignments: READY=1, STATUS=..., STOPPING=1, RELOADING=1, MAINPID=N, EXTEND_TIMEOUT_USEC=N.
When $NOTIFY_SOCKET is unset nothing is sent and every call returns False, so callers do not
need to know whether they run under systemd.

Who calls what (lxpy@.service runs `lxpy-start -F -n NAME`, NotifyAccess=main: the monitor
is the main process):
    notify(status="starting web1")                      while the start sequence runs
    notify(ready=True, status="web1 running (init pid 1234)")   once the container's init runs
    notify(stopping=True, status="stopping web1", extend_timeout=stop_timeout + 30)
The container's init never inherits $NOTIFY_SOCKET: its environment is built from the config
(runtime/start.py `_env`); `clean_environ()` is there for callers that pass one on.
"""

from __future__ import annotations

import os
import socket

ENV = "NOTIFY_SOCKET"


def socket_address(environ: dict[str, str] | None = None) -> str | bytes | None:
    """The address to send to, or None when not under systemd (or the variable is unusable)."""
    value = (os.environ if environ is None else environ).get(ENV, "")
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()       # abstract namespace
    if value.startswith("/"):
        return value
    return None     # vsock: addresses and other forms lxpy does not need


def under_systemd() -> bool:
    return socket_address() is not None


def send(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send one raw notification. True if it was sent; False when not under systemd.

    A socket that exists but refuses the message (systemd gone, permissions) is not an error
    for the caller: containers keep running whatever happens to the service manager.
    """
    addr = socket_address(environ)
    if addr is None or not message:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError:
        return False
    return True


def format_message(*, ready: bool = False, stopping: bool = False, reloading: bool = False,
                   status: str | None = None, mainpid: int | None = None,
                   extend_timeout: float | None = None, errno: int | None = None) -> str:
    lines = []
    if ready:
        lines.append("READY=1")
    if reloading:
        lines.append("RELOADING=1")
    if stopping:
        lines.append("STOPPING=1")
    if mainpid is not None:
        lines.append(f"MAINPID={int(mainpid)}")
    if extend_timeout is not None:
        lines.append(f"EXTEND_TIMEOUT_USEC={max(0, int(extend_timeout * 1_000_000))}")
    if errno is not None:
        lines.append(f"ERRNO={int(errno)}")
    if status is not None:
        # STATUS is one line: newlines would start a new (bogus) assignment.
        lines.append("STATUS=" + " ".join(status.splitlines()))
    return "\n".join(lines)


def notify(*, ready: bool = False, stopping: bool = False, reloading: bool = False,
           status: str | None = None, mainpid: int | None = None,
           extend_timeout: float | None = None, errno: int | None = None) -> bool:
    """Tell systemd about the service; a no-op (False) when not under systemd.

    extend_timeout: seconds; asks systemd to allow that much more time for the current
    start or stop (use it at stop with the container's init.stop_timeout plus a margin).
    """
    return send(format_message(ready=ready, stopping=stopping, reloading=reloading,
                               status=status, mainpid=mainpid, extend_timeout=extend_timeout,
                               errno=errno))


def clean_environ(environ: dict[str, str]) -> dict[str, str]:
    """A copy of environ without the variables systemd sets for the service itself
    (a container's init must not notify or log as the host's unit)."""
    drop = {ENV, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC",
            "INVOCATION_ID", "JOURNAL_STREAM", "MANAGERPID", "SYSTEMD_EXEC_PID"}
    return {k: v for k, v in environ.items() if k not in drop}

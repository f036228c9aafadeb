"""The guest's own readiness, learnt as systemd-nspawn --notify-ready learns it.

The monitor owns a datagram socket, <run_dir>/notify (SO_PASSCRED). When the container's
init is systemd, PID 1 of the container bind-mounts that socket at /run/host/notify (on a
tmpfs /run it mounts first, as nspawn does, so systemd keeps it) and execs init with
NOTIFY_SOCKET=/run/host/notify -- in init's environment only: systemd does not pass it on to
its services. systemd sends READY=1 (and STATUS=...) there once the boot is done
(is-system-running would say running or degraded), STOPPING=1 when it shuts down.

The monitor takes messages only from the container's init (the sender's pid, which the
kernel translates into the monitor's pid namespace, must be init's) and records them in the
container's state file: notify=1 (init was given the socket), ready=0|1, status=... (see
Monitor.set_state). `lxpy-wait -s READY` waits for ready=1 on the monitor's subscription.

Inits that are not systemd (busybox, an admin's script) get nothing: no /run mount, no
variable. An admin who sets NOTIFY_SOCKET in [environment] keeps their value (an empty one
turns this off).

Used by the monitor (Listener, lean imports: _socket only) and by the container's PID 1
(open_for_guest before pivot_root, mount_in_guest after).
"""

from __future__ import annotations

import _socket as socket
import os
import sys

SOCKET_NAME = "notify"              # in the run dir
GUEST_DIR = "/run/host"
GUEST_PATH = "/run/host/notify"     # where systemd-nspawn puts it too
ENV = "NOTIFY_SOCKET"
_UCRED = 12                         # struct ucred: pid, uid, gid (3 x int32)


class Listener:
    """The monitor's end: one non-blocking SOCK_DGRAM socket in the run dir."""

    def __init__(self, run_dir: str, owner: tuple[int, int] | None = None, fd: int = -1):
        """Bind <run_dir>/notify, or (fd) take over the socket another process bound there
        (lxpy-start binds it before it forks the container, see start._prefork)."""
        self.path = os.path.join(run_dir, SOCKET_NAME)
        if fd >= 0:
            self.sock = socket.socket(fileno=fd)
            os.set_inheritable(fd, False)
            self.sock.setblocking(False)
            self.fd = fd
            self.pid = 0
            self.ready = False
            self.status = ""
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC |
                          socket.SOCK_NONBLOCK)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            s.bind(self.path)
            os.chmod(self.path, 0o600)
            if owner:           # the container's root must be able to send (write) to it
                os.chown(self.path, owner[0], owner[1])
        except BaseException:
            s.close()
            raise
        self.sock = s
        self.fd = s.fileno()
        self.pid = 0            # the init that was given the socket (0: none was)
        self.ready = False
        self.status = ""

    def started(self, init_pid: int) -> None:
        """A new init runs: did PID 1 give it the socket? (its initial environment tells)"""
        if init_pid == self.pid:
            return
        self.ready = False
        self.status = ""
        self.pid = 0
        try:
            with open(f"/proc/{init_pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            return
        if f"{ENV}={GUEST_PATH}".encode() in env:
            self.pid = init_pid

    def stopped(self) -> None:
        self.pid = 0
        self.ready = False
        self.status = ""

    def receive(self) -> bool:
        """Read what is queued; True when ready or status changed."""
        changed = False
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(
                    4096, socket.CMSG_SPACE(_UCRED))
            except (BlockingIOError, InterruptedError):
                return changed
            except OSError:
                return changed
            pid = 0
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and \
                        len(cdata) >= _UCRED:
                    pid = int.from_bytes(cdata[:4], sys.byteorder, signed=True)
            if not self.pid or pid != self.pid:
                continue            # not from the container's init: ignored (as nspawn does)
            for key, value in parse(data).items():
                if key == "READY" and value == "1" and not self.ready:
                    self.ready = changed = True
                elif key == "STOPPING" and value == "1" and self.ready:
                    self.ready = False
                    changed = True
                elif key == "STATUS" and value != self.status:
                    self.status = value
                    changed = True

    def fields(self) -> dict[str, str]:
        """What goes into the state file and the monitor's state messages."""
        return {"notify": "1" if self.pid else "0", "ready": "1" if self.ready else "0",
                "status": self.status}

    def close(self) -> None:
        self.sock.close()


def parse(data: bytes) -> dict[str, str]:
    """sd_notify's datagram: newline-separated KEY=VALUE (the last of a key wins)."""
    out = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            out[key] = value.replace("\r", " ").replace("\t", " ")[:200]
    return out


# -- the container's side (its PID 1, before exec) ---------------------------------------

def open_for_guest(path: str) -> int:
    """Before pivot_root: a detached bind mount of the monitor's socket, or -1."""
    import encodings.unicode_escape  # noqa: F401 - is_mountpoint needs it after pivot_root

    from ..linux import mount as m  # PID 1 path: ctypes stays out of the monitor
    try:
        return m.open_tree(path)
    except OSError:
        return -1       # readiness is a nicety: without it the container still starts


def wants_notify(cmd: list[str], env: dict) -> bool:
    """True when init is systemd (after pivot_root: symlinks resolve in the container)."""
    if ENV in env:      # the admin's [environment] decides
        return False
    exe = cmd[0] if cmd else ""
    if "/" not in exe:
        for d in env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
            if d and os.path.exists(os.path.join(d, exe)):
                exe = os.path.join(d, exe)
                break
    return os.path.basename(os.path.realpath(exe)) == "systemd"


def mount_in_guest(fd: int, cmd: list[str], env: dict) -> dict[str, str]:
    """After pivot_root: /run (a tmpfs, unless it is mounted already) and the socket at
    /run/host/notify. Returns what to add to init's environment. Closes fd."""
    if fd < 0:
        return {}
    from ..linux import mount as m  # PID 1 path: ctypes stays out of the monitor
    try:
        if not wants_notify(cmd, env):
            return {}
        os.makedirs("/run", 0o755, exist_ok=True)
        if not m.is_mountpoint("/run"):
            # what systemd would mount itself (mount-setup.c), so it keeps this one
            m.mount("tmpfs", "/run", "tmpfs", m.MS_NOSUID | m.MS_NODEV | m.MS_STRICTATIME,
                    "mode=755,size=20%,nr_inodes=800k")
        os.makedirs(GUEST_DIR, 0o755, exist_ok=True)
        os.close(os.open(GUEST_PATH, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        m.move_mount(fd, GUEST_PATH)
        return {ENV: GUEST_PATH}
    except OSError as e:     # the container boots all the same, only without READY
        os.write(2, f"lxpy: no readiness notification: {e.strerror}: {e.filename}\n".encode())
        return {}
    finally:
        os.close(fd)

"""lxpy-stop: ask the monitor to stop (or reboot) the container, and wait for it to go.

If the monitor is gone (SIGKILLed), the container is stopped from here: init is killed
through a pidfd (which takes its whole pid namespace with it), the cgroup is killed and
removed, and the run dir is cleaned.
"""

from __future__ import annotations

import os
import select

try:  # the C module: the signal wrapper imports enum (~3 ms of every lxpy-stop)
    import _signal as signal
except ImportError:  # pragma: no cover - another Python implementation
    import signal  # type: ignore[no-redef]

from .. import cgroups
from ..config.signals import parse_signal
from ..errors import LockBusy, NotRunning, StateError
from . import proto, state
from .cleanup import cleanup_stale, take_lock


def stop(container, timeout: float | None = None, kill: bool = False, wait: bool = True,
         reboot: bool = False) -> None:
    """Raises NotRunning when the container was not running."""
    info = state.query(container)
    if info.state == "STOPPED":
        if info.stale:
            # debris of a dead monitor; under the lock, as a start may be setting up
            lock = _lock(container, "is starting", "try again in a moment")
            try:
                info = state.query(container)
                if info.state == "STOPPED":
                    cleanup_stale(container, info)
            finally:
                os.close(lock)
            if info.state != "STOPPED":
                return stop(container, timeout, kill, wait, reboot)
        raise NotRunning(f"container {container.name!r} is not running")
    if not info.monitor_alive:
        if reboot:
            raise StateError(f"container {container.name!r} has lost its monitor; it cannot be "
                             "rebooted", "lxpy-stop it, then lxpy-start it")
        _stop_orphan(container, info, timeout, kill)
        return
    try:
        done = _ask_monitor(container.name, str(container.run_dir), timeout, kill, wait, reboot)
    except (FileNotFoundError, ConnectionRefusedError):
        # The monitor exited between the query and now.
        if state.query(container).state == "STOPPED":
            raise NotRunning(f"container {container.name!r} is not running") from None
        raise
    if not done:
        # The monitor went away without an answer: it died (killed, or its exec failed
        # right after lxpy-start reported) while init still runs: stopped from here.
        _stop_orphan(container, state.query(container), timeout, kill)


def _ask_monitor(name: str, run_dir: str, timeout: float | None, kill: bool, wait: bool,
                 reboot: bool) -> bool:
    """Send stop (or reboot) to the monitor and, with wait, stay until it exits. False when
    it closed the connection without an answer and init still runs without it."""
    # timeout None: the monitor uses init.stop_timeout from its plan (no config load here).
    # A monitor still in the start handshake (30 s at most) answers once it is done.
    s, (kind, msg) = proto.request(os.path.join(run_dir, state.SOCKET),
                                   "reboot" if reboot else "stop", io_timeout=45,
                                   **({} if reboot else {
                                       "timeout": "" if timeout is None else timeout,
                                       "kill": int(kill)}))
    try:
        if kind == "error":
            raise StateError(f"container {name!r}: {msg.get('message')}")
        if kind != "ok":
            if kind == "eof":
                # It exited (the container stopped meanwhile), or it died.
                info = state.query_dir(run_dir)
                return info.state == "STOPPED" or info.monitor_alive or reboot
            raise StateError(f"container {name!r}: unexpected answer {kind!r}")
        if not wait or reboot:
            return True
        # The monitor closes the connection when it exits, after its clean-up.
        s.settimeout(None)
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
    finally:
        s.close()
    return True


def _lock(container, what: str, hint: str) -> int:
    try:
        return take_lock(container, "busy")
    except LockBusy:
        raise StateError(f"container {container.name!r} {what}", hint) from None


def _stop_orphan(container, info: state.StateInfo, timeout: float | None, kill: bool) -> None:
    lock = _lock(container, "is busy", "another lxpy command is starting or stopping it")
    try:
        pid = info.pid
        fd = -1
        try:
            fd = os.pidfd_open(pid) if pid else -1
        except ProcessLookupError:
            fd = -1
        if fd >= 0:
            if not kill and timeout != 0:
                try:
                    sig = int(info.extra.get("halt_signal") or 0) or _halt_signal(container)
                    signal.pidfd_send_signal(fd, sig)
                except OSError:
                    pass
                if not _wait_fd(fd, 60.0 if timeout is None else timeout):
                    kill = True
            else:
                kill = True
            if kill:
                _kill_cgroup(info)
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except OSError:
                    pass
                _wait_fd(fd, 30.0)
            os.close(fd)
        # init is gone: what is left in the cgroup dies, then the debris goes.
        cleanup_stale(container)
    finally:
        os.close(lock)


def _halt_signal(container) -> int:
    try:
        return parse_signal(container.config.init.halt_signal)
    except Exception:  # noqa: BLE001
        return signal.SIGRTMIN + 3


def _kill_cgroup(info: state.StateInfo) -> None:
    if not info.cgroup:
        return
    try:
        cgroups.driver().open(info.cgroup).kill()
    except Exception:  # noqa: BLE001 - best effort, init's SIGKILL follows
        pass


def _wait_fd(fd: int, timeout: float) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(int(timeout * 1000)))


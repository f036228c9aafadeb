"""lxpy-wait: block until a container reaches one of some states, without polling.

While a monitor runs, we subscribe on its socket (it pushes every transition and closes
the connection when it exits). Without a monitor, inotify on the run dir's parent tells
when one appears.

READY is not a state of the monitor's but of the guest's: its systemd reported READY=1 on
the notify socket (runtime/notify.py); the monitor pushes that as ready=1 in a state message.
"""

from __future__ import annotations

import os
import select
import time

from ..errors import StateError, UsageError
from ..linux import proc
from . import proto, state

READY = "READY"


def parse_states(spec: str) -> set[str]:
    want = {s.strip().upper() for s in spec.split("|") if s.strip()}
    bad = want - set(state.STATES) - {READY}
    if not want or bad:
        raise UsageError(f"-s {spec!r}: {', '.join(sorted(bad)) or 'no state'} is not a state",
                         "use " + "|".join(state.STATES + (READY,)))
    return want


def _reached(fields: dict, states: set[str]) -> bool:
    st = fields.get("state")
    return st in states or (READY in states and fields.get("ready") == "1" and
                            st not in (None, "STOPPED"))     # not a dead monitor's word


class NoReadiness(StateError):
    """The container's init does not report readiness (it is not systemd)."""


def _no_readiness(container, fields: dict, states: set[str]) -> None:
    """Waiting for READY (and not for RUNNING) on a running guest whose init was not given
    the socket (not systemd) would never end: say so."""
    if READY in states and "RUNNING" not in states and fields.get("state") == "RUNNING" \
            and fields.get("notify") == "0":
        raise NoReadiness(f"container {container.name!r}: its init does not report readiness "
                         "(only systemd is given a notify socket)",
                         "wait for RUNNING instead")


def wait(container, states: set[str], timeout: float | None) -> bool:
    """True when the container reached one of states, False on timeout."""
    deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
    rd = container.run_dir
    parent = rd.parent
    ino = proc.inotify_init(proc.IN_CLOEXEC | proc.IN_NONBLOCK)
    try:
        while True:
            watch = parent
            while not watch.is_dir() and watch != watch.parent:
                watch = watch.parent
            proc.inotify_add_watch(ino, watch, proc.IN_CREATE | proc.IN_DELETE |
                                   proc.IN_MOVED_TO | proc.IN_ONLYDIR)
            if rd.is_dir():
                try:
                    proc.inotify_add_watch(ino, rd, proc.IN_CREATE | proc.IN_MOVED_TO |
                                           proc.IN_DELETE | proc.IN_ONLYDIR)
                except OSError:
                    pass
            info = state.query(container)
            if _reached({**info.extra, "state": info.state}, states):
                return True
            if info.monitor_alive:
                _no_readiness(container, {**info.extra, "state": info.state}, states)
                got = _subscribe(container, states, deadline)
                if got is not None:
                    return got
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            p = select.poll()
            p.register(ino, select.POLLIN)
            if p.poll(None if left is None else int(left * 1000) + 1):
                try:
                    proc.inotify_read(ino)
                except BlockingIOError:
                    pass
    finally:
        os.close(ino)


def _subscribe(container, states: set[str], deadline: float | None) -> bool | None:
    """Follow the monitor's transitions. None: the monitor went away (look again)."""
    try:
        s, (kind, msg) = proto.request(str(container.run_dir / state.SOCKET), "subscribe")
    except OSError:
        return None
    try:
        if kind == "state" and _reached(msg, states):
            return True
        if kind == "state":
            _no_readiness(container, msg, states)
        reader = s.reader
        for k, m in reader.pending:
            if k == "state" and _reached(m, states):
                return True
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            s.settimeout(left)
            try:
                data = s.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            for k, m in reader.feed(data):
                if k == "state" and _reached(m, states):
                    return True
                if k == "state":
                    _no_readiness(container, m, states)
    finally:
        s.close()


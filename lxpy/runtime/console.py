"""lxpy-console: attach the terminal to the container's console or one of its ttys,
through the monitor (one holder at a time). Ctrl-a q detaches; Ctrl-a a sends Ctrl-a."""

from __future__ import annotations

import os
import select
import signal
import sys

from ..errors import NotRunning, StateError
from ..linux.tty import get_winsize, make_raw, restore
from . import proto, state


def console(container, tty: int = 0, escape: int = 1, stdin_fd: int = 0,
            stdout_fd: int = 1) -> int:
    info = state.query(container)
    if info.state == "STOPPED" or not info.monitor_alive:
        raise NotRunning(f"container {container.name!r} is not running"
                         + ("" if info.state == "STOPPED" else " under a monitor"))
    ws = get_winsize(stdin_fd) if os.isatty(stdin_fd) else None
    fields = {"tty": tty}
    if ws:
        fields.update(rows=ws[0], cols=ws[1])
    s, (kind, msg) = proto.request(str(container.run_dir / state.SOCKET), "console", **fields)
    if kind != "ok":
        s.close()
        raise StateError(f"container {container.name!r}: "
                         + (msg.get("message") or "the console is not available"))
    s.settimeout(None)
    rest = s.reader.buf
    if rest:
        os.write(stdout_fd, rest)
    tty_attrs = make_raw(stdin_fd) if os.isatty(stdin_fd) else None
    if tty_attrs is not None:
        os.write(stdout_fd, f"\r\nConnected to tty {tty}\r\nType <Ctrl+a q> to exit the "
                 "console, <Ctrl+a Ctrl+a> to enter Ctrl+a itself\r\n\r\n".encode())
    if tty_attrs is not None:

        def winch(_sig, _frame) -> None:
            ws = get_winsize(stdin_fd)
            if ws:
                try:
                    c, _ = proto.request(str(container.run_dir / state.SOCKET), "winsize",
                                         io_timeout=2, tty=tty, rows=ws[0], cols=ws[1])
                    c.close()
                except OSError:
                    pass
        signal.signal(signal.SIGWINCH, winch)
    p = select.poll()
    p.register(stdin_fd, select.POLLIN)
    p.register(s.fileno(), select.POLLIN)
    pending_escape = False
    try:
        while True:
            for fd, _ev in p.poll():
                if fd == s.fileno():
                    data = s.recv(65536)
                    if not data:
                        return 0
                    os.write(stdout_fd, data)
                else:
                    data = os.read(stdin_fd, 4096)
                    if not data:
                        p.unregister(stdin_fd)
                        continue
                    out = bytearray()
                    for b in data:
                        if pending_escape:
                            pending_escape = False
                            if b == ord("q"):
                                if out:
                                    s.sendall(bytes(out))
                                return 0
                            out.append(b)
                        elif b == escape:
                            pending_escape = True
                        else:
                            out.append(b)
                    if out:
                        s.sendall(bytes(out))
    finally:
        if tty_attrs is not None:
            restore(stdin_fd, tty_attrs)
            os.write(stdout_fd, b"\r\n")
        s.close()


_ = sys

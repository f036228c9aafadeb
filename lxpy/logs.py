"""Per-container log files: under the system log dir (/var/log/lxpy, or $LXPY_LOG_DIR) for
the containers of the system's lxpath, in the container's own directory for the others.

    <log_dir>/<name>/console.log     what the container wrote to its console (the monitor)
    <log_dir>/<name>/lxpy.log        the container's history, one line per event (its monitor:
                                     runtime/monitor.py, Monitor.event)

(the monitor's own stderr in daemon mode is <log_dir>/<name>/monitor.log, see runtime/start.py).
A container of another lxpath (-P) keeps them in <lxpath>/<name>/log/, as LXC keeps
<lxcpath>/<name>/<name>.log (lxpy.paths.log_dir): the same name in two lxpaths never shares
a history, and destroying the container removes them. Both files are rotated by size: the
full file becomes NAME.1 (NAME.2 ...), the oldest is dropped.

The monitor is lean: RotatingFile uses plain fds and imports nothing heavy; `handler()` is the
logging.Handler for lxpy's own log.
"""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path

from . import paths

CONSOLE_LOG = "console.log"
LXPY_LOG = "lxpy.log"
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_BACKUPS = 2


def container_log_dir(name: str, lxpath: Path | str | None = None, *,
                      create: bool = False) -> Path:
    """The directory of a container's logs (made, mode 0750, when create=True); lxpath None
    is the system's."""
    d = paths.log_dir(lxpath or paths.default_lxpath(), name)
    if create:
        d.mkdir(mode=0o750, parents=True, exist_ok=True)
    return d


def console_log_path(name: str, lxpath: Path | str | None = None) -> Path:
    return container_log_dir(name, lxpath) / CONSOLE_LOG


def lxpy_log_path(name: str, lxpath: Path | str | None = None) -> Path:
    return container_log_dir(name, lxpath) / LXPY_LOG


def rotate(path: Path, backups: int) -> None:
    """path -> path.1 -> path.2 ... (at most `backups` kept; 0 just truncates)."""
    if backups <= 0:
        try:
            os.truncate(path, 0)
        except FileNotFoundError:
            pass
        return
    for i in range(backups - 1, 0, -1):
        src = path.with_name(f"{path.name}.{i}")
        if src.exists():
            os.replace(src, path.with_name(f"{path.name}.{i + 1}"))
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.1"))


class RotatingFile:
    """An append-only byte log that rotates itself when it reaches max_bytes.

    write() never raises for a full disk or a removed directory: a console must not stop a
    container. `errors` counts the writes that failed.
    """

    def __init__(self, path: Path | str, max_bytes: int = DEFAULT_MAX_BYTES,
                 backups: int = DEFAULT_BACKUPS, mode: int = 0o640):
        self.path = Path(path)
        self.max_bytes = max(0, int(max_bytes))
        self.backups = backups
        self.mode = mode
        self.errors = 0
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           self.mode)
        self._size = os.fstat(self._fd).st_size

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes) -> int:
        if self._fd < 0 or not data:
            return 0
        try:
            if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
                self._rollover()
            n = os.write(self._fd, data)
            self._size += n
            return n
        except OSError:
            self.errors += 1
            return 0

    def _rollover(self) -> None:
        os.close(self._fd)
        self._fd = -1
        rotate(self.path, self.backups)
        self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RotatingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def handler(name: str, lxpath: Path | str | None = None, *,
            max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS,
            level: int = logging.INFO) -> logging.Handler:
    """A size-rotating logging handler writing to the container's lxpy.log.

    Add it to logging.getLogger("lxpy") in the monitor (and the start/stop commands) so the
    container's history survives the terminal; under systemd stderr goes to the journal too.
    """
    path = lxpy_log_path(name, lxpath)
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    h = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    h.setLevel(level)
    h.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s: %(message)s"))
    return h

"""A container as it is on disk: its name, directory, config and lock."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config.loader import load
from .config.schema import CONTAINER_NAME_RE
from .errors import ContainerNotFound, LockBusy, UsageError
from .paths import default_lxpath, run_dir

CONFIG_NAME = "config.toml"


def name_ok(name: str) -> bool:
    return isinstance(name, str) and CONTAINER_NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not name_ok(name):
        shown = name if isinstance(name, str) and len(name) <= 70 else f"{str(name)[:60]}..."
        raise UsageError(f"invalid container name {shown!r}",
                         "use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    return name


class Container:
    def __init__(self, name: str, lxpath: Path | str | None = None):
        self.name = check_name(name)
        self.lxpath = Path(lxpath) if lxpath else default_lxpath()
        self.dir = self.lxpath / name
        self.config_path = self.dir / CONFIG_NAME
        self._config = None

    def __repr__(self) -> str:
        return f"Container({self.name!r}, {str(self.lxpath)!r})"

    # -- on disk ------------------------------------------------------------
    def exists(self) -> bool:
        return self.config_path.is_file()

    def require(self) -> Container:
        if not self.exists():
            raise ContainerNotFound(f"container {self.name!r} does not exist in {self.lxpath}",
                                    "lxpy-ls lists the containers there; -P picks another lxpath")
        return self

    @property
    def config(self):
        if self._config is None:
            self.require()
            self._config = load(self.config_path)
        return self._config

    def reload(self):
        self._config = None
        return self.config

    @property
    def rootfs(self) -> Path:
        p = Path(self.config.rootfs.path)
        return p if p.is_absolute() else self.dir / p

    @property
    def run_dir(self) -> Path:
        return run_dir(self.lxpath, self.name)

    @property
    def lock_path(self) -> Path:
        return self.lxpath / f".{self.name}.lock"

    @contextmanager
    def lock(self, wait: float = 0.0, what: str = "busy") -> Iterator[None]:
        """Serialize start/stop/destroy/clone of this container (flock, dies with us)."""
        self.lxpath.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        raise LockBusy(f"container {self.name!r} is {what}: another lxpy "
                                       "command holds its lock", "try again in a moment") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    # -- listing --------------------------------------------------------------
    @staticmethod
    def all(lxpath: Path | str | None = None) -> list[Container]:
        root = Path(lxpath) if lxpath else default_lxpath()
        try:
            names = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if n.startswith(".") or not name_ok(n):
                continue
            if (root / n / CONFIG_NAME).is_file():
                out.append(Container(n, root))
        return out

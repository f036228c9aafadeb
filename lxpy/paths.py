"""Where things live: the system defaults (/etc/lxpy/lxpy.toml), the lxpath, the cache,
the runtime directory, and the shipped templates and profiles."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from .errors import ConfigError
from .record import Record

try:  # the C module itself: hashlib loads OpenSSL first (~4 ms of every command)
    from _sha256 import sha256
except ImportError:  # pragma: no cover - Python 3.12+ (_sha2) or another implementation
    from hashlib import sha256

SYSTEM_CONFIG = Path("/etc/lxpy/lxpy.toml")
RUN_ROOT = Path("/run/lxpy")


@cache  # where this package lives does not change (lxpy-ls -f asks once per container)
def shipped_dir(what: str) -> Path:
    """templates/ or config/ as shipped: inside the installed package, else in the checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "data" / what, here.parent / what):
        if cand.is_dir():
            return cand
    return here / "data" / what


class SystemConfig(Record):
    __slots__ = ("lxpath", "cache", "backend", "cgroup_parent", "log_dir", "bridge", "subnet",
                 "dhcp_range", "domain", "ipv6", "source")
    lxpath: Path
    cache: Path
    backend: str
    cgroup_parent: str
    log_dir: Path
    bridge: str
    subnet: str
    dhcp_range: str
    domain: str
    ipv6: bool
    source: str


@cache
def system_config() -> SystemConfig:
    path = Path(os.environ.get("LXPY_CONFIG", SYSTEM_CONFIG))
    from .config.cache import system_values
    v = system_values(str(path), lambda: _system_values(path))
    return SystemConfig(
        lxpath=Path(os.environ.get("LXPY_PATH") or v["lxpath"]),
        cache=Path(os.environ.get("LXPY_CACHE") or v["cache"]),
        backend=str(v["backend"]),
        cgroup_parent=str(os.environ.get("LXPY_CGROUP_PARENT") or v["cgroup_parent"]),
        log_dir=Path(os.environ.get("LXPY_LOG_DIR") or v["log_dir"]),
        bridge=str(v["net.bridge"]),
        subnet=str(v["net.subnet"]),
        dhcp_range=str(v["net.dhcp_range"]),
        domain=str(v["net.domain"]),
        ipv6=bool(v["net.ipv6"]),
        source=str(path),
    )


def _system_values(path: Path) -> dict:
    """The system config file's settings over the defaults, flat ("net.bridge")."""
    data: dict = {}
    if path.is_file():
        import tomllib
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (tomllib.TOMLDecodeError, OSError) as e:
            raise ConfigError(f"{path}: cannot read system config: {e}") from None
    flat: dict = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v
    walk(data, "")
    from .config.schema import SYSTEM_SETTINGS
    known = {s.key: s.default for s in SYSTEM_SETTINGS}
    for k in flat:
        if k not in known:
            import difflib
            near = difflib.get_close_matches(k, known, 1)
            raise ConfigError(f"{path}: {k!r} is not a system setting"
                              + (f" (did you mean {near[0]}?)" if near else ""))
    return {**known, **flat}


def default_lxpath() -> Path:
    return system_config().lxpath


def run_dir(lxpath: Path, name: str) -> Path:
    """/run/lxpy/<hash of lxpath>/<name>: lock, monitor socket, pid, console log."""
    h = sha256(os.fsencode(os.path.realpath(lxpath))).hexdigest()[:12]
    return RUN_ROOT / h / name

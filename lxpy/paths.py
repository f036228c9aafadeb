"""Where things live: the system defaults (/etc/lxpy/lxpy.toml), the lxpath, the cache,
the runtime directory, the logs, and the shipped templates and profiles."""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from hashlib import sha256
from pathlib import Path
from typing import Any

from .errors import ConfigError

SYSTEM_CONFIG = Path("/etc/lxpy/lxpy.toml")
RUN_ROOT = Path("/run/lxpy")
LOG_SUBDIR = "log"          # <lxpath>/<name>/log: the logs of a container of another lxpath


@cache  # where this package lives does not change (lxpy-ls -f asks once per container)
def shipped_dir(what: str) -> Path:
    """templates/ or config/ as shipped: inside the installed package, else in the checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "data" / what, here.parent / what):
        if cand.is_dir():
            return cand
    return here / "data" / what


def profile_dirs() -> list[Path]:
    """Where `include = ["name"]` looks, in order."""
    env = os.environ.get("LXPY_PROFILES")
    dirs = [Path(p) for p in env.split(":") if p] if env else []
    return [*dirs, Path("/etc/lxpy/profiles"), Path("/usr/share/lxpy/config"),
            shipped_dir("config")]


@dataclass(frozen=True)
class SystemSetting:
    key: str
    default: Any
    help: str


# /etc/lxpy/lxpy.toml
SYSTEM_SETTINGS: tuple[SystemSetting, ...] = (
    SystemSetting("lxpath", "/var/lib/lxpy", "Where containers live (-P overrides)."),
    SystemSetting("cache", "/var/cache/lxpy", "Where bootstrapped rootfs trees are cached."),
    SystemSetting("storage", "/var/lib/lxpy/storage", "Where lxpy-storage keeps its pools "
                  "(NAME.img, mounted at NAME/, an lxpath)."),
    SystemSetting("backend", "overlay", "Default storage backend for lxpy-create."),
    SystemSetting("cgroup_parent", "lxpy", "Parent cgroup for containers."),
    SystemSetting("log_dir", "/var/log/lxpy", "Where console and lxpy logs go."),
    SystemSetting("net.bridge", "lxpybr0", "The managed bridge."),
    SystemSetting("net.subnet", "10.0.3.0/24", "Subnet of the managed bridge."),
    SystemSetting("net.dhcp_range", "10.0.3.2,10.0.3.254", "DHCP range."),
    SystemSetting("net.domain", "lxpy", "DNS domain of containers."),
    SystemSetting("net.ipv6", False, "IPv6 on the managed bridge."),
)


@dataclass(frozen=True)
class SystemConfig:
    lxpath: Path
    cache: Path
    storage: Path
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
    v = _system_values(path)
    return SystemConfig(
        lxpath=Path(os.environ.get("LXPY_PATH") or v["lxpath"]),
        cache=Path(os.environ.get("LXPY_CACHE") or v["cache"]),
        storage=Path(os.environ.get("LXPY_STORAGE") or v["storage"]),
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
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        pass
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
    known = {s.key: s.default for s in SYSTEM_SETTINGS}
    for k in flat:
        if k not in known:
            near = difflib.get_close_matches(k, known, 1)
            raise ConfigError(f"{path}: {k!r} is not a system setting"
                              + (f" (did you mean {near[0]}?)" if near else ""))
    return {**known, **flat}


def default_lxpath() -> Path:
    return system_config().lxpath


def run_dir(lxpath: Path | str, name: str) -> Path:
    """/run/lxpy/<hash of lxpath>/<name>: lock, monitor socket, pid, console log."""
    h = sha256(os.fsencode(os.path.realpath(lxpath))).hexdigest()[:12]
    return RUN_ROOT / h / name


def log_dir(lxpath: Path | str, name: str) -> Path:
    """Where a container's logs go (console.log, lxpy.log, monitor.log): <log_dir>/<name>
    for a container of the system's lxpath, <lxpath>/<name>/log for one of another lxpath
    (-P), as LXC keeps <lxcpath>/<name>/<name>.log there. One name in two lxpaths then never
    shares a history, and lxpy-destroy -P takes the logs with the container."""
    sc = system_config()
    if os.path.realpath(lxpath) == os.path.realpath(sc.lxpath):
        return sc.log_dir / name
    return Path(lxpath) / name / LOG_SUBDIR

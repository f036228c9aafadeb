"""Where a container's files are, as strings: without pathlib or the system config when
that is possible (lxpy-attach and lxpy-stop, which scripts run in loops)."""

from __future__ import annotations

import os


def lxpath_fast(given: str | None) -> str | None:
    """The lxpath without reading the system config, when that is possible."""
    if given:
        return given
    env = os.environ.get("LXPY_PATH")
    if env:
        return env
    cfg = os.environ.get("LXPY_CONFIG", "/etc/lxpy/lxpy.toml")
    if not os.path.exists(cfg):
        return "/var/lib/lxpy"
    # a system config (setup-host installs one): its values as lxpy.paths left them cached
    # in /run/lxpy, if they are still valid; else None, and lxpy.paths reads it
    from .config.cache import system_values_cached
    v = system_values_cached(cfg)
    lxpath = v.get("lxpath") if v else None
    return lxpath if isinstance(lxpath, str) and lxpath else None


def run_dir_of(lxpath: str, name: str) -> str:
    """lxpy.paths.run_dir(), without importing the config layer (a unit test keeps them
    equal)."""
    try:
        from _sha256 import sha256  # the builtin one: no OpenSSL to load (Python 3.11)
    except ImportError:
        from hashlib import sha256
    h = sha256(os.fsencode(os.path.realpath(lxpath))).hexdigest()[:12]
    return f"/run/lxpy/{h}/{name}"


LOG_SUBDIR = "log"


def log_dir_of(lxpath: str, name: str) -> str:
    """Where a container's logs go (console.log, lxpy.log, monitor.log): <log_dir>/<name>
    for a container of the system's lxpath, <lxpath>/<name>/log for one of another lxpath
    (-P), as LXC keeps <lxcpath>/<name>/<name>.log there. One name in two lxpaths then never
    shares a history, and lxpy-destroy -P takes the logs with the container."""
    from .paths import system_config
    sc = system_config()
    if os.path.realpath(lxpath) == os.path.realpath(sc.lxpath):
        return os.path.join(sc.log_dir, name)
    return os.path.join(lxpath, name, LOG_SUBDIR)

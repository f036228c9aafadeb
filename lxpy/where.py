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
    return None  # a system config exists: let lxpy.paths read it


def run_dir_of(lxpath: str, name: str) -> str:
    """lxpy.paths.run_dir(), without importing the config layer (a unit test keeps them
    equal)."""
    try:
        from _sha256 import sha256  # the builtin one: no OpenSSL to load (Python 3.11)
    except ImportError:
        from hashlib import sha256
    h = sha256(os.fsencode(os.path.realpath(lxpath))).hexdigest()[:12]
    return f"/run/lxpy/{h}/{name}"

"""The few sysctls lxpy-net and forwards need (host netns)."""

from __future__ import annotations

from pathlib import Path


def _path(key: str) -> Path:
    return Path("/proc/sys") / (key if "/" in key else key.replace(".", "/"))


def get(key: str) -> str | None:
    try:
        return _path(key).read_text().strip()
    except OSError:
        return None


def set(key: str, value: str) -> None:  # noqa: A001 - sysctl's own verb
    with open(_path(key), "w") as f:
        f.write(value)


def conf_key(family: str, dev: str, what: str) -> str:
    # interface names may contain dots: the /proc/sys path keeps them as they are
    return f"net/{family}/conf/{dev}/{what}"

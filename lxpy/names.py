"""Container names: what one may be, checked without the config layer or pathlib
(lxpy-attach, lxpy-stop and lxpy-ls need it long before, or without, a config)."""

from __future__ import annotations

from .errors import UsageError

# lxpy.config.schema.CONTAINER_NAME_RE without re (a unit test keeps them equal)
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def name_ok(name: str) -> bool:
    return 0 < len(name) <= 63 and name[0] not in "._-" and _NAME_CHARS.issuperset(name)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name_ok(name):
        shown = name if isinstance(name, str) and len(name) <= 70 else f"{str(name)[:60]}..."
        raise UsageError(f"invalid container name {shown!r}",
                         "use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    return name

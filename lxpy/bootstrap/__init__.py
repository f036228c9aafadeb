"""How a template's base rootfs comes to be, once, in the cache.

Each method is a module with the same small interface, found through METHODS:

    available() -> (bool, why)
    describe(template, options) -> dict     release, arch, key (the cache entry's name) ...
    build(template, options, target, entry, progress) -> None
                                            fill the empty dir target (entry holds logs)

    ensure_cached(template, options, cache_root) -> Path   the complete, read-only tree
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import BootstrapError, TemplateError, lookup
from ..templates import Template
from . import busybox, cache, debootstrap, tarball

METHODS: dict[str, ModuleType] = {
    "debootstrap": debootstrap,
    "busybox": busybox,
    "tarball": tarball,
}

Progress = Callable[[str], None] | None


def method(name: str) -> ModuleType:
    return lookup(METHODS, name, "bootstrap method", TemplateError)


def describe(template: Template, options: dict[str, Any]) -> dict[str, Any]:
    """What the base rootfs is: {"method", "release", "arch", "key", ...} (no side effects)."""
    m = method(template.method)
    return {"method": template.method, **m.describe(template, options)}


def entry_dir(template: Template, options: dict[str, Any], cache_root: Path) -> Path:
    return Path(cache_root) / template.cache_name() / describe(template, options)["key"]


def ensure_cached(template: Template, options: dict[str, Any], cache_root: Path,
                  flush: bool = False, progress: Progress = None) -> Path:
    """The template's base rootfs, bootstrapped into the cache first if needed.

    Returns the complete versioned tree (<cache>/<template>/<key>/rootfs.<stamp>): record
    this path, not the `rootfs` symlink, as an overlay lower dir. Two concurrent calls
    build once (flock); a killed build leaves only a `.build-*` dir, removed by the next.
    flush=True builds a new version and repoints `rootfs`; old versions stay (see
    cache.prune)."""
    m = method(template.method)
    ok, why = m.available()
    if not ok:
        raise BootstrapError(f"template {template.name}: cannot bootstrap: {why}")
    desc = m.describe(template, options)
    for part in (template.cache_name(), desc["key"]):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,200}", part):
            raise BootstrapError(f"template {template.name}: {part!r} cannot name a cache "
                                 "entry", "check the release and arch options")
    entry = Path(cache_root) / template.cache_name() / desc["key"]
    what = f"{template.cache_name()}/{desc['key']}"
    try:
        return cache.ensure(
            entry, lambda target: m.build(template, options, target, entry, progress),
            {"template": template.name, "method": template.method, **desc},
            what=what, flush=flush, progress=progress)
    except PermissionError as e:
        raise BootstrapError(f"cannot write the rootfs cache {entry}: {e.strerror}",
                             "run as root, or set LXPY_CACHE / cache in "
                             "/etc/lxpy/lxpy.toml") from None
    except OSError as e:
        if e.errno == 28:
            raise BootstrapError(f"no space left for the rootfs cache in {cache_root}",
                                 "free some space (or move the cache) and retry") from None
        raise

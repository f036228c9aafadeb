"""The create flow: template -> cached base rootfs -> backend -> rendered files -> config ->
one rename into the lxpath. Interrupted anywhere, it leaves nothing lxpy-ls lists or that
blocks a retry."""

from __future__ import annotations

import errno
import os
import random
import tomllib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import bootstrap, idmap, storage, templates
from ..config.atomic import write_new
from ..config.edit import edit_text
from ..config.loader import expand, load, read_toml, validate
from ..container import CONFIG_NAME, Container
from ..errors import ContainerExists, StorageError
from ..paths import system_config
from ..storage.tree import remove_tree
from .sweep import new_tmp, sweep


@dataclass
class CreateRequest:
    name: str
    lxpath: Path
    template: str
    template_args: list[str] = field(default_factory=list)
    backend: str | None = None
    extra_config: Path | None = None
    flush_cache: bool = False
    privileged: bool = False            # idmap = "none" in its config (lxpy-create --privileged)
    progress: Callable[[str], None] | None = None


def fill_hwaddr(mac: str, rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    return ":".join(f"{rng.randrange(256):02x}" if part == "xx" else part
                    for part in mac.split(":"))


def _config_text(rendered: str, extra: dict[str, Any] | None, rootfs_keys: dict[str, str],
                 template: str, privileged: bool = False) -> str:
    """The new config's text: the rendered template config, extra merged in, the rootfs
    keys, the template name, idmap = "none" when privileged, and MAC addresses drawn."""
    has_template = "template" in tomllib.loads(rendered) or "template" in (extra or {})
    return edit_text(
        rendered, {**rootfs_keys, **({} if has_template else {"template": template}),
                   **({"idmap": "none"} if privileged else {})},
        merge=extra,
        hwaddr=lambda kind, mac: fill_hwaddr(str(mac or "00:16:3e:xx:xx:xx"))
        if kind in ("veth", "macvlan") else None)


def create(req: CreateRequest) -> Container:
    c = Container(req.name, req.lxpath)
    if c.dir.exists() or c.dir.is_symlink():
        raise ContainerExists(f"container {req.name!r} already exists in {c.lxpath}",
                              "pick another name, or lxpy-destroy it first")
    tmpl = templates.find(req.template)
    options = tmpl.parse_options(list(req.template_args))
    extra = None
    if req.extra_config is not None:
        extra = read_toml(req.extra_config)
        # validate the extra file on its own first, so a typo is named against that file
        files: list[str] = []
        validate(expand(extra, req.extra_config, (req.extra_config.resolve(),), files),
                 str(req.extra_config), tuple(files))
    sysconf = system_config()
    backend_name = req.backend or sysconf.backend
    if backend_name == "best":
        backend = storage.best(c.lxpath)
    else:
        backend = storage.get(backend_name)
        ok, why = backend.available(c.lxpath)
        if not ok:
            raise StorageError(f"backend {backend_name!r} is not available here: {why}",
                               f"pick another with -B ({', '.join(storage.names())})")
    c.lxpath.mkdir(parents=True, exist_ok=True)
    sweep(c.lxpath)             # what a killed create (or copy...) left, when its lock is free
    with c.lock(wait=0, what="being created"):
        if c.dir.exists():
            raise ContainerExists(f"container {req.name!r} already exists in {c.lxpath}",
                                  "pick another name, or lxpy-destroy it first")
        base = bootstrap.ensure_cached(tmpl, options, sysconf.cache, flush=req.flush_cache,
                                       progress=req.progress)
        tmp = new_tmp(c.lxpath, "create", req.name)
        tmp.mkdir(mode=0o700)
        made = False
        try:
            rootfs_keys = backend.create_from(base, tmp)
            context: dict[str, Any] = {
                "name": req.name, "hostname": req.name, "lxpath": str(c.lxpath),
                "options": options, "template": tmpl.name,
                "arch": options.get("arch", ""), "release": options.get("release", ""),
            }
            rendered = templates.render_config(tmpl, context)
            text = _config_text(rendered, extra, rootfs_keys, tmpl.name, req.privileged)
            cfg_path = tmp / CONFIG_NAME
            write_new(cfg_path, text)
            cfg = load(cfg_path)
            context["hostname"] = cfg.hostname or req.name
            context["net"] = [n.as_dict() for n in cfg.net]
            context["config"] = cfg.to_dict()
            with backend.mounted(tmp, cfg) as root:
                templates.render_rootfs(tmpl, Path(root), context)
            # its block of ids, under its lock ("being created"): no allocation prunes it
            # before the rename; a failed create releases it
            idmap.assign(c, cfg)
            os.rename(tmp, c.dir)
            made = True
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and c.dir.exists():
                raise ContainerExists(f"container {req.name!r} already exists") from None
            raise
        finally:
            if not made:     # best effort: the next command's sweep finishes it
                if not c.dir.exists():
                    with suppress(Exception):
                        idmap.release(c)
                with suppress(Exception):
                    if (tmp / CONFIG_NAME).exists():
                        backend.destroy(tmp, load(tmp / CONFIG_NAME))
                with suppress(OSError):
                    remove_tree(tmp)
    return c

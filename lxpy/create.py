"""The create flow: template -> cached base rootfs -> backend -> rendered files -> config ->
one rename into the lxpath. Interrupted anywhere, it leaves nothing lxpy-ls lists or that
blocks a retry."""

from __future__ import annotations

import logging
import os
import random
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config.atomic import write_new
from .config.loader import expand, load, read_toml, validate
from .container import CONFIG_NAME, Container
from .errors import ContainerExists, StorageError
from .linux.mount import MNT_DETACH, mounts_under, umount2
from .paths import system_config

log = logging.getLogger("lxpy.create")

TMP_PREFIX = ".tmp-create-"


@dataclass
class CreateRequest:
    name: str
    lxpath: Path
    template: str
    template_args: list[str] = field(default_factory=list)
    backend: str | None = None
    extra_config: Path | None = None
    flush_cache: bool = False
    progress: Callable[[str], None] | None = None


def fill_hwaddr(mac: str, rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    return ":".join(f"{rng.randrange(256):02x}" if part == "xx" else part
                    for part in mac.split(":"))


def sweep_stale(lxpath: Path, name: str) -> None:
    """Remove what a killed create of this name left (we hold the name's lock)."""
    try:
        entries = os.listdir(lxpath)
    except FileNotFoundError:
        return
    for e in entries:
        if e.startswith(f"{TMP_PREFIX}{name}-"):
            p = lxpath / e
            for mp in mounts_under(p):
                try:
                    umount2(mp, MNT_DETACH)
                except OSError:
                    pass
            shutil.rmtree(p, ignore_errors=True)
            log.info("removed %s left by an interrupted create", p)


def _merge_into(doc, data: dict[str, Any]) -> None:
    for k, v in data.items():
        if isinstance(v, dict) and k in doc and hasattr(doc[k], "items"):
            _merge_into(doc[k], v)
        else:
            doc[k] = v


def _config_text(rendered: str, extra: dict[str, Any] | None, rootfs_keys: dict[str, str],
                 template: str) -> str:
    """The new config's text: the rendered template config, extra merged in, the rootfs
    keys, the template name, and MAC addresses drawn."""
    import tomlkit
    doc = tomlkit.parse(rendered)
    if extra:
        _merge_into(doc, extra)
    rootfs_tbl = doc.get("rootfs")
    if rootfs_tbl is None:
        doc["rootfs"] = rootfs_tbl = tomlkit.table()
    for k, v in rootfs_keys.items():
        rootfs_tbl[k.removeprefix("rootfs.")] = v
    if "template" not in doc:
        doc["template"] = template
    for entry in doc.get("net", []):
        if entry.get("type", "veth") in ("veth", "macvlan"):
            entry["hwaddr"] = fill_hwaddr(str(entry.get("hwaddr") or "00:16:3e:xx:xx:xx"))
    return tomlkit.dumps(doc)


def create(req: CreateRequest) -> Container:
    from . import bootstrap, storage, templates

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
    with c.lock(wait=0, what="being created"):
        if c.dir.exists():
            raise ContainerExists(f"container {req.name!r} already exists in {c.lxpath}",
                                  "pick another name, or lxpy-destroy it first")
        sweep_stale(c.lxpath, req.name)
        base = bootstrap.ensure_cached(tmpl, options, sysconf.cache, flush=req.flush_cache,
                                       progress=req.progress)
        tmp = c.lxpath / f"{TMP_PREFIX}{req.name}-{secrets.token_hex(4)}"
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
            text = _config_text(rendered, extra, rootfs_keys, tmpl.name)
            cfg_path = tmp / CONFIG_NAME
            write_new(cfg_path, text)
            cfg = load(cfg_path)
            context["hostname"] = cfg.hostname or req.name
            context["net"] = [n.as_dict() for n in cfg.net]
            context["config"] = cfg.to_dict()
            with backend.mounted(tmp, cfg) as root:
                templates.render_rootfs(tmpl, Path(root), context)
            os.rename(tmp, c.dir)
            made = True
        except OSError as e:
            if e.errno in (17, 39) and c.dir.exists():  # EEXIST/ENOTEMPTY on rename
                raise ContainerExists(f"container {req.name!r} already exists") from None
            raise
        finally:
            if not made:
                try:
                    cfgp = tmp / CONFIG_NAME
                    if cfgp.exists():
                        backend.destroy(tmp, load(cfgp))
                except Exception:  # noqa: BLE001 - best effort, the sweep below finishes it
                    pass
                sweep_stale(c.lxpath, req.name)
    return c

"""Container-level storage work: clone (full, snapshot), rename, dependency tracking,
destroy, and the sweep of what killed commands left behind.

Crash safety: every operation builds in a temporary place inside the lxpath (a name starting
with ".", which lxpy-ls never lists) and becomes visible with one rename. The next command
sweeps stale temporary directories whose container lock is free."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tomllib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..config.atomic import write_new
from ..config.edit import set_keys
from ..config.loader import load, validate
from ..container import CONFIG_NAME, Container
from ..errors import (ConfigError, ContainerExists, LockBusy, LxpyError, StateError, StorageError,
                      UsageError)
from ..linux.fsops import RENAME_NOREPLACE, is_btrfs_subvolume, renameat2
from ..linux.mount import MS_NODEV, MS_NOSUID, mount
from ..paths import LOG_SUBDIR
from .base import rootfs_dir, split_lowers
from .copy import copy_dir_attrs, copy_tree, is_empty_dir, remove_tree
from .identity import (HOST_FILES, new_hwaddr, read_host_files, restore_files, rewritten,
                       update_hostname)
from .overlay import LAYERS, OverlayBackend

log = logging.getLogger("lxpy.storage")

TMP = ".tmp-"
RENAME_JOURNAL = ".lxpy-rename.json"
MERGED = "merged"       # the overlay mount point of a frozen dir container (see freeze)


# -- dependencies ---------------------------------------------------------------------------

def _rootfs_table(config_path: Path) -> dict[str, Any] | None:
    """The [rootfs] table of a config; None when the file is not valid TOML."""
    try:
        with open(config_path, "rb") as f:
            data = tomllib.load(f)
    except OSError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    t = data.get("rootfs")
    return t if isinstance(t, dict) else {}


def _may_depend(config_path: Path, container: Container) -> bool:
    """A config that is not valid TOML (edited by hand, say) still counts as a dependant
    when its text names the container's directory or the container as its origin:
    destroying the origin would take the layers that clone's data sits on."""
    try:
        text = config_path.read_bytes().decode(errors="replace")
    except OSError:
        return False
    if f"{container.dir}/" in text or f"{os.path.realpath(container.dir)}/" in text:
        return True
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() == "origin" and value.strip().strip("\"'") == container.name:
            return True
    return False


def _inside(path: str | Path, directory: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(directory))
        return True
    except ValueError:
        return False


def dependants(container: Container, hard_only: bool = False) -> list[str]:
    """Containers in the same lxpath recorded as snapshot clones of container
    (rootfs.origin), or whose rootfs uses its tree as an overlay lower. With hard_only, only
    the latter (those whose data would change if the container's tree changed)."""
    out = []
    for other in Container.all(container.lxpath):
        if other.name == container.name:
            continue
        t = _rootfs_table(other.config_path)
        if t is None:
            if _may_depend(other.config_path, container):
                out.append(other.name)
            continue
        lowers = [p for p in str(t.get("lower", "")).split(":") if p]
        path = str(t.get("path", ""))
        hard = any(os.path.isabs(p) and _inside(p, container.dir) for p in lowers) or (
            os.path.isabs(path) and _inside(path, container.dir))
        if hard or (not hard_only and t.get("origin") == container.name):
            out.append(other.name)
    return out


def fallback_config(c: Container) -> Any:
    """What the storage of c needs of its config when config.toml does not load (not TOML,
    an unknown key, a bad value): its [rootfs] table as far as it reads; a backend the file
    does not name (or not validly) is guessed from what is on disk: a delta/ dir is an
    overlay, a btrfs subvolume a btrfs rootfs."""
    table = _rootfs_table(c.config_path) or {}
    rootfs = {k: v for k, v in table.items()
              if k in ("backend", "path", "lower", "origin") and isinstance(v, str)}
    for t in (rootfs, {k: v for k, v in rootfs.items() if k != "backend"}, {}):
        try:
            cfg = validate({"rootfs": t}, str(c.config_path))
        except ConfigError:
            continue
        if "backend" in t:
            return cfg
        break
    if (c.dir / "delta").is_dir():
        guess = "overlay"
    elif is_btrfs_subvolume(rootfs_dir(c.dir, cfg)):
        guess = "btrfs"
    else:
        guess = "dir"
    return validate({"rootfs": {**t, "backend": guess}}, str(c.config_path))


def destroy_container(cdir: Path, cfg: Any) -> None:
    """Remove a container's storage: its snapshots, its rootfs (mounts and subvolumes
    included), then the directory."""
    from . import for_config
    remove_tree(cdir / "snaps")
    try:
        for_config(cfg).destroy(cdir, cfg)
    finally:
        remove_tree(cdir)


# -- the sweep ------------------------------------------------------------------------------

def _tmp_owner(entry: str) -> tuple[str, str] | None:
    """('copy', name) for '.tmp-copy-NAME-abcd1234', None when it is not ours."""
    if not entry.startswith(TMP):
        return None
    rest = entry[len(TMP):]
    op, _, rest = rest.partition("-")
    name, _, token = rest.rpartition("-")
    if not op or not name or not token:
        return None
    return op, name


def _try_lock(lxpath: Path, name: str):
    """A held lock context for name, or None when someone holds it."""
    stack = ExitStack()
    try:
        stack.enter_context(Container(name, lxpath).lock(wait=0))
    except (LockBusy, Exception):  # noqa: BLE001 - a bad name is just not ours
        stack.close()
        return None
    return stack


def sweep(lxpath: Path) -> None:
    """Finish or undo what killed commands left in lxpath: temporary copies, creates and
    destroys are removed, an interrupted rename is rolled back. Only entries whose
    container lock is free are touched."""
    try:
        entries = os.listdir(lxpath)
    except FileNotFoundError:
        return
    for e in entries:
        owner = _tmp_owner(e)
        if owner is None:
            continue
        op, name = owner
        p = lxpath / e
        if not p.is_dir():
            continue
        lock = _try_lock(lxpath, name)
        if lock is None:
            continue
        with lock:
            if not p.exists():
                continue
            if op == "rename":
                undo_rename(lxpath, p)
                continue
            log.info("removing %s left by an interrupted command", p)
            try:
                remove_tree(p)
            except OSError as err:
                log.warning("could not remove %s: %s", p, err)


def new_tmp(lxpath: Path, op: str, name: str) -> Path:
    return lxpath / f"{TMP}{op}-{name}-{os.urandom(4).hex()}"


def write_json(path: Path, data: dict) -> None:
    write_new(path, json.dumps(data))


# -- helpers ----------------------------------------------------------------------------------

ACTIVE = ("RUNNING", "STARTING", "STOPPING", "FROZEN", "FREEZING", "ABORTING")


def state(c: Container) -> str:
    from ..status import state_of
    return state_of(c).state


def require_stopped(c: Container, what: str, allow_running: bool = False) -> None:
    st = state(c)
    if st in ACTIVE and not allow_running:
        raise StateError(f"container {c.name!r} is {st.lower()}; {what} needs it stopped",
                         "stop it with lxpy-stop" + (", or allow a running source with -a"
                                                     if what.startswith("copying") else ""))


def render_config(src_text: str, *, keys: dict[str, str], old_dir: Path, new_dir: Path,
                  old_name: str, new_name: str, keep_hostname: bool, keep_macs: bool,
                  origin: str | None) -> str:
    """The clone's config.toml: the source's, comments kept, with the rootfs keys, paths,
    hostname and MAC addresses changed."""
    import tomlkit
    doc = tomlkit.parse(src_text)
    _rewrite_strings(doc, os.fspath(old_dir), os.fspath(new_dir))
    if "rootfs" not in doc:
        doc["rootfs"] = tomlkit.table()
    rt = doc["rootfs"]
    for k in ("lower", "origin"):
        if k in rt:
            del rt[k]
    for k, v in keys.items():
        rt[k.removeprefix("rootfs.")] = v
    if origin:
        rt["origin"] = origin
    if not keep_hostname and "hostname" in doc and doc["hostname"] == old_name:
        doc["hostname"] = new_name
    if not keep_macs:
        for entry in doc.get("net", []):
            if entry.get("type", "veth") in ("veth", "macvlan") or "hwaddr" in entry:
                entry["hwaddr"] = new_hwaddr(str(entry.get("hwaddr") or ""))
    return tomlkit.dumps(doc)


def _rewrite_strings(node: Any, old: str, new: str) -> None:
    """Replace the old container directory prefix in every string value of a tomlkit doc."""
    items = node.items() if hasattr(node, "items") else enumerate(node)
    for k, v in list(items):
        if isinstance(v, str):
            if rewritten(v, old):
                node[k] = v.replace(old, new)
        elif hasattr(v, "items") or isinstance(v, list):
            _rewrite_strings(v, old, new)


def run_clone_hooks(cfg: Any, cdir: Path, rootfs: Path, name: str, src_name: str,
                    lxpath: Path) -> None:
    for cmd in cfg.hooks.clone:
        env = dict(os.environ, LXPY_NAME=name, LXPY_SRC_NAME=src_name, LXPY_PATH=str(lxpath),
                   LXPY_CONFIG_FILE=str(cdir / CONFIG_NAME), LXPY_ROOTFS=str(rootfs),
                   LXPY_HOOK="clone", LXPY_HOOK_TYPE="clone")
        r = subprocess.run(["/bin/sh", "-c", cmd], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, errors="replace", cwd=str(cdir))
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or [""])[-1]
            raise LxpyError(f"clone hook {cmd!r} failed with status {r.returncode}"
                            + (f": {tail}" if tail else ""), "nothing was made")


def _storage_entries(cfg: Any, cdir: Path) -> set[str]:
    names = {CONFIG_NAME, "rootfs", "delta", "work", "snaps", MERGED, LAYERS}
    root = rootfs_dir(cdir, cfg)
    if root.parent == cdir:
        names.add(root.name)
    return names


def copy_extras(src_dir: Path, src_cfg: Any, dst_dir: Path) -> None:
    """Copy what else the admin keeps in the container directory (hook scripts, notes)."""
    skip = _storage_entries(src_cfg, src_dir) | {LOG_SUBDIR}   # a clone's history is its own
    for e in os.listdir(src_dir):
        if e in skip or e.startswith("."):
            continue
        s = src_dir / e
        if s.is_dir() and not s.is_symlink():
            copy_tree(s, dst_dir / e)
        else:
            shutil.copy2(s, dst_dir / e, follow_symlinks=False)


def _container_lowers(cfg: Any, cdir: Path, lxpath: Path) -> bool:
    """True when the overlay's lowers include a container's tree (in lxpath), other than
    its own layers (layers/N, which a full copy copies)."""
    if cfg.rootfs.backend != "overlay":
        return False
    return any(_inside(p, lxpath) and OverlayBackend.own_layer(cdir, p) is None
               for p in split_lowers(cfg.rootfs.lower, cdir))


def publish(tmp: Path, final: Path) -> None:
    """The one rename that makes a new container visible; refuses to replace anything."""
    try:
        renameat2(tmp, final, RENAME_NOREPLACE)
    except FileExistsError:
        raise ContainerExists(f"container {final.name!r} already exists") from None


# -- clone ----------------------------------------------------------------------------------

def _config_of(c: Container) -> tuple[str, Any]:
    """c's config.toml text and c's Config, both of the same text."""
    while True:
        text = c.config_path.read_text()
        cfg = c.reload()
        if c.config_path.read_text() == text:       # not edited meanwhile
            return text, cfg


def copy_container(src: Container, new_name: str, *, snapshot: bool = False,
                   backend: str | None = None, keep_hostname: bool = False,
                   keep_macs: bool = False, allow_running: bool = False,
                   new_lxpath: Path | None = None, before_publish=None) -> Container:
    """lxpy-copy: a full (default) or snapshot (-s) clone of src named new_name."""
    from . import for_config, get
    src.require()
    dst = Container(new_name, new_lxpath or src.lxpath)
    if dst.dir == src.dir:
        raise UsageError("the new name is the same as the old one")
    dst.lxpath.mkdir(parents=True, exist_ok=True)
    sweep(dst.lxpath)
    with ExitStack() as stack:
        stack.enter_context(src.lock(wait=5, what="busy"))
        stack.enter_context(dst.lock(wait=0, what="being created"))
        if dst.dir.exists() or dst.dir.is_symlink():
            raise ContainerExists(f"container {new_name!r} already exists in {dst.lxpath}",
                                  "pick another name, or lxpy-destroy it first")
        require_stopped(src, "copying it", allow_running)
        src_text, src_cfg = _config_of(src)
        sb = for_config(src_cfg)
        if snapshot:
            tb = get(backend) if backend else (sb if sb.name == "btrfs" else get("overlay"))
        elif backend:
            tb = get(backend)
        elif _container_lowers(src_cfg, src.dir, src.lxpath):
            tb = get("dir")          # flatten: a full copy must not depend on another container
        else:
            tb = sb
        ok, why = tb.available(dst.lxpath)
        if not ok:
            raise StorageError(f"backend {tb.name!r} is not available here: {why}",
                               "pick another with -B")
        tmp = new_tmp(dst.lxpath, "copy", new_name)
        tmp.mkdir(mode=0o700)
        stack.callback(remove_tree, tmp)      # a no-op once it has been renamed
        log.info("%s %s to %s (%s)", "snapshot-cloning" if snapshot else "copying",
                 src.name, new_name, tb.name)
        if snapshot and tb.name == "overlay" and dst.lxpath.resolve() != src.lxpath.resolve() \
                and (sb.name != "overlay" or _container_lowers(src_cfg, src.dir, src.lxpath)):
            raise StorageError("this snapshot clone would depend on a container in another "
                               "lxpath, where lxpy-destroy could not see it",
                               "make it in the same lxpath, or drop -s for a full copy")
        if snapshot and tb.name == "overlay" and sb.name != "overlay":
            if state(src) in ACTIVE:
                raise StorageError(f"container {src.name!r} is running: an overlay snapshot "
                                   "clone of a dir or btrfs container needs it stopped",
                                   "stop it, or drop -s for a full copy")
            src_cfg = freeze(src, src_cfg)
            src_text = src.config_path.read_text()
            sb = for_config(src_cfg)
        if snapshot and tb.name == "overlay" and sb.name == "overlay" \
                and dst.lxpath.resolve() != src.lxpath.resolve():
            keys = tb.full_copy(src.dir, src_cfg, tmp)     # independent of src: copies
        elif snapshot:
            if tb.name == "overlay" and sb.name == "overlay" and state(src) not in ACTIVE:
                src_cfg, src_text = _seal(src, src_cfg, tmp, src_text)
            keys = tb.snapshot_clone(src.dir, src_cfg, tmp)
        elif tb.name == sb.name and not _container_lowers(src_cfg, src.dir, src.lxpath):
            keys = tb.full_copy(src.dir, src_cfg, tmp)
        else:
            with sb.mounted(src.dir, src_cfg) as view:
                keys = tb.import_tree(view, tmp)
        copy_extras(src.dir, src_cfg, tmp)
        text = render_config(src_text, keys=keys, old_dir=src.dir, new_dir=dst.dir,
                             old_name=src.name, new_name=new_name,
                             keep_hostname=keep_hostname, keep_macs=keep_macs,
                             origin=src.name if snapshot else None)
        write_new(tmp / CONFIG_NAME, text)
        os.chmod(tmp, os.stat(src.dir).st_mode & 0o7777)
        cfg = load(tmp / CONFIG_NAME)
        if cfg.hooks.clone:
            with tb.mounted(tmp, cfg) as root:
                if not keep_hostname:
                    update_hostname(root, src_cfg.hostname or src.name,
                                    cfg.hostname or new_name)
                run_clone_hooks(cfg, tmp, root, new_name, src.name, dst.lxpath)
        elif not keep_hostname:
            with tb.editable(tmp, cfg, HOST_FILES) as root:
                update_hostname(root, src_cfg.hostname or src.name, cfg.hostname or new_name)
        if before_publish is not None:
            before_publish(tmp)
        publish(tmp, dst.dir)
    return dst


def freeze(src: Container, src_cfg: Any) -> Any:
    """Turn a dir (or btrfs) container into an overlay over its own tree, which stays where
    it is, byte for byte, and becomes read-only: its own changes go to delta/ from now on,
    so it and its snapshot clones (overlays on the same tree) never see each other's
    writes. One atomic config replace switches it; the new empty dirs made before are
    harmless if we are killed before that. Returns the new config."""
    tree = rootfs_dir(src.dir, src_cfg)
    if not tree.is_dir():
        raise StorageError(f"{tree}: the rootfs of {src.name!r} is missing")
    rel = os.path.relpath(tree, src.dir) if _inside(tree, src.dir) else os.fspath(tree)
    if rel == MERGED:
        raise StorageError(f"{src.name!r}: its rootfs is named {MERGED!r}, which an overlay "
                           "snapshot clone needs", "drop -s for a full copy")
    (src.dir / MERGED).mkdir(mode=0o755, exist_ok=True)
    delta = src.dir / "delta"
    if delta.exists() and not (delta.is_dir() and is_empty_dir(delta)):
        raise StorageError(f"{delta}: in the way of an overlay snapshot clone",
                           "move it away, or drop -s for a full copy")
    delta.mkdir(mode=0o755, exist_ok=True)
    copy_dir_attrs(tree, delta)
    (src.dir / "work").mkdir(mode=0o700, exist_ok=True)
    set_keys(src.config_path, {"rootfs.backend": "overlay", "rootfs.path": MERGED,
                               "rootfs.lower": rel})
    log.info("%s is now an overlay over its own tree %s (frozen for its snapshot clones)",
             src.name, tree)
    return load(src.config_path)


def _seal(src: Container, src_cfg: Any, dst_dir: Path, text: str) -> tuple[Any, str]:
    """layers.seal of src (its config src_cfg, its config.toml's text) for a snapshot clone
    into dst_dir: the (new) config and text."""
    from .layers import seal as seal_dir

    def render(lower: str) -> str:
        return render_config(text, keys={"rootfs.lower": lower}, old_dir=src.dir,
                             new_dir=src.dir, old_name=src.name, new_name=src.name,
                             keep_hostname=True, keep_macs=True,
                             origin=src_cfg.rootfs.origin or None)
    new_text = seal_dir(os.fspath(src.dir), src.name, src_cfg, os.fspath(dst_dir), render)
    if new_text is None:
        return src_cfg, text
    return load(src.config_path), new_text


def changes_on_tmpfs(cdir: Path) -> None:
    """Move an overlay container's delta and work dirs onto a tmpfs mounted in cdir (for
    ephemeral copies: lxpy-copy -e -t); they become symlinks to it. Destroy unmounts it."""
    cfg = load(cdir / CONFIG_NAME)
    if cfg.rootfs.backend != "overlay":
        raise StorageError("-t needs an overlay copy", "use -e -t without -B, or -B overlay")
    t = cdir / ".tmpfs"
    t.mkdir(mode=0o700)
    mount("tmpfs", t, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    for part in ("delta", "work"):
        copy_tree(cdir / part, t / part)
        remove_tree(cdir / part)
        os.symlink(f".tmpfs/{part}", cdir / part)


# -- rename ---------------------------------------------------------------------------------

def rename_container(src: Container, new_name: str, keep_hostname: bool = False) -> Container:
    """lxpy-copy -R: rename in place (O(1)). Killed at any moment, the next lxpy command
    puts it back under its old name."""
    from . import for_config
    src.require()
    dst = Container(new_name, src.lxpath)
    if dst.name == src.name:
        raise UsageError("the new name is the same as the old one")
    sweep(src.lxpath)
    with ExitStack() as stack:
        stack.enter_context(src.lock(wait=5, what="busy"))
        stack.enter_context(dst.lock(wait=0, what="being created"))
        if dst.dir.exists() or dst.dir.is_symlink():
            raise ContainerExists(f"container {new_name!r} already exists in {dst.lxpath}",
                                  "pick another name, or lxpy-destroy it first")
        require_stopped(src, "renaming it")
        deps = dependants(src, hard_only=True)
        if deps:
            raise StorageError(f"container {src.name!r} cannot be renamed: the rootfs of "
                               f"{', '.join(deps)} lies on its tree",
                               "destroy those first")
        cfg = load(src.config_path)
        old_text = src.config_path.read_text()
        b = for_config(cfg)
        tmp = new_tmp(src.lxpath, "rename", new_name)
        journal = src.dir / RENAME_JOURNAL
        write_json(journal, {"old": src.name, "new": new_name, "config": old_text,
                             "files": None})
        os.rename(src.dir, tmp)        # gone from lxpy-ls; the sweep can put it back
        try:
            text = render_config(old_text, keys={}, old_dir=src.dir, new_dir=dst.dir,
                                 old_name=src.name, new_name=new_name,
                                 keep_hostname=keep_hostname, keep_macs=True, origin=None)
            # render_config drops rootfs.lower/origin when keys lack them: keep them
            import tomlkit
            doc = tomlkit.parse(text)
            old_rt = tomlkit.parse(old_text).get("rootfs", {})
            for k in ("lower", "origin"):
                if k in old_rt:
                    doc.setdefault("rootfs", tomlkit.table())[k] = old_rt[k]
            if not keep_hostname:
                with b.editable(tmp, cfg, HOST_FILES) as root:
                    # the journal holds the files before they change: killed in between,
                    # the sweep puts back what was there
                    before = read_host_files(root)
                    write_json(tmp / RENAME_JOURNAL, {
                        "old": src.name, "new": new_name, "config": old_text,
                        "files": {k: (v.hex() if v is not None else None)
                                  for k, v in before.items()}})
                    update_hostname(root, cfg.hostname or src.name,
                                    new_name if not cfg.hostname or
                                    cfg.hostname == src.name else cfg.hostname, before)
            write_new(tmp / CONFIG_NAME, tomlkit.dumps(doc))
            publish(tmp, dst.dir)
        except BaseException:
            undo_rename(src.lxpath, tmp)
            raise
    try:
        (dst.dir / RENAME_JOURNAL).unlink()
    except FileNotFoundError:
        pass
    try:
        src.lock_path.unlink()
    except FileNotFoundError:
        pass
    return dst


def undo_rename(lxpath: Path, tmp: Path) -> None:
    """Put an interrupted rename back under the old name, with its old config and files."""
    from . import for_config
    if not tmp.exists():
        return
    try:
        j = json.loads((tmp / RENAME_JOURNAL).read_text())
    except (OSError, ValueError):
        log.warning("%s: an interrupted rename without a journal; left as it is", tmp)
        return
    old = Container(j["old"], lxpath)
    if j.get("files"):
        try:
            cfg = load(tmp / CONFIG_NAME)
            with for_config(cfg).editable(tmp, cfg, tuple(j["files"])) as root:
                restore_files(root, {k: (bytes.fromhex(v) if v is not None else None)
                                     for k, v in j["files"].items()})
        except Exception as e:  # noqa: BLE001 - the tree is still there, say so
            log.warning("%s: could not restore /etc/hostname and /etc/hosts: %s", tmp, e)
    write_new(tmp / CONFIG_NAME, j["config"])
    if old.dir.exists():
        log.warning("%s: cannot move back to %s, which exists now", tmp, old.dir)
        return
    os.rename(tmp, old.dir)
    try:
        (old.dir / RENAME_JOURNAL).unlink()
    except FileNotFoundError:
        pass
    log.info("put back %s after an interrupted rename", old.name)

"""lxpy-copy -s of a stopped overlay container into its own lxpath, the usual snapshot
clone, with paths as strings: no pathlib, re, enum, tomllib or container layer (with what
they import, ~25 ms of a command that LXC does in ~15). Anything else, or anything unusual
on the way, is storage.clone.copy_container's: snapshot_clone() then returns False having
made nothing, and the caller goes the usual way, which does the same for this case.

Crash safety as copy_container: the source is sealed as it does it (layers.seal: its view
never changes), the clone is made in .tmp-copy-NAME-* (never listed, removed by the next
command's sweep) and appears with one rename (_publish)."""

from __future__ import annotations

import fcntl
import os

from ..config import slots
from ..config.cache import load as load_config
from ..where import LOG_SUBDIR
from .copy import is_empty_dir

CONFIG = "config.toml"
TMP = ".tmp-"                   # storage.clone.TMP
# what copy_extras does not copy (storage.clone._storage_entries of an overlay container,
# and the logs of a container of another lxpath than the system's)
_STORAGE = frozenset((CONFIG, "rootfs", "delta", "work", "snaps", "merged", "layers",
                      LOG_SUBDIR))


def _flock(path: str) -> int | None:
    """An exclusive flock on path (the Container.lock file), or None when someone has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _overlay_ok(lxpath: str) -> bool:
    """OverlayBackend.available(lxpath). A filesystem on a block device (ext4, xfs: a
    device major other than 0) is not an overlay, which says so without statfs and the
    _ctypes it takes (~1 ms)."""
    try:
        with open("/proc/filesystems") as f:
            if not any(ln.split()[-1] == "overlay" for ln in f if ln.strip()):
                return False
        if os.major(os.stat(lxpath).st_dev) != 0:
            return True
        from ..linux.rawc import OVERLAYFS_SUPER_MAGIC, statfs_type
        return statfs_type(lxpath) != OVERLAYFS_SUPER_MAGIC
    except OSError:
        return False


def snapshot_clone(lxpath: str, name: str, new: str, keep_hostname: bool = False,
                   keep_macs: bool = False) -> bool:
    """Make new, a snapshot clone of name, both in lxpath (absolute, normalized), when name
    is a stopped overlay container (sealed first when its delta holds changes) with no
    clone hooks, nothing else in its directory and a config whose edit needs no tomlkit.
    False: no clone made (copy_container's case, or its error to report)."""
    if not os.path.isabs(lxpath) or os.path.normpath(lxpath) != lxpath \
            or lxpath.startswith("//") or new == name:
        return False                # Container's Path(lxpath) would spell it otherwise
    src = f"{lxpath}/{name}"
    dst = f"{lxpath}/{new}"
    try:
        if any(e.startswith(TMP) for e in os.listdir(lxpath)):
            return False            # something for the sweep
    except OSError:
        return False
    if not os.path.isfile(f"{src}/{CONFIG}") or os.path.lexists(dst):
        return False
    from ..where import run_dir_of
    if os.path.lexists(run_dir_of(lxpath, name)):
        return False                # running, or was: query() decides
    fds = []
    try:
        for n in (name, new):
            fd = _flock(f"{lxpath}/.{n}.lock")
            if fd is None:
                return False        # busy: copy_container waits, then tells
            fds.append(fd)
        if os.path.lexists(dst) or os.path.lexists(run_dir_of(lxpath, name)):
            return False
        return _clone(lxpath, name, new, src, dst, keep_hostname, keep_macs)
    finally:
        for fd in fds:
            os.close(fd)


def _seal(src: str, name: str, cfg, dst: str, lay) -> tuple:
    """layers.seal of the source, its config edited through its layout: the new layout and
    Config, or (None, cfg) when it was not sealed."""
    from .identity import clone_layout
    from .layers import seal
    origin = lay.data.get("rootfs", {}).get("origin")

    def render(lower: str):
        edited = clone_layout(lay, keys={"rootfs.lower": lower}, old_dir=src, new_dir=src,
                              old_name=name, new_name=name, keep_hostname=True,
                              keep_macs=True,
                              origin=origin if isinstance(origin, str) and origin else None)
        return None if edited is None else (edited.text, edited)
    made = seal(src, name, cfg, dst, render)
    if made is True or made is False:
        return None, cfg
    new_lay = made[1]
    slots.save(src, new_lay)
    cpath = f"{src}/{CONFIG}"
    new_cfg = slots.config_after(cfg, lay, new_lay, cpath)
    if new_cfg is None:
        return new_lay, load_config(cpath)
    from ..config.cache import remember
    remember(cpath, new_cfg, new_lay.text)
    return new_lay, new_cfg


def _rename_host(upper: str, lowers: list[str], old: str, new: str) -> bool:
    """identity.update_hostname of the clone, as its own copy-up: /etc/hostname and
    /etc/hosts are written into the fresh upper (a directory this command made) with their
    new contents, not copied and then rewritten. False: the layers hold anything copy_up
    does not follow, or no /etc/hostname (update_hostname then makes one)."""
    from .copyup import copy_up
    from .identity import renamed_host_files
    seen: dict[str, bytes] = {}

    def hostname(data: bytes) -> bytes:
        seen["hostname"] = data
        return renamed_host_files(data, None, old, new)[0]

    def hosts(data: bytes) -> bytes | None:
        return renamed_host_files(seen["hostname"], data, old, new)[1]
    try:
        return (copy_up(upper, lowers, "etc/hostname", hostname) and "hostname" in seen
                and copy_up(upper, lowers, "etc/hosts", hosts))
    except OSError:                 # (OverlayBackend.editable mounts then)
        return False


def _publish(tmp: str, dst: str, new: str) -> None:
    """The clone appears: rename(2) of the temp dir to dst, which this command (holding
    new's lock, as every lxpy command that makes new does) found absent. A plain rename, not
    renameat2(RENAME_NOREPLACE), whose _ctypes costs ~1 ms: if anything else made dst
    meanwhile, rename fails (ENOTEMPTY, EEXIST, ENOTDIR) unless dst is an empty directory,
    which it then replaces, and no data is lost either way."""
    if os.path.lexists(dst):
        from ..errors import ContainerExists
        raise ContainerExists(f"container {new!r} already exists")
    try:
        os.rename(tmp, dst)
    except OSError as e:
        if not os.path.lexists(dst):
            raise
        from ..errors import ContainerExists
        raise ContainerExists(f"container {new!r} already exists") from e


def _clone(lxpath: str, name: str, new: str, src: str, dst: str, keep_hostname: bool,
           keep_macs: bool) -> bool:
    import _signal            # (signal imports enum: ~6 ms)

    def _term(signum, frame):          # clean up as for Ctrl-C (the temp copy goes)
        raise KeyboardInterrupt
    _signal.signal(_signal.SIGTERM, _term)
    _signal.signal(_signal.SIGHUP, _term)
    cpath = f"{src}/{CONFIG}"
    with open(cpath) as f:
        text = f.read()
    cfg = load_config(cpath)
    with open(cpath) as f:
        if f.read() != text:
            return False            # edited meanwhile
    if cfg.rootfs.backend != "overlay" or cfg.hooks.clone:
        return False
    root = cfg.rootfs.path
    if any(e not in _STORAGE and not e.startswith(".") and e != root
           for e in os.listdir(src)):
        return False                # extras to copy
    if not _overlay_ok(lxpath):
        return False
    lay = slots.load(src, text)
    if lay is None:
        return False
    from .identity import clone_layout

    def lowers_of(cfg) -> list[str] | None:
        out = []
        for p in str(cfg.rootfs.lower or "").split(":"):
            if p:
                p = os.path.abspath(p if p.startswith("/") else f"{src}/{p}")
                if ":" in p or "," in p or "\\" in p:
                    return None     # base.join_lowers refuses it, with its message
                out.append(p)
        return out

    def clone_of(lay, cfg):
        lowers = lowers_of(cfg)
        if lowers is None:
            return None, None
        keys = {"rootfs.backend": "overlay", "rootfs.path": "rootfs",
                "rootfs.lower": ":".join(lowers)}
        return lowers, clone_layout(lay, keys=keys, old_dir=src, new_dir=dst, old_name=name,
                                    new_name=new, keep_hostname=keep_hostname,
                                    keep_macs=keep_macs, origin=name)
    # what decides this does not change with the seal (it edits rootfs.lower only)
    if clone_of(lay, cfg)[1] is None:
        return False
    delta = f"{src}/delta"
    if os.path.islink(delta):
        return False                # a tmpfs delta (-e -t): copied, the usual way
    if not is_empty_dir(delta):
        lay, cfg = _seal(src, name, cfg, dst, lay)
        if lay is None or not is_empty_dir(delta):
            return False
    lowers, new_lay = clone_of(lay, cfg)
    if new_lay is None:
        return False
    tmp = f"{lxpath}/{TMP}copy-{new}-{os.urandom(4).hex()}"
    os.mkdir(tmp, 0o700)
    synced = None
    done = False
    try:
        from .copy import copy_dir_attrs
        # OverlayBackend.snapshot_clone of a sealed source: an empty delta over its lowers
        os.mkdir(f"{tmp}/rootfs", 0o755)
        os.mkdir(f"{tmp}/delta", 0o755)
        copy_dir_attrs(delta, f"{tmp}/delta")
        os.mkdir(f"{tmp}/work", 0o700)
        from ..config.atomic import write_fresh
        synced = write_fresh(f"{tmp}/{CONFIG}", new_lay.text)
        os.chmod(tmp, os.stat(src).st_mode & 0o7777)
        slots.save(tmp, new_lay)
        ccfg = slots.config_after(cfg, lay, new_lay, f"{dst}/{CONFIG}")
        if ccfg is None:
            return False
        from ..config.cache import remember
        remember(f"{dst}/{CONFIG}", ccfg, new_lay.text, tmp)
        if not keep_hostname and not _rename_host(f"{tmp}/delta", lowers,
                                                  cfg.hostname or name, ccfg.hostname or new):
            return False            # the layers need a real mount: copy_container's
        synced()                    # the clone's config is on disk before it appears
        _publish(tmp, dst, new)
        done = True
    finally:
        if not done:                # False, or an error: nothing made
            if synced is not None:
                try:
                    synced()
                except OSError:
                    pass
            from .copy import remove_tree
            remove_tree(tmp)
    return True

"""overlay: the container's changes live in delta/ (overlayfs upper, work/ beside it) over
read-only lower trees: the template cache, a dir container's rootfs for a snapshot clone, and
layers/N: what the container's delta held when a snapshot clone was made of it.

rootfs.lower lists the lowers, topmost first, ':'-separated; the container's own layers are
relative (they follow a rename), others absolute. A snapshot clone is O(1): the source's
delta becomes one more read-only layer of its own (layers.seal: one directory exchange), and
the clone is a new empty delta over the source's lowers, layers included. Both go on
independently, on their own deltas, and no overlay is stacked on another; the clone depends
on the source's layers (storage.dependants() sees it, lxpy-destroy refuses). A full copy
copies the delta and the own layers and shares the other lowers."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import KernelFeatureError, StorageError
from ..linux import mount as m
from ..linux.fsops import OVERLAYFS_SUPER_MAGIC, fs_name, statfs_type
from ..linux.mount import MNT_DETACH, is_mountpoint, mount, umount2
from ..linux.prctl import fs_ids
from .base import (IDMAP_KERNELS, Backend, idmapped_clone, join_lowers, own_path, rootfs_dir,
                   split_lowers)
from .copyup import copy_up
from .layers import LAYERS, MAX_LOWERS, MAX_OPTIONS, too_deep  # noqa: F401 - also for others
from .tree import copy_dir_attrs, copy_tree, is_empty_dir, remove_tree, tree_usage

log = logging.getLogger("lxpy.storage")

_available: bool | None = None


def _kernel_has_overlay() -> bool:
    global _available
    if _available is None:
        try:
            with open("/proc/filesystems") as f:
                _available = any(line.split()[-1] == "overlay" for line in f if line.strip())
        except OSError:
            _available = False
    return _available


def mount_options(lowers: list[Path], upper: Path, work: Path) -> str:
    if not lowers:
        raise StorageError("overlay: the config has no rootfs.lower",
                           "set rootfs.lower to the read-only tree, or use the dir backend")
    for p in lowers:
        if not p.is_dir():
            raise StorageError(f"overlay lower {p} is missing",
                               "its cache entry or origin container was removed; "
                               "recreate the container or restore it from a snapshot")
    return (f"lowerdir={join_lowers(lowers)},upperdir={join_lowers([upper])},"
            f"workdir={join_lowers([work])}")


def mount_overlay(lowers: list[Path], upper: Path, work: Path, target: Path,
                  idmapped: bool = False) -> None:
    """idmapped: the layers are idmapped mounts (an unprivileged container's overlay)."""
    data = mount_options(lowers, upper, work)
    if len(data) > MAX_OPTIONS or len(lowers) > MAX_LOWERS:
        raise StorageError(f"overlay: too many lower layers for one mount ({len(lowers)})",
                           "make a full copy (lxpy-copy without -s) to flatten it")
    try:
        mount("overlay", target, "overlay", 0, data)
    except OSError as e:
        hint = None
        if e.errno == errno.EBUSY:
            hint = "its delta is in use by another overlay mount (is the container running?)"
        elif e.errno == errno.EINVAL and idmapped:
            raise KernelFeatureError(
                f"overlayfs refused idmapped layers at {target} ({IDMAP_KERNELS})",
                "on an older kernel use the dir or btrfs backend for an unprivileged "
                "container (lxpy-copy -B dir)") from None
        elif e.errno == errno.EINVAL:
            hint = "the kernel refused the layers (overlay on overlay stacks 2 levels at most)"
        raise StorageError(f"cannot mount the overlay at {target}: {e.strerror}", hint) from None


class OverlayBackend(Backend):
    name = "overlay"
    description = "overlayfs: changes in delta/ over the read-only cache (instant create/clone)"
    snapshot_part = "delta"

    def available(self, lxpath: Path) -> tuple[bool, str]:
        if not _kernel_has_overlay():
            return False, "the kernel has no overlay filesystem (modprobe overlay)"
        p = Path(lxpath)
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            t = statfs_type(p)
        except OSError as e:
            return False, f"cannot inspect {p}: {e.strerror}"
        if t == OVERLAYFS_SUPER_MAGIC:
            return False, f"{p} is itself on overlayfs ({fs_name(p)}), which cannot hold an upper"
        return True, ""

    # -- layout ------------------------------------------------------------------------
    @staticmethod
    def delta(cdir: Path) -> Path:
        return Path(cdir) / "delta"

    @staticmethod
    def work(cdir: Path) -> Path:
        return Path(cdir) / "work"

    def lowers(self, cdir: Path, cfg: Any) -> list[Path]:
        return split_lowers(cfg.rootfs.lower, cdir)

    def _make_layout(self, cdir: Path, like: Path | None) -> None:
        cdir = Path(cdir)
        (cdir / "rootfs").mkdir(mode=0o755, exist_ok=True)
        if not self.delta(cdir).exists():
            self.delta(cdir).mkdir(mode=0o755)
            if like is not None:
                copy_dir_attrs(like, self.delta(cdir))
        self.work(cdir).mkdir(mode=0o700, exist_ok=True)

    def _keys(self, lowers: list[Path]) -> dict[str, str]:
        """Absolute lowers, except relative ones (the container's own layers) kept so."""
        return {"rootfs.backend": "overlay", "rootfs.path": "rootfs",
                "rootfs.lower": join_lowers([p if not p.is_absolute()
                                             else Path(os.path.abspath(p)) for p in lowers])}

    @staticmethod
    def own_layer(cdir: Path, lower: Path) -> str | None:
        """'layers/N' when lower is one of the container's own layers, else None."""
        try:
            rel = Path(os.path.realpath(lower)).relative_to(
                os.path.realpath(Path(cdir) / LAYERS))
        except ValueError:
            return None
        return f"{LAYERS}/{rel}" if len(rel.parts) == 1 else None

    # -- interface -----------------------------------------------------------------------
    def create_from(self, base: Path, cdir: Path) -> dict[str, str]:
        base = Path(os.path.realpath(base))     # never a symlink a cache flush repoints
        if not base.is_dir():
            raise StorageError(f"{base}: the base tree is missing")
        keys = self._keys([base])
        self._make_layout(cdir, base)
        return keys

    def mount(self, cdir: Path, cfg: Any, target: Path) -> None:
        mount_overlay(self.lowers(cdir, cfg), self.delta(cdir), self.work(cdir), Path(target))

    def idmapped_tree(self, cdir: Path, cfg: Any, userns_fd: int, owner: tuple[int, int],
                      scratch: Path) -> int:
        """An overlay mount cannot be idmapped, its layers can: each lower and the container
        directory (delta/ and work/ must be on one mount) are cloned idmapped and attached
        under scratch, the overlay is mounted on them with the container root's host ids as
        its mounter's (it creates work/work and copies up through the idmapped upper with
        them: host root is not mapped there, and the overlay would come up read-only), and
        cloned detached. What it writes lands on disk with the container's own ids, with
        the same trusted.overlay.* xattrs as a privileged mount's: one delta serves both."""
        lowers = self.lowers(cdir, cfg)
        mount_options(lowers, self.delta(cdir), self.work(cdir))    # all there?
        # delta/ and work/ side by side (in cdir, or on the tmpfs of an ephemeral copy
        # they link to): that directory is idmapped
        upper, work = (Path(os.path.realpath(p)) for p in (self.delta(cdir), self.work(cdir)))
        if upper.parent != work.parent:
            raise StorageError(f"{cdir}: delta/ and work/ are not in one directory",
                               "the container directory is damaged")
        base = Path(scratch) / "ovl"
        made: list[Path] = []
        try:
            layers = []
            for i, src in enumerate([*lowers, upper.parent]):
                d = base / str(i)
                d.mkdir(parents=True, exist_ok=True)
                fd = idmapped_clone(src, userns_fd, recursive=False)
                try:
                    m.move_mount(fd, d)
                finally:
                    os.close(fd)
                made.append(d)
                layers.append(d)
            top = layers.pop()
            merged = base / "m"
            merged.mkdir(exist_ok=True)
            with fs_ids(*owner):
                mount_overlay(layers, top / upper.name, top / work.name, merged, idmapped=True)
            made.append(merged)
            if os.statvfs(merged).f_flag & os.ST_RDONLY:
                raise StorageError(f"the overlay of {cdir} came up read-only (its work/ could "
                                   "not be used through the idmapped mount)",
                                   f"the kernel log says why; check {self.work(cdir)}")
            return m.open_tree(merged, m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC)
        finally:
            for d in reversed(made):
                umount2(d, MNT_DETACH)
            for d in [*(base.iterdir() if base.is_dir() else ()), base]:
                try:
                    d.rmdir()
                except OSError:
                    pass

    @contextmanager
    def mounted(self, cdir: Path, cfg: Any) -> Iterator[Path]:
        target = rootfs_dir(cdir, cfg)
        target.mkdir(mode=0o755, exist_ok=True)
        if is_mountpoint(target):          # left by a killed command: replace it
            umount2(target, MNT_DETACH)
        self.mount(cdir, cfg, target)
        try:
            yield target
        finally:
            try:
                umount2(target)
            except OSError:
                umount2(target, MNT_DETACH)

    @contextmanager
    def editable(self, cdir: Path, cfg: Any, rels: tuple[str, ...]) -> Iterator[Path]:
        """The delta itself, after copying up by hand what rels need (their parent dirs
        with owner, mode, times and xattrs, and the files themselves) from the topmost lower
        that has them, as the overlay would on a write. Only plain files in plain dirs are
        handled so; anything else (symlinks, whiteouts, opaque dirs) gets a real mount.
        This avoids a mount and the sync of the upper filesystem on unmount."""
        upper = self.delta(cdir)
        try:
            lowers = [os.fspath(p) for p in self.lowers(cdir, cfg)]
            direct = all(copy_up(os.fspath(upper), lowers, rel) for rel in rels)
        except OSError as e:
            log.debug("copy-up by hand in %s failed (%s): mounting", upper, e)
            direct = False
        if direct:
            yield upper
        else:
            with self.mounted(cdir, cfg) as root:
                yield root

    def destroy(self, cdir: Path, cfg: Any) -> None:
        root = rootfs_dir(cdir, cfg)
        if own_path(cdir, root):      # a mount point elsewhere is the admin's: kept
            remove_tree(root)         # unmounts first
        for p in (self.delta(cdir), self.work(cdir)):
            remove_tree(p)

    def data_path(self, cdir: Path, cfg: Any) -> Path:
        return self.delta(cdir)

    def usage(self, cdir: Path, cfg: Any) -> int:
        """The delta, plus its own sealed tree when it has one (lifecycle.copy.seal_for_clone)."""
        total = tree_usage(self.delta(cdir))
        real = os.path.realpath(cdir)
        for low in self.lowers(cdir, cfg):
            if os.path.realpath(low).startswith(real + "/"):
                total += tree_usage(low)
        return total

    # -- clone and snapshot --------------------------------------------------------------
    def full_copy(self, src_cdir: Path, src_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        """Copy the delta and the source's own layers, share the other (read-only) lowers."""
        if src_cfg.rootfs.backend != "overlay":
            raise StorageError("a full copy to the overlay backend needs an overlay source",
                               "use -s for an overlay snapshot clone, or -B dir")
        lowers = []
        for low in self.lowers(src_cdir, src_cfg):
            own = self.own_layer(src_cdir, low)
            if own is not None:
                (Path(dst_cdir) / LAYERS).mkdir(mode=0o755, exist_ok=True)
                copy_tree(low, Path(dst_cdir) / own)
                low = Path(own)
            lowers.append(low)
        copy_tree(self.delta(src_cdir), self.delta(dst_cdir))
        self._make_layout(dst_cdir, None)
        return self._keys(lowers)

    def snapshot_clone(self, src_cdir: Path, src_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        """Of an overlay source: a new empty delta over all its lowers (O(1)) when its delta
        is empty, as layers.seal leaves it; else (a running source, -a) a copy of its delta."""
        if src_cfg.rootfs.backend == "overlay":
            lowers = [Path(os.path.abspath(p)) for p in self.lowers(src_cdir, src_cfg)]
            src_delta = self.delta(src_cdir)
            keys = self._keys(lowers)
            if src_delta.is_symlink() or not is_empty_dir(src_delta):
                copy_tree(src_delta, self.delta(dst_cdir))
                self._make_layout(dst_cdir, None)
            else:
                self._make_layout(dst_cdir, src_delta)
            return keys
        # dir or btrfs source: its rootfs becomes our lower (the source must stay unchanged
        # for the clone to stay as it was: the clone depends on it, see dependants()).
        lower = Path(os.path.abspath(rootfs_dir(src_cdir, src_cfg)))
        keys = self._keys([lower])
        self._make_layout(dst_cdir, lower)
        return keys

    def save_snapshot(self, cdir: Path, cfg: Any, snapdir: Path) -> None:
        copy_tree(self.delta(cdir), Path(snapdir) / "delta")

    def from_snapshot(self, snapdir: Path, snap_cfg: Any, dst_cdir: Path) -> dict[str, str]:
        # relative lowers are relative to the container the snapshot was taken of
        lowers = split_lowers(snap_cfg.rootfs.lower, Path(snapdir).parent.parent)
        copy_tree(Path(snapdir) / "delta", self.delta(dst_cdir))
        self._make_layout(dst_cdir, None)
        return self._keys(lowers)

    def import_tree(self, tree: Path, dst_cdir: Path) -> dict[str, str]:
        raise StorageError("a full copy to the overlay backend needs an overlay source",
                           "use -s for an overlay snapshot clone, or -B dir")

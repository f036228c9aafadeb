"""Storage pools lxpy makes (lxpy-storage): a loop-backed btrfs or xfs filesystem, so that
limits.disk can be enforced on a host whose own filesystem has no quotas. A pool is an
lxpath: containers go there with -P (lxpy-create -P, lxpy-copy -p).

    <storage>/NAME.img      the filesystem image (sparse; its size is the pool's size)
    <storage>/NAME/         where it is mounted: the pool's lxpath
    <storage>/NAME.json     what lxpy-storage knows of it (driver, size), written last
    /etc/systemd/system/<escaped path>.mount   mounts it at boot (enabled: local-fs.target)

<storage> is the system setting `storage` (/var/lib/lxpy/storage). btrfs pools limit
containers with qgroups (-B btrfs), xfs pools (mounted with prjquota) with project quotas
(-B dir or overlay).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.atomic import write_new
from ..config.schema import CONTAINER_NAME_RE, format_size, parse_size
from ..container import Container
from ..errors import StorageError, UsageError
from ..linux.loop import loop_attach
from ..linux.mount import is_mountpoint, mount, umount2
from ..paths import system_config

log = logging.getLogger("lxpy.storage")

UNIT_DIR = Path("/etc/systemd/system")
WANTED_BY = "local-fs.target"


@dataclass(frozen=True)
class Driver:
    name: str
    mkfs: tuple[str, ...]       # the image path is appended
    options: str                # mount options (also the unit's, after "loop")
    package: str
    min_size: int
    enforces: str               # which backends limits.disk works with in such a pool


DRIVERS: dict[str, Driver] = {
    "btrfs": Driver("btrfs", ("mkfs.btrfs", "-q"), "", "btrfs-progs", 128 << 20,
                    "btrfs (qgroups)"),
    "xfs": Driver("xfs", ("mkfs.xfs", "-q"), "prjquota", "xfsprogs", 300 << 20,
                  "dir and overlay (project quotas)"),
}


def unit_escape(path: str | os.PathLike) -> str:
    """systemd-escape --path."""
    p = os.path.normpath(os.fspath(path)).strip("/")
    out = []
    for i, ch in enumerate(p):
        if ch == "/":
            out.append("-")
        elif ch.isascii() and (ch.isalnum() or ch == "_" or (ch == "." and i > 0)):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out)


@dataclass(frozen=True)
class Pool:
    name: str
    root: Path

    @property
    def image(self) -> Path:
        return self.root / f"{self.name}.img"

    @property
    def path(self) -> Path:
        """The mount point: the pool's lxpath."""
        return self.root / self.name

    @property
    def record(self) -> Path:
        return self.root / f"{self.name}.json"

    @property
    def unit(self) -> Path:
        return UNIT_DIR / f"{unit_escape(self.path)}.mount"

    @property
    def wants(self) -> Path:
        return UNIT_DIR / f"{WANTED_BY}.wants" / self.unit.name

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.record.read_text())
        except (OSError, ValueError) as e:
            raise StorageError(f"pool {self.name!r}: cannot read {self.record}: {e}") from None

    def mounted(self) -> bool:
        return self.path.is_dir() and is_mountpoint(self.path)

    def containers(self) -> list[str]:
        return [c.name for c in Container.all(self.path)] if self.mounted() else []


def root() -> Path:
    return system_config().storage


def pools() -> list[Pool]:
    r = root()
    if not r.is_dir():
        return []
    return [Pool(p.stem, r) for p in sorted(r.glob("*.json")) if not p.name.startswith(".")]


def get(name: str) -> Pool:
    pool = Pool(_check_name(name), root())
    if not pool.record.exists():
        raise StorageError(f"there is no storage pool {name!r}", "lxpy-storage ls lists them")
    return pool


def _check_name(name: str) -> str:
    if not CONTAINER_NAME_RE.fullmatch(name):
        raise UsageError(f"{name!r} is not a pool name (letters, digits, '.', '_' and '-', "
                         "at most 63, starting with a letter or digit)")
    return name


def unit_text(pool: Pool, driver: Driver) -> str:
    opts = ",".join(o for o in ("loop", driver.options) if o)
    return (f"# made by lxpy-storage create {pool.name}; lxpy-storage rm {pool.name} "
            "removes it\n"
            f"[Unit]\nDescription=lxpy storage pool {pool.name}\nBefore=lxpy.service\n\n"
            f"[Mount]\nWhat={pool.image}\nWhere={pool.path}\nType={driver.name}\n"
            f"Options={opts}\n\n[Install]\nWantedBy={WANTED_BY}\n")


def _systemd_reload() -> None:
    if os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True)


def _mount(pool: Pool, driver: Driver) -> None:
    with loop_attach(pool.image) as dev:
        try:
            mount(dev, pool.path, driver.name, 0, driver.options or None)
        except OSError as e:
            if driver.name == "xfs" and e.errno == errno.EINVAL:
                raise StorageError(f"pool {pool.name!r}: this kernel's xfs cannot mount with "
                                   "project quotas (no CONFIG_XFS_QUOTA), so an xfs pool "
                                   "would not enforce limits.disk",
                                   "use --driver btrfs (qgroups)") from None
            raise StorageError(f"pool {pool.name!r}: cannot mount {pool.image} on "
                               f"{pool.path}: {e.strerror}") from None


def create(name: str, driver_name: str, size: str) -> Pool:
    """Make, mount and enable a pool; interrupted or refused, nothing of it is left."""
    pool = Pool(_check_name(name), root())
    driver = DRIVERS.get(driver_name)
    if driver is None:
        raise UsageError(f"{driver_name!r} is not a pool driver (use {' or '.join(DRIVERS)})")
    try:
        nbytes = parse_size(size)
    except ValueError as e:
        raise UsageError(f"--size: {e}") from None
    if nbytes < driver.min_size:
        raise UsageError(f"--size {size}: a {driver.name} pool needs at least "
                         f"{format_size(driver.min_size)}")
    if not shutil.which(driver.mkfs[0]):
        raise StorageError(f"{driver.mkfs[0]} is missing", f"apt install {driver.package}")
    if any(p.exists() or p.is_symlink() for p in (pool.record, pool.image, pool.path)):
        raise StorageError(f"storage pool {name!r} exists ({pool.path})",
                           "lxpy-storage info NAME shows it; pick another name")
    pool.root.mkdir(mode=0o755, parents=True, exist_ok=True)
    free = shutil.disk_usage(pool.root).free
    if free < nbytes:
        log.warning("pool %s: its image is sparse, and %s has only %s free of the %s it may "
                    "grow to", name, pool.root, format_size(free), format_size(nbytes))
    with ExitStack() as undo:
        fd = os.open(pool.image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        undo.callback(pool.image.unlink)
        try:
            os.ftruncate(fd, nbytes)
        finally:
            os.close(fd)
        r = subprocess.run([*driver.mkfs, os.fspath(pool.image)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            lines = (r.stderr.strip() or r.stdout.strip() or "?").splitlines()
            raise StorageError(f"{driver.mkfs[0]} failed: {lines[-1]}")
        pool.path.mkdir(mode=0o711)
        undo.callback(pool.path.rmdir)
        _mount(pool, driver)
        undo.callback(umount2, pool.path)
        pool.unit.parent.mkdir(parents=True, exist_ok=True)
        write_new(pool.unit, unit_text(pool, driver))
        undo.callback(pool.unit.unlink)
        pool.wants.parent.mkdir(exist_ok=True)
        pool.wants.symlink_to(f"../{pool.unit.name}")
        undo.callback(pool.wants.unlink)
        write_new(pool.record, json.dumps({"driver": driver.name, "size": nbytes}) + "\n")
        undo.pop_all()
    _systemd_reload()
    return pool


def remove(name: str) -> None:
    """Unmount and delete a pool; refused while containers live there."""
    pool = get(name)
    driver = DRIVERS.get(pool.meta().get("driver", ""), DRIVERS["btrfs"])
    if not pool.mounted() and pool.image.exists():
        _mount(pool, driver)            # to see whether containers are left there
    names = pool.containers()
    if names:
        raise StorageError(f"storage pool {name!r} holds containers: {', '.join(names)}",
                           f"destroy or move them first: lxpy-destroy -P {pool.path} -n NAME")
    if pool.mounted():
        try:
            umount2(pool.path)          # the loop device goes with it (autoclear)
        except OSError as e:
            raise StorageError(f"cannot unmount {pool.path}: {e.strerror}",
                               "something still uses it (fuser -vm PATH tells what)") from None
    for p in (pool.wants, pool.unit, pool.image, pool.record):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    if pool.path.is_dir():
        pool.path.rmdir()
    _systemd_reload()


def describe(pool: Pool) -> dict[str, Any]:
    meta = pool.meta()
    driver = DRIVERS.get(meta.get("driver", ""))
    out: dict[str, Any] = {
        "name": pool.name, "driver": meta.get("driver"), "size": meta.get("size"),
        "path": str(pool.path), "image": str(pool.image), "unit": str(pool.unit),
        "mounted": pool.mounted(), "limits_disk": driver.enforces if driver else None,
        "used": None, "free": None, "containers": pool.containers(),
    }
    try:
        out["image_bytes"] = pool.image.stat().st_blocks * 512
    except OSError:
        out["image_bytes"] = None
    if out["mounted"]:
        du = shutil.disk_usage(pool.path)
        out["used"], out["free"] = du.used, du.free
    return out

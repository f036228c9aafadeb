"""PID 1's mounts as data (mkosi's FSOperation): each operation says what it does
(describe(): the step's name, and a line of `lxpy-start --dry-run`) and does it (execute(),
run under child.step(), so a failure comes back as step, syscall, errno and path).

PID 1 runs them in order; PivotRoot is one of them: before it, paths are the host's (the
rootfs is mounted on the staging directory), after it, "/" is the container's root and
every path resolves inside it. What comes from the host (a bind mount's source, a pty, a
host device node, the readiness socket) is taken as a detached mount tree right before
pivot_root (take(), once the operations before it have run), and put in place after it.
"""

from __future__ import annotations

import errno
import os
import stat
import types
from dataclasses import dataclass, field
from pathlib import Path

from ..linux import mount as m
from . import notify

NOSUID_NODEV_NOEXEC = m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC
BOOT_ID = "/proc/sys/kernel/random/boot_id"


class Run:
    """What PID 1's operations share while they run (runtime state, not plan)."""

    def __init__(self, ptys: list[tuple[int, str]], trees: dict[object, int] | None = None):
        self.ptys = ptys                        # (master fd, slave path) of each tty
        # detached trees taken from the host, by op: first those the namespace helper made
        # (an unprivileged container's idmapped rootfs and bind mounts), then take()'s
        self.trees: dict[object, int] = dict(trees or {})
        self.notify_fd = -1
        self.env: dict[str, str] = {}           # what init's environment gains


@dataclass(frozen=True)
class Helper:
    """What the namespace helper of an unprivileged container (host root, in the host's
    user namespace and a private mount namespace of its own) gives helper_tree()."""
    userns_fd: int                  # the container's user namespace
    owner: tuple[int, int]          # the host uid and gid of the container's root
    scratch: str                    # a directory for temporary mount points


@dataclass(frozen=True)
class Op:
    # an unprivileged container: why the kernel may refuse it (a warning, not a failure)
    warn: str = field(default="", kw_only=True)

    def describe(self) -> str:
        raise NotImplementedError

    def helper_tree(self, helper: Helper) -> int | None:
        """In the namespace helper of an unprivileged container: a detached mount tree
        that only the host's user namespace can make (idmapped), or None. PID 1 finds it
        in run.trees[self]."""
        return None

    def take(self, run: Run) -> None:
        """Right before pivot_root: take what is needed of the host."""

    def execute(self, run: Run) -> None:
        raise NotImplementedError


def _put(run: Run, op: Op, target: str) -> None:
    """Move the tree op took from the host onto target (a file or directory there)."""
    fd = run.trees.pop(op)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.exists(target):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644))
    m.move_mount(fd, target)
    os.close(fd)


@dataclass(frozen=True)
class Private(Op):
    def describe(self) -> str:
        return "make / private"

    def execute(self, run: Run) -> None:
        m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)


class _RootfsOnly:
    """What a Backend reads of a Config (rootfs.*), without loading the config."""

    def __init__(self, values: dict):
        self.rootfs = types.SimpleNamespace(**values)

    def get(self, key: str):
        section, _, name = key.partition(".")
        if section != "rootfs":
            raise KeyError(key)
        return getattr(self.rootfs, name)


@dataclass(frozen=True)
class Rootfs(Op):
    """The rootfs on the staging directory. Privileged: PID 1 mounts it (a dir's bind mount
    without loading the storage layer, else the backend's mount()). Unprivileged: the
    namespace helper asks the backend for the rootfs idmapped to the container's ids
    (Backend.idmapped_tree) and PID 1 moves that tree into place."""
    backend: str
    dir: str                                # the container's directory
    rootfs: tuple[tuple[str, str], ...]     # its rootfs.* settings: backend, path, lower, origin
    source: str                             # the rootfs directory (dir: what is bound)
    target: str
    idmapped: bool

    def describe(self) -> str:
        return (f"mount rootfs {self.source}" if self.backend == "dir" else
                f"mount rootfs ({self.backend} backend)") + (
            ", idmapped to the container's ids" if self.idmapped else "")

    def helper_tree(self, helper: Helper) -> int | None:
        if not self.idmapped:
            return None
        from .. import storage  # the backends: only in the namespace helper (PID 1 is lean)
        return storage.get(self.backend).idmapped_tree(
            Path(self.dir), _RootfsOnly(dict(self.rootfs)), helper.userns_fd, helper.owner,
            Path(helper.scratch))

    def execute(self, run: Run) -> None:
        os.makedirs(self.target, exist_ok=True)
        if self.idmapped:
            fd = run.trees.pop(self)
            m.move_mount(fd, self.target)
            os.close(fd)
            return
        if self.backend == "dir":
            m.mount(self.source, self.target, None, m.MS_BIND | m.MS_REC)
            return
        from .. import storage  # the backends, only for a rootfs that is not a dir
        storage.get(self.backend).mount(Path(self.dir), _RootfsOnly(dict(self.rootfs)),
                                        Path(self.target))
        if not m.is_mountpoint(self.target):
            m.mount(self.target, self.target, None, m.MS_BIND | m.MS_REC)


@dataclass(frozen=True)
class RootfsDirs(Op):
    root: str

    def describe(self) -> str:
        return "check /proc, /sys and /dev in the rootfs"

    def execute(self, run: Run) -> None:
        for d in ("proc", "sys", "dev"):
            p = f"{self.root}/{d}"
            if os.path.islink(p):
                raise OSError(errno.ENOTDIR, f"/{d} is a symlink in the rootfs; it must be a "
                              "directory", p)
            if not os.path.exists(p):
                os.mkdir(p, 0o755)


@dataclass(frozen=True)
class Mount(Op):
    fstype: str
    target: str             # in the container
    flags: int
    data: str = ""
    root: str = ""          # before pivot_root: the staging directory
    mode: int = 0           # create the target with this mode first
    source: str = ""        # (what mountinfo shows; the fstype if empty)

    def describe(self) -> str:
        return (f"mount {self.fstype} on {self.target}" + (f" ({self.data})" if self.data else "")
                + (", read-only" if self.flags & m.MS_RDONLY else ""))

    def execute(self, run: Run) -> None:
        if self.mode:
            os.mkdir(self.root + self.target, self.mode)
        m.mount(self.source or self.fstype, self.root + self.target, self.fstype, self.flags,
                self.data or None)


@dataclass(frozen=True)
class Sysctl(Op):
    key: str
    value: str
    proc: str = "/proc"

    def describe(self) -> str:
        return f"sysctl {self.key}={self.value}"

    def execute(self, run: Run) -> None:
        fd = os.open(f"{self.proc}/sys/" + self.key.replace(".", "/"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, self.value.encode())
        finally:
            os.close(fd)


@dataclass(frozen=True)
class PivotRoot(Op):
    root: str

    def describe(self) -> str:
        return "pivot_root"

    def execute(self, run: Run) -> None:
        os.chdir(self.root)
        m.pivot_root(".", ".")
        m.umount2(".", m.MNT_DETACH)
        os.chdir("/")


@dataclass(frozen=True)
class DevNode(Op):
    name: str
    major: int
    minor: int
    host: bool          # a user namespace: no mknod there, the host's node is bind-mounted

    def describe(self) -> str:
        return (f"bind the host's /dev/{self.name}" if self.host else
                f"create /dev/{self.name} (character device {self.major}:{self.minor})")

    def take(self, run: Run) -> None:
        if self.host and os.path.exists(f"/dev/{self.name}"):
            run.trees[self] = m.open_tree(f"/dev/{self.name}")

    def execute(self, run: Run) -> None:
        path = f"/dev/{self.name}"
        if self.host:
            if self in run.trees:
                _put(run, self, path)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(self.major, self.minor))
        os.chmod(path, 0o666)


@dataclass(frozen=True)
class Links(Op):
    links: tuple[tuple[str, str], ...]      # (path, what it points to)

    def describe(self) -> str:
        return "create " + ", ".join(p for p, _ in self.links)

    def execute(self, run: Run) -> None:
        for path, target in self.links:
            os.symlink(target, path)


@dataclass(frozen=True)
class Pty(Op):
    index: int          # of the monitor's ptys: 0 the console, N ttyN
    target: str

    def describe(self) -> str:
        return f"mount the monitor's pty {self.index} on {self.target}"

    def take(self, run: Run) -> None:
        if self.index < len(run.ptys):
            run.trees[self] = m.open_tree(run.ptys[self.index][1])

    def execute(self, run: Run) -> None:
        if self in run.trees:
            _put(run, self, self.target)


@dataclass(frozen=True)
class BootId(Op):
    """A boot id of its own for every boot of the container, as LXC and systemd-nspawn
    give one: with the host's, journald filed every boot of the guest under one boot."""

    def describe(self) -> str:
        return "make the container's boot id"

    def execute(self, run: Run) -> None:
        """A fresh random uuid, read-only, over BOOT_ID: a file on the container's /dev
        tmpfs, bind-mounted, then unlinked (the mount keeps it)."""
        if not os.path.exists(BOOT_ID):
            return
        fd = os.open("/proc/sys/kernel/random/uuid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            uuid = os.read(fd, 64)
        finally:
            os.close(fd)
        tmp = "/dev/.lxpy-boot-id"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o444)
        try:
            os.write(fd, uuid)
        finally:
            os.close(fd)
        try:
            m.mount(tmp, BOOT_ID, None, m.MS_BIND)
            m.mount(None, BOOT_ID, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY |
                    NOSUID_NODEV_NOEXEC)
        finally:
            os.unlink(tmp)


@dataclass(frozen=True)
class Bind(Op):
    """source bound on target (recursively when read-only), then remounted read-only or
    writable, nosuid, nodev, noexec; nothing if source is not there."""
    source: str
    target: str
    readonly: bool = True
    root: str = ""          # before pivot_root: the staging directory

    def describe(self) -> str:
        how = "read-only" if self.readonly else "writable"
        if self.source == self.target and not self.root:
            return f"make {self.target} {how}"
        return f"bind the host's {self.source} on {self.target}, {how}"

    def execute(self, run: Run) -> None:
        if not os.path.exists(self.source):
            return
        target = self.root + self.target
        m.mount(self.source, target, None, m.MS_BIND | (m.MS_REC if self.readonly else 0))
        m.mount(None, target, None, m.MS_BIND | m.MS_REMOUNT | NOSUID_NODEV_NOEXEC |
                (m.MS_RDONLY if self.readonly else 0))


@dataclass(frozen=True)
class Mask(Op):
    path: str

    def describe(self) -> str:
        return f"mask {self.path}"

    def execute(self, run: Run) -> None:
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            m.mount("none", self.path, "tmpfs", m.MS_RDONLY | NOSUID_NODEV_NOEXEC, "size=0")
        else:
            m.mount("/dev/null", self.path, None, m.MS_BIND)


@dataclass(frozen=True)
class CgroupFs(Op):
    # Cgroup.container_mounts() as plain tuples: (source, target, fstype, flags, data)
    steps: tuple[tuple[str, str, str, int, str], ...]

    def describe(self) -> str:
        subs = [t.removeprefix("/sys/fs/cgroup/") for _s, t, fs, _f, _d in self.steps
                if fs not in ("symlink", "remount") and t != "/sys/fs/cgroup"]
        if subs:        # v1, hybrid: the hierarchies on a tmpfs
            return "mount /sys/fs/cgroup: " + ", ".join(subs)
        return "mount " + ", ".join(fs for _s, _t, fs, _f, _d in self.steps) + \
            " on /sys/fs/cgroup"

    def execute(self, run: Run) -> None:
        tmpfs = ""
        try:
            for source, target, fstype, flags, data in self.steps:
                if fstype == "symlink":
                    try:
                        os.symlink(source, target)
                    except FileExistsError:
                        pass
                    continue
                os.makedirs(target, exist_ok=True)
                if fstype == "remount":
                    m.mount(None, target, None, flags, None)
                else:
                    m.mount(source, target, fstype, flags, data or None)
                    tmpfs = tmpfs or (target if fstype == "tmpfs" else "")
        except OSError:
            if tmpfs:       # nothing half-made (v1: the tmpfs, writable, some hierarchies)
                m.umount2(tmpfs, m.MNT_DETACH)
            raise


@dataclass(frozen=True)
class UserMount(Op):
    """A [[mount]] entry of the config. A bind mount's source is taken on the host (by PID 1;
    in an unprivileged container by the namespace helper, as host root, idmapped unless
    "noidmap"); the target resolves inside the container (realpath after pivot_root)."""
    source: str
    target: str
    type: str
    options: tuple[str, ...]
    unprivileged: bool = False

    @property
    def idmapped(self) -> bool:
        return self.unprivileged and self.type == "bind" and "noidmap" not in self.options

    def describe(self) -> str:
        what = f"bind {self.source}" if self.type == "bind" else \
            f"mount {self.type} {self.source}".rstrip()
        return f"{what} on {self.target} ({','.join(self.options)})" + (
            ", idmapped to the container's ids" if self.idmapped else "")

    def _clone(self, userns_fd: int | None = None) -> int | None:
        """The source's detached clone (read-only with "ro", recursive with "rbind",
        idmapped through userns_fd if given); None when it is optional and not there."""
        if not os.path.exists(self.source):
            if "optional" in self.options:
                return None
            raise FileNotFoundError(2, "open_tree(): No such file or directory", self.source)
        rbind = "rbind" in self.options
        if userns_fd is not None:
            from ..storage.base import idmapped_clone  # only in the namespace helper
            return idmapped_clone(self.source, userns_fd, recursive=rbind,
                                  readonly="ro" in self.options)
        fd = m.open_tree(self.source, m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC |
                         (m.AT_RECURSIVE if rbind else 0))
        if "ro" in self.options:
            m.mount_setattr(fd, m.MOUNT_ATTR_RDONLY,
                            flags=m.AT_EMPTY_PATH | (m.AT_RECURSIVE if rbind else 0))
        return fd

    def helper_tree(self, helper: Helper) -> int | None:
        if not self.unprivileged or self.type != "bind":
            return None
        return self._clone(helper.userns_fd if self.idmapped else None)

    def take(self, run: Run) -> None:
        if self.type != "bind" or self.unprivileged:
            return      # not a bind mount, or the namespace helper took it
        fd = self._clone()
        if fd is not None:
            run.trees[self] = fd

    def execute(self, run: Run) -> None:
        if self.type == "bind" and self not in run.trees:
            return      # optional, and its source is not there
        target = os.path.realpath(self.target)
        if not os.path.exists(target):
            want = ("file" if "create=file" in self.options else
                    "dir" if "create=dir" in self.options else "")
            if not want:
                raise FileNotFoundError(2, "mount(): No such file or directory (add "
                                        "create=dir or create=file to the options)", target)
            os.makedirs(target if want == "dir" else os.path.dirname(target), exist_ok=True)
            if want == "file":
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        if self.type == "bind":
            fd = run.trees.pop(self)
            m.move_mount(fd, target)
            os.close(fd)
            return
        flags, data = m.parse_options([o for o in self.options
                                       if not o.startswith("create=") and o != "optional"])
        m.mount(self.source or "tmpfs", target, self.type, flags, data or None)


@dataclass(frozen=True)
class NotifySocket(Op):
    """The monitor's readiness socket at /run/host/notify, for a systemd init (notify.py)."""
    path: str
    cmd: tuple[str, ...]
    env: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return "mount /run/host/notify (if init is systemd)"

    def take(self, run: Run) -> None:
        run.notify_fd = notify.open_for_guest(self.path)

    def execute(self, run: Run) -> None:
        run.env.update(notify.mount_in_guest(run.notify_fd, list(self.cmd), dict(self.env)))


@dataclass(frozen=True)
class LxcfsBind(Op):
    """One of lxcfs's files (or its sys/devices/system/cpu) bound read-only over the
    container's own, before pivot_root (lxpy.lxcfs.binds says which), as LXC's lxcfs hook
    does: nothing where the container has no such file (a kernel without it), nor, unless
    required (proc.lxcfs = true), where lxcfs no longer answers (a reboot after it stopped)."""
    source: str             # on the host
    target: str             # in the container
    root: str               # the staging directory
    required: bool = False

    def describe(self) -> str:
        return f"bind lxcfs's {self.source} on {self.target}, read-only"

    def execute(self, run: Run) -> None:
        target = self.root + self.target
        if not os.path.exists(target):
            return
        try:
            os.stat(self.source)
        except OSError as e:
            if self.required:
                raise OSError(e.errno, "stat(): lxcfs does not answer (proc.lxcfs = true): "
                              + os.strerror(e.errno or 0), self.source) from None
            return
        m.mount(self.source, target, None, m.MS_BIND)
        m.mount(None, target, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | NOSUID_NODEV_NOEXEC)

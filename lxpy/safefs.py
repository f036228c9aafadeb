"""Writes into a container's rootfs that can never land outside it.

Every path is resolved by the kernel with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
from a directory fd of the rootfs: absolute symlinks and ".." are taken relative to the
rootfs, so `etc -> /etc` or `etc/hostname -> /etc/shadow` planted in a cached or imported
tree point back inside it. Files are written to a temp file in the same directory and
renamed over the name (a symlink at the name is replaced, never followed).

    with safefs.Root(rootfs) as root:
        root.write("etc/hostname", "web1\\n")
        root.makedirs("root/.ssh", mode=0o700)
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from types import TracebackType

from .config.atomic import write_all
from .errors import KernelFeatureError
from .linux import fs

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY
_RESOLVE = fs.RESOLVE_IN_ROOT | fs.RESOLVE_NO_MAGICLINKS


def normalize(rel: str | os.PathLike) -> str:
    """A path inside the root, without leading '/', '.' or '..' ("" is the root itself)."""
    p = posixpath.normpath("/" + os.fspath(rel))  # "/.." -> "/": clamps at the root
    return p.lstrip("/")


class Root:
    """A rootfs directory, opened once; every operation resolves inside it."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise OSError(e.errno, f"open(): {e.strerror}", str(self.path)) from None
        try:
            probe = fs.openat2(self.fd, ".", os.O_PATH | os.O_DIRECTORY, resolve=_RESOLVE)
        except OSError as e:
            os.close(self.fd)
            if e.errno in (errno.ENOSYS, errno.EPERM):
                raise KernelFeatureError(
                    "this kernel has no openat2(): cannot write into a rootfs safely",
                    "lxpy needs Linux 5.6 or newer") from None
            raise
        os.close(probe)

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- resolution -----------------------------------------------------------

    def _open(self, rel: str, flags: int, mode: int = 0) -> int:
        return fs.openat2(self.fd, rel or ".", flags, mode, resolve=_RESOLVE)

    def _split(self, rel: str | os.PathLike) -> tuple[str, str]:
        r = normalize(rel)
        if not r:
            raise IsADirectoryError(errno.EISDIR, "the rootfs itself is not a file",
                                    str(self.path))
        parent, _, name = r.rpartition("/")
        return parent, name

    def open_dir(self, rel: str | os.PathLike = "", create: bool = False,
                 mode: int = 0o755) -> int:
        """An O_RDONLY directory fd of rel inside the root (made, mkdir -p, if create)."""
        r = normalize(rel)
        try:
            return self._open(r, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
        parts = r.split("/")
        fd = os.dup(self.fd)
        done = ""
        try:
            for part in parts:
                path = f"{done}/{part}" if done else part
                try:
                    nfd = self._open(path, _DIR_FLAGS)
                except FileNotFoundError:
                    try:
                        os.mkdir(part, mode, dir_fd=fd)
                        # mkdir honours the umask; set the asked mode exactly
                        nfd = self._open(path, _DIR_FLAGS)
                        os.fchmod(nfd, mode)
                    except FileExistsError:
                        # a dangling symlink or a file there: mkdir -p refuses too
                        raise FileExistsError(
                            errno.EEXIST, "mkdir(): exists and is not a directory "
                            "(a dangling symlink?)", f"{self.path}/{path}") from None
                os.close(fd)
                fd = nfd
                done = path
            return fd
        except BaseException:
            os.close(fd)
            raise

    def makedirs(self, rel: str | os.PathLike, mode: int = 0o755) -> None:
        os.close(self.open_dir(rel, create=True, mode=mode))

    # -- queries --------------------------------------------------------------

    def lstat(self, rel: str | os.PathLike) -> os.stat_result:
        parent, name = self._split(rel)
        pfd = self.open_dir(parent)
        try:
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def exists(self, rel: str | os.PathLike) -> bool:
        """True if the name exists inside the root (a symlink counts, even dangling)."""
        try:
            self.lstat(rel)
            return True
        except (FileNotFoundError, NotADirectoryError):
            return False

    def is_dir(self, rel: str | os.PathLike) -> bool:
        try:
            os.close(self._open(normalize(rel), _DIR_FLAGS))
            return True
        except (FileNotFoundError, NotADirectoryError):
            return False

    def read(self, rel: str | os.PathLike) -> bytes:
        fd = self._open(normalize(rel), os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", f"{self.path}/{rel}")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def listdir(self, rel: str | os.PathLike = "") -> list[str]:
        fd = self.open_dir(rel)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    # -- changes --------------------------------------------------------------

    def write(self, rel: str | os.PathLike, data: bytes | str, mode: int | None = None,
              uid: int | None = None, gid: int | None = None, dir_mode: int = 0o755) -> None:
        """Write a whole file atomically. mode/uid/gid default to the existing regular
        file's, else 0644 root:root. Parent directories are made as needed."""
        if isinstance(data, str):
            data = data.encode()
        parent, name = self._split(rel)
        pfd = self.open_dir(parent, create=True, mode=dir_mode)
        try:
            old = None
            try:
                old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            if old is not None and stat.S_ISDIR(old.st_mode):
                raise IsADirectoryError(errno.EISDIR, "write(): is a directory",
                                        f"{self.path}/{normalize(rel)}")
            keep = old is not None and stat.S_ISREG(old.st_mode)
            if mode is None:
                mode = stat.S_IMODE(old.st_mode) if keep and old else 0o644
            if uid is None:
                uid = old.st_uid if keep and old else 0
            if gid is None:
                gid = old.st_gid if keep and old else 0
            self._atomic(pfd, name, rel, lambda fd: write_all(fd, data), mode, uid, gid)
        finally:
            os.close(pfd)

    def _atomic(self, pfd: int, name: str, rel: str | os.PathLike, fill, mode: int,
                uid: int, gid: int) -> None:
        tmp = f".{name[:200]}.lxpy-{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            try:
                fill(fd)
                if os.geteuid() == 0 or (uid, gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(fd, uid, gid)
                    except PermissionError:
                        if os.geteuid() == 0:
                            raise
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=pfd)
            except OSError:
                pass
            raise

    def symlink(self, rel: str | os.PathLike, target: str) -> None:
        """Make (or replace) a symlink at rel pointing at target (taken as is)."""
        parent, name = self._split(rel)
        pfd = self.open_dir(parent, create=True)
        try:
            try:
                old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISLNK(old.st_mode) and os.readlink(name, dir_fd=pfd) == target:
                    return
                if stat.S_ISDIR(old.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "symlink(): is a directory",
                                            f"{self.path}/{normalize(rel)}")
            except FileNotFoundError:
                pass
            tmp = f".{name[:200]}.lxpy-{os.urandom(4).hex()}"
            os.symlink(target, tmp, dir_fd=pfd)
            try:
                os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            except BaseException:
                os.unlink(tmp, dir_fd=pfd)
                raise
        finally:
            os.close(pfd)

    def unlink(self, rel: str | os.PathLike, missing_ok: bool = True) -> bool:
        """Remove a file or symlink (never what a symlink points to). False if absent."""
        parent, name = self._split(rel)
        try:
            pfd = self.open_dir(parent)
        except (FileNotFoundError, NotADirectoryError):
            if missing_ok:
                return False
            raise
        try:
            os.unlink(name, dir_fd=pfd)
            return True
        except FileNotFoundError:
            if missing_ok:
                return False
            raise
        finally:
            os.close(pfd)

    def chmod(self, rel: str | os.PathLike, mode: int) -> None:
        fd = self._open(normalize(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                        | os.O_NOCTTY)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def chown(self, rel: str | os.PathLike, uid: int, gid: int) -> None:
        fd = self._open(normalize(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                        | os.O_NOCTTY)
        try:
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)

"""Atomic, fsynced replacement of a small file (a config.toml, a snapshot's meta): a temp
file beside it, then rename. Apart from edit.py so that lxpy-copy and lxpy-snapshot write
configs without importing the settings table and tomlkit (nor pathlib: lxpy-copy -s)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of data is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _mkstemp(path: str) -> tuple[int, str]:
    """tempfile.mkstemp(prefix=".NAME.", dir=path's dir) without importing tempfile (shutil,
    random, weakref: ~5 ms of lxpy-copy and lxpy-snapshot)."""
    parent, name = os.path.split(path)
    for _ in range(100):
        tmp = f"{parent or '.'}/.{name}.{os.urandom(4).hex()}"
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: no free temporary name for {name}")


def _atomic_write(path: str, text: str) -> None:
    fd, tmp = _mkstemp(path)
    try:
        try:                         # (bytes, no text file object)
            write_all(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            st = os.stat(path)
            os.chmod(tmp, st.st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_new(path: str | Path, text: str) -> None:
    _atomic_write(os.path.normpath(os.fspath(path)), text)


def write_fresh(path: str, text: str):
    """Make path, a new file in a directory no one else sees yet (a temp dir that becomes a
    container with one rename), holding text, mode 0644, and fsync it in a thread: the
    fsync (~1 ms, several while the disk is busy writing back) overlaps what the caller does
    next. Returns the function that waits for it, raising what fsync raised; the caller
    calls it before the rename, and on its way out if it fails before (it closes the file)."""
    import _thread
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        write_all(fd, text.encode())
        os.fchmod(fd, 0o644)
    except BaseException:
        os.close(fd)
        raise
    done = _thread.allocate_lock()
    done.acquire()
    failed: list[OSError] = []

    def sync() -> None:
        try:
            os.fsync(fd)
        except OSError as e:
            failed.append(e)
        finally:
            done.release()
    _thread.start_new_thread(sync, ())
    closed: list[bool] = []

    def wait() -> None:
        if not closed:              # (again after a signal cut the first wait short)
            done.acquire()
            os.close(fd)
            closed.append(True)
        if failed:
            raise failed[0]
    return wait

"""linux/fsops.py (renameat2, statfs) and linux/fs.py (openat2), on real files and the real
kernel."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from lxpy.linux import fs, fsops


def test_renameat2_noreplace_and_exchange(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y").write_text("b")
    with pytest.raises(FileExistsError) as e:
        fsops.renameat2(tmp_path / "a", tmp_path / "b", fsops.RENAME_NOREPLACE)
    assert e.value.filename == str(tmp_path / "b") and "renameat2" in str(e.value)
    assert (tmp_path / "a" / "x").read_text() == "a"          # nothing moved
    fsops.renameat2(tmp_path / "a", tmp_path / "b", fsops.RENAME_EXCHANGE)
    assert (tmp_path / "a" / "y").read_text() == "b" and (tmp_path / "b" / "x").read_text() == "a"
    fsops.renameat2(tmp_path / "a", tmp_path / "c", fsops.RENAME_NOREPLACE)
    assert sorted(os.listdir(tmp_path)) == ["b", "c"]
    with pytest.raises(FileNotFoundError):
        fsops.renameat2(tmp_path / "nope", tmp_path / "d")


def test_statfs_type_agrees_with_the_ctypes_struct(tmp_path):
    class Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]
    libc = ctypes.CDLL(None, use_errno=True)
    for path in ("/proc", "/sys", "/dev/shm", str(tmp_path), "/"):
        buf = Statfs()
        assert libc.statfs(os.fsencode(path), ctypes.byref(buf)) == 0
        assert fsops.statfs_type(path) == buf.f_type & 0xFFFFFFFF
    assert fsops.statfs_type("/proc") == 0x9FA0                 # PROC_SUPER_MAGIC
    assert fsops.fs_name("/dev/shm") == "tmpfs"
    with pytest.raises(FileNotFoundError):
        fsops.statfs_type(tmp_path / "nope")


def test_openat2_stays_in_its_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("inside\n")
    (tmp_path / "secret").write_text("outside\n")
    (root / "etc" / "link").symlink_to("/secret")             # absolute: resolved in root
    (root / "up").symlink_to("../../secret")
    dfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for rel in ("etc/hostname", "/etc/hostname", "../etc/hostname", b"etc/hostname"):
            fd = fs.openat2(dfd, rel, os.O_RDONLY)
            try:
                assert os.read(fd, 100) == b"inside\n"
                assert os.get_inheritable(fd) is False        # O_CLOEXEC always
            finally:
                os.close(fd)
        for rel in ("etc/link", "up"):
            with pytest.raises(FileNotFoundError):             # /secret inside root: none
                fs.openat2(dfd, rel, os.O_RDONLY)
        with pytest.raises(OSError) as e:
            fs.openat2(dfd, "../secret", os.O_RDONLY, resolve=fs.RESOLVE_BENEATH)
        assert e.value.errno == errno.EXDEV and e.value.filename == "../secret"
    finally:
        os.close(dfd)
    assert fs.have_openat2()

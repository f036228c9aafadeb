"""linux/rawc.py (renameat2, statfs, openat2 through _ctypes, without the ctypes package) and
config.atomic.write_fresh (the fsync in a thread), on real files and the real kernel."""

from __future__ import annotations

import ctypes
import errno
import os
import stat

import pytest

from lxpy.config.atomic import write_fresh
from lxpy.linux import fs, fsops, rawc
from tests.conftest import loaded_by


def test_renameat2_noreplace_and_exchange(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y").write_text("b")
    with pytest.raises(FileExistsError) as e:
        rawc.renameat2(tmp_path / "a", tmp_path / "b", rawc.RENAME_NOREPLACE)
    assert e.value.filename == str(tmp_path / "b") and "renameat2" in str(e.value)
    assert (tmp_path / "a" / "x").read_text() == "a"          # nothing moved
    rawc.renameat2(tmp_path / "a", tmp_path / "b", rawc.RENAME_EXCHANGE)
    assert (tmp_path / "a" / "y").read_text() == "b" and (tmp_path / "b" / "x").read_text() == "a"
    rawc.renameat2(tmp_path / "a", tmp_path / "c", rawc.RENAME_NOREPLACE)
    assert sorted(os.listdir(tmp_path)) == ["b", "c"]
    with pytest.raises(FileNotFoundError):
        rawc.renameat2(tmp_path / "nope", tmp_path / "d")


def test_statfs_type_agrees_with_the_ctypes_struct(tmp_path):
    class Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]
    libc = ctypes.CDLL(None, use_errno=True)
    for path in ("/proc", "/sys", "/dev/shm", str(tmp_path), "/"):
        buf = Statfs()
        assert libc.statfs(os.fsencode(path), ctypes.byref(buf)) == 0
        assert rawc.statfs_type(path) == buf.f_type & 0xFFFFFFFF
    assert rawc.statfs_type("/proc") == 0x9FA0                 # PROC_SUPER_MAGIC
    assert fsops.fs_name("/dev/shm") == "tmpfs"
    with pytest.raises(FileNotFoundError):
        rawc.statfs_type(tmp_path / "nope")


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


def test_none_of_it_imports_the_ctypes_package():
    assert loaded_by("from lxpy.linux import fs, fsops, rawc; from lxpy import safefs",
                     ["ctypes", "lxpy.linux.rawc"]) == ["lxpy.linux.rawc"]


def test_write_fresh(tmp_path):
    p = tmp_path / "config.toml"
    wait = write_fresh(str(p), "hostname = \"é\"\n")
    wait()
    wait()                                                     # twice is fine
    assert p.read_bytes() == "hostname = \"é\"\n".encode()
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    with pytest.raises(FileExistsError):                       # never over a file
        write_fresh(str(p), "other")
    assert p.read_text() == "hostname = \"é\"\n"
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(FileExistsError):                       # nor through a symlink
        write_fresh(str(tmp_path / "link"), "x")
    assert not (tmp_path / "target").exists()
    before = set(os.listdir("/proc/self/fd"))
    write_fresh(str(tmp_path / "b"), "b")()
    assert set(os.listdir("/proc/self/fd")) == before          # the file is closed

"""lxpy.safefs: writes into a rootfs never land outside it, whatever symlinks it holds."""

from __future__ import annotations

import os
import stat

import pytest

from lxpy import safefs


@pytest.fixture
def world(tmp_path):
    """A rootfs and a "host" directory beside it holding a file that must never change."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "shadow").write_text("HOST\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    yield root, host
    assert (host / "shadow").read_text() == "HOST\n"
    assert sorted(os.listdir(host)) == ["shadow"], "something was written on the host"


def test_plain_write_mkdir_and_modes(world):
    root, _ = world
    with safefs.Root(root) as r:
        r.write("etc/hostname", "web1\n")
        r.write("/var/lib/x/y", b"data", mode=0o600)
        r.makedirs("root/.ssh", mode=0o700)
    assert (root / "etc/hostname").read_text() == "web1\n"
    assert (root / "var/lib/x/y").read_bytes() == b"data"
    assert stat.S_IMODE((root / "var/lib/x/y").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "root/.ssh").stat().st_mode) == 0o700
    assert [p for p in os.listdir(root / "etc") if ".lxpy-" in p] == []   # no temp left


def test_existing_mode_is_kept(world):
    root, _ = world
    (root / "etc/shadow").write_text("x")
    os.chmod(root / "etc/shadow", 0o640)
    with safefs.Root(root) as r:
        r.write("etc/shadow", "y")
    assert stat.S_IMODE((root / "etc/shadow").stat().st_mode) == 0o640


def test_file_symlink_to_the_host_is_replaced_not_followed(world):
    root, host = world
    os.symlink(host / "shadow", root / "etc/hostname")
    with safefs.Root(root) as r:
        r.write("etc/hostname", "web1\n")
    assert not (root / "etc/hostname").is_symlink()
    assert (root / "etc/hostname").read_text() == "web1\n"


def test_relative_escape_symlink_is_replaced(world):
    root, host = world
    os.symlink("../../host/shadow", root / "etc/hosts")
    with safefs.Root(root) as r:
        r.write("etc/hosts", "127.0.0.1 localhost\n")
    assert (root / "etc/hosts").read_text().startswith("127.0.0.1")


def test_directory_symlink_to_the_host_is_refused(world):
    root, host = world
    os.rmdir(root / "etc")
    os.symlink(str(host), root / "etc")         # "etc -> /host": inside the root it dangles
    with safefs.Root(root) as r, pytest.raises(OSError):
        r.write("etc/shadow", "pwned\n")


def test_etc_to_slash_etc_is_refused(world):
    root, _ = world
    os.rmdir(root / "etc")
    os.symlink("/etc", root / "etc")            # a loop inside the root
    with safefs.Root(root) as r, pytest.raises(OSError):
        r.write("etc/hostname", "pwned\n")


def test_dir_symlink_climbing_out_is_clamped_at_the_root(world):
    root, host = world
    os.symlink("../../../../..", root / "up")   # ".." beyond the root stays at the root
    with safefs.Root(root) as r:
        r.write("up/host/shadow", "inside\n")
        r.write("../../host/shadow2", "inside\n")
    assert (root / "host/shadow").read_text() == "inside\n"
    assert (root / "host/shadow2").read_text() == "inside\n"


def test_absolute_dir_symlink_resolves_inside(world):
    root, _ = world
    (root / "usr/lib").mkdir(parents=True)
    os.symlink("/usr/lib", root / "lib")
    with safefs.Root(root) as r:
        r.write("lib/x.conf", "ok\n")
        assert r.read("lib/x.conf") == b"ok\n"
    assert (root / "usr/lib/x.conf").read_text() == "ok\n"


def test_read_through_a_symlink_stays_inside(world):
    root, _ = world
    os.symlink("/host/shadow", root / "etc/link")
    with safefs.Root(root) as r, pytest.raises(FileNotFoundError):
        r.read("etc/link")


def test_symlink_and_unlink(world):
    root, host = world
    os.symlink(host / "shadow", root / "etc/victim")
    with safefs.Root(root) as r:
        r.symlink("etc/systemd/system/x.service", "/dev/null")
        r.symlink("etc/systemd/system/x.service", "/dev/null")   # idempotent
        assert r.unlink("etc/victim") is True                     # the link, not the target
        assert r.unlink("etc/victim") is False
        assert r.unlink("no/such/dir/file") is False
    assert os.readlink(root / "etc/systemd/system/x.service") == "/dev/null"


def test_writing_over_a_directory_is_an_error(world):
    root, _ = world
    (root / "etc/d").mkdir()
    with safefs.Root(root) as r, pytest.raises(IsADirectoryError):
        r.write("etc/d", "x")
    with safefs.Root(root) as r, pytest.raises(IsADirectoryError):
        r.write("", "x")


def test_normalize():
    assert safefs.normalize("/etc/../../x") == "x"
    assert safefs.normalize("a/./b//c") == "a/b/c"
    assert safefs.normalize("..") == ""

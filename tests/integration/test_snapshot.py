"""lxpy-snapshot: make, list, restore (in place and to a new name), destroy, on dir, overlay
and btrfs; restore brings back exactly the snapshotted tree."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import Runner
from tests.integration.test_copy import names, one_line_error, read, rootfs_of, write
from tests.integration.test_storage_helpers import btrfs_lxpath, container_sum  # noqa: F401

BACKENDS = ["dir", "overlay", "btrfs"]


@pytest.fixture
def lx(request, lxpath):
    backend = request.param
    if backend == "btrfs":
        lxpath = request.getfixturevalue("btrfs_lxpath")
    return Runner(lxpath), lxpath, backend


def snaps(run, name) -> list[dict]:
    return json.loads(run("snapshot", "-n", name, "-L", "--format", "json").stdout)


@pytest.mark.parametrize("lx", BACKENDS, indirect=True)
def test_snapshot_restore_destroy(lx):
    run, lxpath, backend = lx
    run("create", "-n", "web", "-t", "busybox", "-B", backend)
    write(lxpath, "web", "marker", "v1\n")
    at_snap0 = container_sum(lxpath, "web")
    assert "snap0" in run("snapshot", "-n", "web", "-c", "before upgrade").stdout
    # change everything we can think of
    write(lxpath, "web", "marker", "v2\n")
    write(lxpath, "web", "added", "new\n")
    with rootfs_of(lxpath, "web") as root:
        os.unlink(root / "etc" / "profile")
        os.chmod(root / "etc" / "passwd", 0o600)
        os.chown(root / "etc" / "group", 7, 7)
    at_snap1 = container_sum(lxpath, "web")
    run("snapshot", "-n", "web")
    listed = snaps(run, "web")
    assert [s["name"] for s in listed] == ["snap0", "snap1"]
    assert listed[0]["comment"] == "before upgrade" and listed[0]["backend"] == backend
    text = run("snapshot", "-n", "web", "-L", "-C").stdout
    assert "before upgrade" in text and "snap1" in text
    assert "before upgrade" not in run("snapshot", "-n", "web", "-L").stdout

    run("snapshot", "-n", "web", "-r", "snap0")
    assert container_sum(lxpath, "web") == at_snap0
    assert read(lxpath, "web", "added") is None
    run("snapshot", "-n", "web", "-r", "snap1")
    assert container_sum(lxpath, "web") == at_snap1
    run("snapshot", "-n", "web", "-r", "snap0", "-N", "web-old")
    assert read(lxpath, "web-old", "marker") == "v1\n"
    assert read(lxpath, "web-old", "etc/hostname") == "web-old\n"
    assert container_sum(lxpath, "web") == at_snap1          # the source did not move
    assert names(run) == ["web", "web-old"]

    # snapshots are not containers and survive the restores
    assert [s["name"] for s in snaps(run, "web")] == ["snap0", "snap1"]
    run("snapshot", "-n", "web", "-d", "snap0")
    assert [s["name"] for s in snaps(run, "web")] == ["snap1"]
    run("snapshot", "-n", "web")
    assert [s["name"] for s in snaps(run, "web")] == ["snap1", "snap2"]
    one_line_error(run("destroy", "-n", "web", check=False))   # has snapshots
    run("snapshot", "-n", "web", "-d", "ALL")
    assert snaps(run, "web") == []
    run("snapshot", "-n", "web")
    run("destroy", "-n", "web", "-s")
    run("destroy", "-n", "web-old")
    assert [p.name for p in lxpath.iterdir() if not p.name.startswith(".")] == []


def test_snapshot_bad_input(lxpath):
    run = Runner(lxpath)
    run("create", "-n", "a", "-t", "busybox", "-B", "dir")
    one_line_error(run("snapshot", "-n", "a", "-r", "snap9", check=False), 2)
    one_line_error(run("snapshot", "-n", "a", "-d", "snap0", check=False), 2)
    one_line_error(run("snapshot", "-n", "nope", check=False))
    one_line_error(run("snapshot", "-n", "a", "-N", "b", check=False), 2)
    run("snapshot", "-n", "a")
    one_line_error(run("snapshot", "-n", "a", "-r", "snap0", "-N", "a", check=False), 2)
    one_line_error(run("snapshot", "-n", "a", "-r", "snap0", "-N", "../b", check=False), 2)
    assert names(run) == ["a"]
    assert "No snapshots" in Runner(lxpath)("snapshot", "-n", "a", "-L").stdout or True


def test_restore_in_place_refused_while_clones_use_the_tree(lxpath):
    run = Runner(lxpath)
    run("create", "-n", "o", "-t", "busybox", "-B", "dir")
    run("snapshot", "-n", "o")
    run("copy", "-n", "o", "-N", "c", "-s")
    one_line_error(run("snapshot", "-n", "o", "-r", "snap0", check=False))
    run("snapshot", "-n", "o", "-r", "snap0", "-N", "o2")
    assert names(run) == ["c", "o", "o2"]
    # once the clone is gone, the dir snapshot restores over the (frozen) origin, which
    # is a plain dir container again
    write(lxpath, "o", "after", "x")
    run("destroy", "-n", "c")
    run("snapshot", "-n", "o", "-r", "snap0")
    assert read(lxpath, "o", "after") is None
    assert sorted(p.name for p in (lxpath / "o").iterdir()) == ["config.toml", "rootfs", "snaps"]
    import tomllib
    with open(lxpath / "o" / "config.toml", "rb") as f:
        assert tomllib.load(f)["rootfs"] == {"backend": "dir", "path": "rootfs"}
    run("copy", "-n", "o", "-N", "o3", "-K")
    assert read(lxpath, "o3", "etc/hostname") == read(lxpath, "o", "etc/hostname")

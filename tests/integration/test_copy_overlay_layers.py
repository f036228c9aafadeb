"""Overlay snapshot clones are O(1): the source's delta becomes a read-only layer of its own
(layers/N) and the clone a new empty delta over the source's lowers. The clone shares the
source's data, sees it as of clone time, never sees later writes either way, and keeps the
source from being destroyed or renamed while it depends on it."""

from __future__ import annotations

import os
import tomllib

import pytest

from lxpy.container import Container
from lxpy.errors import StorageError
from lxpy.storage.tree import tree_usage
from tests.conftest import Runner
from tests.integration.test_copy import names, one_line_error, read, rootfs_of, write
from tests.integration.test_storage_helpers import container_sum

MB = 1 << 20
BIG = 32 * MB


def write_big(lxpath, name: str, rel: str) -> None:
    """A file of BIG bytes of real blocks (not sparse) in the container's tree."""
    with rootfs_of(lxpath, name) as root, open(root / rel, "wb") as f:
        block = b"\x5a" * MB
        for _ in range(BIG // MB):
            f.write(block)


def lower_of(lxpath, name: str) -> str:
    with open(lxpath / name / "config.toml", "rb") as f:
        return tomllib.load(f)["rootfs"]["lower"]


@pytest.fixture
def src(lxpath):
    run = Runner(lxpath)
    run("create", "-n", "src", "-t", "busybox", "-B", "overlay")
    write(lxpath, "src", "before", "1\n")
    return run


def test_clone_shares_the_source_data(lxpath, src):
    run = src
    write_big(lxpath, "src", "big.bin")
    run("copy", "-n", "src", "-N", "c", "-s")
    # the source's changes became its own read-only layer, which the clone uses as a lower
    assert lower_of(lxpath, "src").startswith("layers/0:")
    assert lower_of(lxpath, "c").startswith(f"{lxpath}/src/layers/0:")
    assert os.listdir(lxpath / "src" / "delta") == []
    assert tree_usage(lxpath / "c") < MB            # nothing was copied
    assert tree_usage(lxpath / "src") >= BIG
    with rootfs_of(lxpath, "c") as root:
        assert (root / "big.bin").stat().st_size == BIG
    # the source writes another big file: it goes to its own new delta
    write_big(lxpath, "src", "big2.bin")
    assert tree_usage(lxpath / "c") < MB
    assert read(lxpath, "c", "big2.bin") is None
    # a second clone of the source is O(1) too, and a clone of it
    run("copy", "-n", "src", "-N", "c2", "-s")
    run("copy", "-n", "c2", "-N", "c3", "-s")
    for n in ("c2", "c3"):
        assert tree_usage(lxpath / n) < MB
        with rootfs_of(lxpath, n) as root:
            assert (root / "big2.bin").stat().st_size == BIG


def test_clone_sees_the_source_as_of_clone_time(lxpath, src):
    run = src
    with rootfs_of(lxpath, "src") as root:
        os.unlink(root / "etc" / "profile")        # a whiteout in the source's delta
    run("copy", "-n", "src", "-N", "c", "-s")
    src_sum = container_sum(lxpath, "src")
    assert read(lxpath, "c", "before") == "1\n"
    assert read(lxpath, "c", "etc/profile") is None
    assert read(lxpath, "c", "etc/hostname") == "c\n"
    # the source after the clone: as it was (hostname included)
    assert read(lxpath, "src", "etc/hostname") == "src\n"
    assert container_sum(lxpath, "src") == src_sum
    # later writes, either way, stay where they were made
    write(lxpath, "src", "later-src", "s\n")
    write(lxpath, "src", "before", "2\n")
    write(lxpath, "c", "later-c", "c\n")
    with rootfs_of(lxpath, "c") as root:
        os.unlink(root / "before")
    assert read(lxpath, "c", "later-src") is None
    assert read(lxpath, "c", "before") is None
    assert read(lxpath, "src", "later-c") is None
    assert read(lxpath, "src", "before") == "2\n"
    # the layer the clone uses never changed
    assert (lxpath / "src" / "layers" / "0" / "before").read_text() == "1\n"
    # a clone of the clone sees the clone, not the source
    run("copy", "-n", "c", "-N", "cc", "-s")
    assert read(lxpath, "cc", "later-c") == "c\n"
    assert read(lxpath, "cc", "later-src") is None
    assert read(lxpath, "cc", "before") is None


def test_destroy_and_rename_refused_while_clones_depend(lxpath, src):
    run = src
    run("copy", "-n", "src", "-N", "c", "-s")
    run("copy", "-n", "c", "-N", "cc", "-s")
    r = run("destroy", "-n", "src", check=False)
    one_line_error(r)
    assert "c, cc" in r.stderr
    one_line_error(run("destroy", "-n", "c", check=False))
    one_line_error(run("copy", "-n", "src", "-N", "moved", "-R", check=False))
    assert names(run) == ["c", "cc", "src"]
    # a clone that nothing depends on can be renamed: its lowers stay right
    run("copy", "-n", "cc", "-N", "cc2", "-R")
    assert read(lxpath, "cc2", "before") == "1\n"
    assert read(lxpath, "cc2", "etc/hostname") == "cc2\n"
    run("destroy", "-n", "cc2")
    one_line_error(run("destroy", "-n", "src", check=False))
    run("destroy", "-n", "c")
    # the source, with no dependants, renames (its own layers are relative) and destroys
    run("copy", "-n", "src", "-N", "moved", "-R")
    assert lower_of(lxpath, "moved").startswith("layers/0:")
    assert read(lxpath, "moved", "before") == "1\n"
    run("destroy", "-n", "moved")
    assert [p.name for p in lxpath.iterdir() if not p.name.endswith(".lock")] == []


def test_full_copy_of_a_layered_source_is_independent(lxpath, src):
    run = src
    run("copy", "-n", "src", "-N", "c", "-s")
    write(lxpath, "src", "after", "2\n")
    run("copy", "-n", "src", "-N", "full")
    with open(lxpath / "full" / "config.toml", "rb") as f:
        rt = tomllib.load(f)["rootfs"]
    assert rt["backend"] == "overlay" and "origin" not in rt
    assert rt["lower"].startswith("layers/0:") and str(lxpath) not in rt["lower"]
    run("destroy", "-n", "c")
    run("destroy", "-n", "src")
    assert read(lxpath, "full", "before") == "1\n"
    assert read(lxpath, "full", "after") == "2\n"
    assert read(lxpath, "full", "etc/hostname") == "full\n"


def test_snapshot_and_restore_with_clones(lxpath, src):
    run = src
    run("snapshot", "-n", "src")                    # before any layer
    run("copy", "-n", "src", "-N", "c", "-s")
    write(lxpath, "src", "after", "2\n")
    run("snapshot", "-n", "src")                    # on layers/0
    c_sum = container_sum(lxpath, "c")
    # restoring the source in place swaps its delta only: the clone's lowers stay
    run("snapshot", "-n", "src", "-r", "snap0")
    assert read(lxpath, "src", "after") is None
    assert read(lxpath, "src", "before") == "1\n"
    run("snapshot", "-n", "src", "-r", "snap1")
    assert read(lxpath, "src", "after") == "2\n"
    assert lower_of(lxpath, "src").startswith("layers/0:")
    assert container_sum(lxpath, "c") == c_sum
    # into a new container: it uses the source's layer, so it depends on the source
    run("snapshot", "-n", "src", "-r", "snap1", "-N", "r")
    assert read(lxpath, "r", "after") == "2\n"
    run("destroy", "-n", "c")
    r = run("destroy", "-n", "src", "-s", check=False)
    one_line_error(r)
    assert "depend on it: r" in r.stderr
    run("destroy", "-n", "r")
    run("destroy", "-n", "src", "-s")


def test_too_deep_is_refused_cleanly(lxpath, src, monkeypatch):
    from lxpy.lifecycle.copy import copy_container
    from lxpy.storage import layers
    src_c = Container("src", lxpath)
    before_cfg = (lxpath / "src" / "config.toml").read_text()
    before = container_sum(lxpath, "src")
    monkeypatch.setattr(layers, "MAX_OPTIONS", 100)
    with pytest.raises(StorageError) as e:
        copy_container(src_c, "c", snapshot=True)
    assert "without -s" in str(e.value.hint)
    monkeypatch.undo()
    assert (lxpath / "src" / "config.toml").read_text() == before_cfg
    assert container_sum(lxpath, "src") == before
    assert sorted(p.name for p in lxpath.iterdir() if not p.name.endswith(".lock")) == ["src"]
    assert not (lxpath / "src" / "layers").exists()
    # a full copy still works
    copy_container(src_c, "full")
    assert read(lxpath, "full", "before") == "1\n"


def test_killed_between_config_and_exchange(lxpath, src, monkeypatch):
    """The seal's two steps: after the first only, the source is as it was, and a retry
    works."""
    from lxpy.lifecycle.copy import copy_container
    from lxpy.linux import fsops
    from lxpy.storage import layers
    before = container_sum(lxpath, "src")
    real = fsops.renameat2

    def killed(old, new, flags=0):
        if flags == fsops.RENAME_EXCHANGE:
            raise KeyboardInterrupt
        return real(old, new, flags)
    monkeypatch.setattr(layers, "renameat2", killed)
    with pytest.raises(KeyboardInterrupt):
        copy_container(Container("src", lxpath), "c", snapshot=True)
    monkeypatch.undo()
    assert lower_of(lxpath, "src").startswith("layers/0:")     # the empty layer, listed
    assert container_sum(lxpath, "src") == before
    assert sorted(p.name for p in lxpath.iterdir() if not p.name.endswith(".lock")) == ["src"]
    Runner(lxpath)("copy", "-n", "src", "-N", "c", "-s")
    assert container_sum(lxpath, "src") == before
    assert read(lxpath, "c", "before") == "1\n"

"""lxpy-copy as an admin uses it: full and snapshot clones on dir, overlay and btrfs,
isolation both ways, new hostname and MACs, rename, clone hooks, dependencies."""

from __future__ import annotations

import json
import os
import time
import tomllib

import pytest

from lxpy.config.loader import load
from lxpy.storage import for_config
from tests.conftest import Runner
from tests.integration.test_storage_helpers import (  # noqa: F401 - fixture
    btrfs_lxpath,
    container_sum,
    make_container,
    make_special_tree,
)

BACKENDS = ["dir", "overlay", "btrfs"]


@pytest.fixture
def lx(request, lxpath):
    backend = request.param
    if backend == "btrfs":
        lxpath = request.getfixturevalue("btrfs_lxpath")
    return Runner(lxpath), lxpath, backend


def names(run) -> list[str]:
    return [r["name"] for r in json.loads(run("ls", "--format", "json").stdout)]


def rootfs_of(lxpath, name):
    cdir = lxpath / name
    cfg = load(cdir / "config.toml")
    return for_config(cfg).mounted(cdir, cfg)


def write(lxpath, name, rel, text):
    with rootfs_of(lxpath, name) as root:
        (root / rel).write_text(text)


def read(lxpath, name, rel):
    with rootfs_of(lxpath, name) as root:
        p = root / rel
        return p.read_text() if p.exists() else None


def config_of(lxpath, name) -> dict:
    with open(lxpath / name / "config.toml", "rb") as f:
        return tomllib.load(f)


def one_line_error(r, status=1):
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.strip()]) == 1, r.stderr


@pytest.mark.parametrize("lx", BACKENDS, indirect=True)
def test_clones_are_isolated(lx):
    run, lxpath, backend = lx
    run("create", "-n", "gold", "-t", "busybox", "-B", backend)
    write(lxpath, "gold", "marker", "gold\n")
    run("copy", "-n", "gold", "-N", "snap", "-s")
    run("copy", "-n", "gold", "-N", "full")
    assert names(run) == ["full", "gold", "snap"]
    if backend == "dir":
        # the source became an overlay over its own tree, which did not move or change
        assert config_of(lxpath, "gold")["rootfs"] == {
            "backend": "overlay", "path": "merged", "lower": "rootfs"}
        assert (lxpath / "gold" / "rootfs" / "marker").read_text() == "gold\n"
    snap_cfg = config_of(lxpath, "snap")
    assert snap_cfg["rootfs"]["origin"] == "gold"
    assert snap_cfg["rootfs"]["backend"] == ("btrfs" if backend == "btrfs" else "overlay")
    assert "origin" not in config_of(lxpath, "full")["rootfs"]
    assert config_of(lxpath, "full")["rootfs"]["backend"] == backend
    before = container_sum(lxpath, "gold")
    for clone in ("snap", "full"):
        assert read(lxpath, clone, "marker") == "gold\n"
        assert read(lxpath, clone, "etc/hostname") == f"{clone}\n"
        assert f"\t{clone}" in read(lxpath, clone, "etc/hosts")
        assert config_of(lxpath, clone)["hostname"] == clone
        # written and deleted in the clone: the source keeps its own
        write(lxpath, clone, "marker", f"{clone}\n")
        write(lxpath, clone, f"only-in-{clone}", "x")
        with rootfs_of(lxpath, clone) as root:
            os.unlink(root / "etc" / "profile")
    assert container_sum(lxpath, "gold") == before
    assert read(lxpath, "gold", "etc/hostname") == "gold\n"
    # written in the source: no clone sees it
    write(lxpath, "gold", "later", "x")
    with rootfs_of(lxpath, "gold") as root:
        os.unlink(root / "etc" / "passwd")
    for clone in ("snap", "full"):
        assert read(lxpath, clone, "later") is None
        assert read(lxpath, clone, "etc/passwd")
    # and another snapshot clone of the source sees the source as it is now
    run("copy", "-n", "gold", "-N", "snap2", "-s")
    assert read(lxpath, "snap2", "later") == "x"
    assert read(lxpath, "snap2", "etc/passwd") is None
    assert read(lxpath, "snap2", "marker") == "gold\n"
    assert read(lxpath, "snap", "marker") == "snap\n"
    assert read(lxpath, "full", "marker") == "full\n"


@pytest.mark.parametrize("lx", BACKENDS, indirect=True)
def test_rename(lx):
    run, lxpath, backend = lx
    run("create", "-n", "old", "-t", "busybox", "-B", backend)
    write(lxpath, "old", "marker", "data\n")
    r = run("copy", "-n", "old", "-N", "new", "-R")
    assert "renamed" in r.stdout
    assert names(run) == ["new"]
    assert read(lxpath, "new", "marker") == "data\n"
    assert read(lxpath, "new", "etc/hostname") == "new\n"
    assert config_of(lxpath, "new")["hostname"] == "new"
    run("copy", "-n", "new", "-N", "kept", "-R", "-K")
    assert read(lxpath, "kept", "etc/hostname") == "new\n"
    assert [p.name for p in lxpath.iterdir() if not p.name.endswith(".lock")] == ["kept"]


def test_macs_hostname_paths_and_hooks(lxpath, tmp_path):
    run = Runner(lxpath)
    base = tmp_path / "base"
    make_special_tree(base)
    hook_out = tmp_path / "hook.out"
    src = make_container(lxpath, "src", "dir", base, extra=(
        f'\n[[mount]]\nsource = "{lxpath}/src/shared"\ntarget = "/srv"\n'
        f'options = ["bind", "create=dir"]\n'
        f'\n[hooks]\nclone = ["echo $LXPY_NAME $LXPY_SRC_NAME $LXPY_ROOTFS > {hook_out}; '
        'test -f $LXPY_ROOTFS/etc/hostname"]\n'))
    (src / "shared").mkdir()
    (src / "notes.txt").write_text("kept with the container\n")
    run("copy", "-n", "src", "-N", "c1")
    cfg = config_of(lxpath, "c1")
    mac = cfg["net"][0]["hwaddr"]
    assert mac.startswith("00:16:3e:") and mac != "00:16:3e:12:34:56"
    assert cfg["mount"][0]["source"] == f"{lxpath}/c1/shared"
    assert (lxpath / "c1" / "notes.txt").read_text() == "kept with the container\n"
    assert "# made by the storage tests" in (lxpath / "c1" / "config.toml").read_text()
    name, srcname, rootfs = hook_out.read_text().split()
    assert (name, srcname) == ("c1", "src")
    assert (lxpath / "c1" / "rootfs" / "etc" / "hosts").read_text().endswith("127.0.1.1 c1\n")
    run("copy", "-n", "src", "-N", "c2", "-M", "-K")
    assert config_of(lxpath, "c2")["net"][0]["hwaddr"] == "00:16:3e:12:34:56"
    assert (lxpath / "c2" / "rootfs" / "etc" / "hostname").read_text() == "orig\n"


def test_failing_clone_hook_leaves_nothing(lxpath, tmp_path):
    run = Runner(lxpath)
    base = tmp_path / "base"
    make_special_tree(base)
    make_container(lxpath, "src", "overlay", base,
                   extra='\n[hooks]\nclone = ["echo no >&2; exit 3"]\n')
    r = run("copy", "-n", "src", "-N", "c1", "-s", check=False)
    one_line_error(r)
    assert "clone hook" in r.stderr and "no" in r.stderr
    assert names(run) == ["src"]
    assert not [p for p in lxpath.iterdir() if p.name.startswith(".tmp-")]
    assert not any(m.startswith(str(lxpath)) for m in open("/proc/self/mountinfo").read().split())


def test_bad_input(lxpath):
    run = Runner(lxpath)
    run("create", "-n", "a", "-t", "busybox", "-B", "dir")
    run("create", "-n", "b", "-t", "busybox", "-B", "dir")
    one_line_error(run("copy", "-n", "a", "-N", "b", check=False))         # exists
    one_line_error(run("copy", "-n", "a", "-N", "../x", check=False), 2)   # bad name
    one_line_error(run("copy", "-n", "nope", "-N", "c", check=False))      # no source
    one_line_error(run("copy", "-n", "a", check=False), 2)                 # no -N
    one_line_error(run("copy", "-n", "a", "-N", "c", "-B", "zfs", check=False))
    one_line_error(run("copy", "-n", "a", "-N", "c", "-B", "btrfs", check=False))
    one_line_error(run("copy", "-n", "a", "-N", "c", "-R", "-s", check=False), 2)
    one_line_error(run("copy", "-n", "a", "-N", "a", check=False), 2)
    assert names(run) == ["a", "b"]
    assert not [p for p in lxpath.iterdir() if p.name.startswith(".tmp-")]


def test_symlinked_hostname_cannot_redirect_the_write(lxpath, tmp_path):
    run = Runner(lxpath)
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    base = tmp_path / "base"
    make_special_tree(base)
    os.unlink(base / "etc" / "hostname")
    os.symlink(str(victim), base / "etc" / "hostname")
    os.unlink(base / "etc" / "hosts")
    os.symlink(str(victim), base / "etc" / "hosts")
    make_container(lxpath, "src", "dir", base)
    run("copy", "-n", "src", "-N", "c1")
    assert victim.read_text() == "host file\n"
    assert (lxpath / "c1" / "rootfs" / "etc" / "hostname").read_text() == "c1\n"


def test_origin_with_20_snapshot_clones_cannot_be_destroyed(lxpath):
    run = Runner(lxpath)
    run("create", "-n", "origin", "-t", "busybox", "-B", "dir")
    from lxpy.container import Container
    from lxpy.lifecycle.copy import copy_container
    from lxpy.lifecycle.destroy import destroy
    clones = [f"c{i:02d}" for i in range(20)]
    for c in clones[:2]:
        run("copy", "-n", "origin", "-N", c, "-s")
    for c in clones[2:]:           # the same code, without 18 interpreter start-ups
        copy_container(Container("origin", lxpath), c, snapshot=True)
    r = run("destroy", "-n", "origin", check=False)
    one_line_error(r)
    assert "c00" in r.stderr and "c19" in r.stderr
    r = run("copy", "-n", "origin", "-N", "moved", "-R", check=False)
    one_line_error(r)
    assert (lxpath / "origin" / "rootfs" / "bin").is_dir()
    for c in clones[:-1]:
        destroy(Container(c, lxpath))
    one_line_error(run("destroy", "-n", "origin", check=False))
    run("destroy", "-n", clones[-1])
    run("destroy", "-n", "origin")
    assert names(run) == []
    assert [p.name for p in lxpath.iterdir() if not p.name.endswith(".lock")] == []


def test_a_clone_with_a_broken_config_still_holds_its_origin(lxpath):
    """A snapshot clone whose config.toml an admin broke by hand still depends on its
    origin: destroying the origin is refused, naming the clone, until the config is fixed
    and the clone destroyed; the origin's data is never touched meanwhile."""
    run = Runner(lxpath)
    run("create", "-n", "gold", "-t", "busybox", "-B", "overlay")
    write(lxpath, "gold", "marker", "gold\n")
    run("copy", "-n", "gold", "-N", "web", "-s")
    cfg = lxpath / "web" / "config.toml"
    good = cfg.read_text()
    cfg.write_text(good.replace("[rootfs]", "[rootfs", 1))       # a typo: not TOML any more
    r = run("destroy", "-n", "gold", check=False)
    one_line_error(r)
    assert "web" in r.stderr
    assert read(lxpath, "gold", "marker") == "gold\n"
    assert (lxpath / "gold" / "layers").is_dir()
    cfg.write_text(good)
    assert read(lxpath, "web", "marker") == "gold\n"             # the clone is whole
    run("destroy", "-n", "web")
    run("destroy", "-n", "gold")
    assert names(run) == []


@pytest.mark.parametrize("tmpfs", [False, True])
def test_ephemeral_copy_is_destroyed_when_it_stops(lxpath, tmpfs):
    run = Runner(lxpath)
    run("create", "-n", "gold", "-t", "busybox", "-B", "overlay")
    r = run("copy", "-n", "gold", "-N", "eph", "-e", *(["-t"] if tmpfs else []), check=False)
    assert r.returncode == 0, r.stderr
    assert "eph" in names(run)
    run("wait", "-n", "eph", "-s", "RUNNING", "-t", "30")
    if tmpfs:
        mounts = open("/proc/self/mountinfo").read()
        assert f"{lxpath}/eph/.tmpfs " in mounts
    run("stop", "-n", "eph", "-k")
    deadline = time.monotonic() + 30
    while "eph" in names(run) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert names(run) == ["gold"]
    assert [p.name for p in lxpath.iterdir() if not p.name.startswith(".")] == ["gold"]
    assert str(lxpath) not in open("/proc/self/mountinfo").read()

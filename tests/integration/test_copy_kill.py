"""SIGKILL lxpy-copy (snapshot, full, rename) and lxpy-snapshot (make, restore) at random
moments: the source never changes, nothing half-made is listed, and a retry works."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from lxpy.container import Container
from lxpy.lifecycle.sweep import sweep
from tests.conftest import BIN, Runner
from tests.integration.test_copy import names, write
from tests.integration.test_storage_helpers import container_sum

# printed with every failed trial; LXPY_TEST_SEED=N replays one
SEED = int(os.environ.get("LXPY_TEST_SEED") or random.randrange(1 << 30))


@pytest.fixture
def lxpath(tmp_path):
    """An lxpath on a tmpfs: the trials test crash safety, not the disk (symlink creation
    on this VM's ext4 costs 0.5 ms each), and a few dozen of them must stay fast."""
    from lxpy.linux.mount import MNT_DETACH, mount, mounts_under, umount2
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    mount("tmpfs", mnt, "tmpfs", 0, "mode=0755,size=512m")
    try:
        yield mnt / "lxpath"
    finally:
        for mp in mounts_under(mnt):
            umount2(mp, MNT_DETACH)


def killed(lxpath, *args: str, within: float, rng: random.Random) -> int:
    """Run lxpy-<args> and SIGKILL it after a random delay below within; its status."""
    p = subprocess.Popen([str(BIN / f"lxpy-{args[0]}"), "-P", str(lxpath), *args[1:]],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=rng.uniform(0.0, within))
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
    return p.wait(timeout=60)


def duration(run, *args: str) -> float:
    t = time.monotonic()
    run(*args)
    return time.monotonic() - t


def drop(lxpath, name: str) -> None:
    """Destroy a container quickly, from this process (no CLI start-up)."""
    from lxpy.lifecycle.destroy import destroy
    destroy(Container(name, lxpath), force=False, snapshots=True)


def assert_complete(lxpath, name: str) -> None:
    """A listed container is whole: its config loads and its tree mounts."""
    c = Container(name, lxpath)
    assert c.config.rootfs.backend
    assert container_sum(lxpath, name)


@pytest.mark.parametrize("backend,snap", [("overlay", True), ("dir", True), ("dir", False)])
def test_kill_copy(lxpath, backend, snap):
    rng = random.Random(SEED)
    lxpath.mkdir()
    run = Runner(lxpath)
    run("create", "-n", "src", "-t", "busybox", "-B", backend)
    write(lxpath, "src", "marker", "source\n")
    before = container_sum(lxpath, "src")
    extra = ["-s"] if snap else []
    within = duration(run, "copy", "-n", "src", "-N", "probe", *extra) * 1.2
    drop(lxpath, "probe")
    for trial in range(4):
        status = killed(lxpath, "copy", "-n", "src", "-N", "new", *extra, within=within,
                        rng=rng)
        listed = names(run)
        assert set(listed) <= {"src", "new"}, (trial, SEED, listed)
        assert container_sum(lxpath, "src") == before, (trial, SEED)
        if "new" in listed:
            assert_complete(lxpath, "new")
        else:
            assert status != 0
            run("copy", "-n", "src", "-N", "new", *extra)      # the retry works
        drop(lxpath, "new")
    sweep(lxpath)
    assert sorted(p.name for p in lxpath.iterdir() if not p.name.endswith(".lock")) == ["src"]


def test_rename_killed_right_after_the_hostname_changed(lxpath):
    """The worst moment for a rename: /etc/hostname and /etc/hosts already say the new
    name, the directory does not yet. The journal holds the old files before they change,
    so the sweep puts the container back as it was (a trial at a random moment rarely lands
    there: once in a few hundred)."""
    lxpath.mkdir()
    run = Runner(lxpath)
    run("create", "-n", "a", "-t", "busybox", "-B", "overlay")
    write(lxpath, "a", "marker", "data\n")
    ref = container_sum(lxpath, "a", file_times=False)
    code = ("import os, sys; from pathlib import Path\n"
            "from lxpy.container import Container\n"
            "from lxpy.lifecycle import rename\n"
            "real = rename.update_hostname\n"
            "def update_then_die(*a, **k):\n"
            "    real(*a, **k)\n"
            "    os.kill(os.getpid(), 9)\n"
            "rename.update_hostname = update_then_die\n"
            "rename.rename_container(Container('a', Path(sys.argv[1])), 'b')\n")
    p = subprocess.run([sys.executable, "-c", code, str(lxpath)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert names(run) == []                     # neither name while it is half-renamed
    sweep(lxpath)
    assert names(run) == ["a"]
    assert container_sum(lxpath, "a", file_times=False) == ref
    run("copy", "-n", "a", "-N", "b", "-R")     # and the retry works
    assert names(run) == ["b"]


def test_kill_rename(lxpath):
    rng = random.Random(SEED + 1)
    lxpath.mkdir()
    run = Runner(lxpath)
    run("create", "-n", "a", "-t", "busybox", "-B", "overlay")
    write(lxpath, "a", "marker", "data\n")
    within = duration(run, "copy", "-n", "a", "-N", "b", "-R") * 1.2
    run("copy", "-n", "b", "-N", "a", "-R")
    ref = container_sum(lxpath, "a", file_times=False)
    for trial in range(4):
        killed(lxpath, "copy", "-n", "a", "-N", "b", "-R", within=within, rng=rng)
        sweep(lxpath)                  # what the next lxpy-copy/snapshot does first
        listed = names(run)
        assert listed in (["a"], ["b"]), (trial, SEED, listed)
        if listed == ["a"]:
            assert container_sum(lxpath, "a", file_times=False) == ref, (trial, SEED)
        else:
            run("copy", "-n", "b", "-N", "a", "-R")
            assert container_sum(lxpath, "a", file_times=False) == ref, (trial, SEED)
    assert names(run) == ["a"]


def test_kill_snapshot_and_restore(lxpath):
    rng = random.Random(SEED + 2)
    lxpath.mkdir()
    run = Runner(lxpath)
    run("create", "-n", "c", "-t", "busybox", "-B", "dir")
    write(lxpath, "c", "marker", "one\n")
    at_snap = container_sum(lxpath, "c")
    within = duration(run, "snapshot", "-n", "c") * 1.2
    write(lxpath, "c", "marker", "two\n")
    now = container_sum(lxpath, "c")
    for trial in range(4):
        killed(lxpath, "snapshot", "-n", "c", within=within, rng=rng)
        assert container_sum(lxpath, "c") == now, (trial, SEED)
        listed = json.loads(run("snapshot", "-n", "c", "-L", "--format", "json").stdout)
        for s in listed:
            assert {"config.toml", "meta.toml", "rootfs"} <= {
                p.name for p in (lxpath / "c" / "snaps" / s["name"]).iterdir()}
        run("snapshot", "-n", "c")                 # the retry works
    for trial in range(4):
        killed(lxpath, "snapshot", "-n", "c", "-r", "snap0", within=within, rng=rng)
        got = container_sum(lxpath, "c")
        assert got in (now, at_snap), (trial, SEED)
        run("snapshot", "-n", "c", "-r", "snap0")
        assert container_sum(lxpath, "c") == at_snap
        write(lxpath, "c", "marker", "two\n")
        now = container_sum(lxpath, "c")
    assert names(run) == ["c"]
    assert not [p for p in (lxpath / "c").iterdir() if p.name.startswith(".restore")]


def test_kill_first_snapshot_clone_of_a_dir_container(lxpath):
    """The first overlay snapshot clone of a dir container also switches the source to an
    overlay over its own tree: killed anywhere in that, the source's tree is the same."""
    rng = random.Random(SEED + 3)
    lxpath.mkdir()
    run = Runner(lxpath)
    run("create", "-n", "probe", "-t", "busybox", "-B", "dir")
    within = duration(run, "copy", "-n", "probe", "-N", "probe2", "-s") * 1.2
    for trial in range(4):
        run("create", "-n", "src", "-t", "busybox", "-B", "dir")
        before = container_sum(lxpath, "src")
        on_disk = (lxpath / "src" / "rootfs").stat().st_mtime_ns
        killed(lxpath, "copy", "-n", "src", "-N", "new", "-s", within=within, rng=rng)
        assert container_sum(lxpath, "src") == before, (trial, SEED)
        assert (lxpath / "src" / "rootfs").stat().st_mtime_ns == on_disk
        assert set(names(run)) <= {"probe", "probe2", "src", "new"}
        if "new" not in names(run):
            run("copy", "-n", "src", "-N", "new", "-s")
        assert container_sum(lxpath, "new", file_times=False) != ""
        drop(lxpath, "new")
        drop(lxpath, "src")

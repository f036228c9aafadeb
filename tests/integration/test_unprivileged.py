"""Unprivileged containers on every backend (issue 16): the rootfs is an idmapped mount
(dir and btrfs: the tree itself; overlay: its layers), trees on disk keep the owners they
have inside (never shifted, never chowned), bind mounts are idmapped unless "noidmap", a map
with a hole passes a host id through, and a filesystem that cannot be idmapped is refused
with one clear line. Busybox containers, explicit maps."""

from __future__ import annotations

import os
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import Runner, wait_for
from tests.integration.test_runtime import assert_nothing_left, state_file
from tests.integration.test_copy import lx  # noqa: F401 - fixture: (run, lxpath, backend)
from tests.integration.test_storage_helpers import btrfs_lxpath  # noqa: F401 - fixture

BACKENDS = ["dir", "overlay", "btrfs"]
BLOCK = 1_300_000 + (os.getpid() % 50) * 131072     # this run's host ids, away from others


def idmap_toml(base: int, hole: int | None = None) -> str:
    """[idmap] mapping 0..65535 to base..; hole: that id passes through (inside = host)."""
    if hole is None:
        m = f"[[0, {base}, 65536]]"
    else:
        m = f"[[0, {base}, {hole}], [{hole}, {hole}, 1], [{hole + 1}, {base + hole + 1}, " \
            f"{65535 - hole}]]"
    return f"[idmap]\nuid = {m}\ngid = {m}\n"


def create(run: Runner, lxpath: Path, name: str, backend: str, extra: str = "",
           base: int = BLOCK) -> Path:
    f = lxpath.parent / f"{name}-extra.toml"
    f.write_text(idmap_toml(base) + '[[net]]\ntype = "empty"\n' + extra)
    run("create", "-n", name, "-t", "busybox", "-B", backend, "-f", str(f), "-q")
    return lxpath / name


def sh(run: Runner, name: str, script: str, check: bool = True) -> str:
    return run("attach", "-n", name, "--", "/bin/sh", "-c", script, check=check).stdout


def host_ids(pid: int | str) -> tuple[list[int], list[int]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(x for x in lines if x.startswith("Uid:")).split()[1:]
    gid = next(x for x in lines if x.startswith("Gid:")).split()[1:]
    return [int(x) for x in uid], [int(x) for x in gid]


def make_privileged(run: Runner, name: str) -> None:
    run("config", "-n", name, "set", "idmap", "none")


def config_of(lxpath: Path, name: str) -> dict:
    with open(lxpath / name / "config.toml", "rb") as f:
        return tomllib.load(f)


def on_disk(lxpath: Path, name: str) -> Path:
    """Where the container's own writes land on disk: overlay's delta, else its rootfs."""
    cfg = config_of(lxpath, name)["rootfs"]
    return lxpath / name / ("delta" if cfg["backend"] == "overlay" else cfg.get("path", "rootfs"))


def lowers(lxpath: Path, name: str) -> list[Path]:
    cfg = config_of(lxpath, name)["rootfs"]
    return [p if p.is_absolute() else lxpath / name / p
            for p in map(Path, filter(None, cfg.get("lower", "").split(":")))]


def tree_owners_and_ctimes(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            out[os.path.relpath(os.path.join(dirpath, n), root)] = (
                st.st_uid, st.st_gid, st.st_ctime_ns)
    return out


@pytest.mark.parametrize("lx", BACKENDS, indirect=True)
def test_unprivileged_rootfs_on_each_backend(lx, unique):  # noqa: F811
    run, lxpath, backend = lx
    create(run, lxpath, unique, backend)
    base_tree = (lowers(lxpath, unique) or [on_disk(lxpath, unique)])[-1]
    before = tree_owners_and_ctimes(base_tree)
    run("start", "-n", unique)
    try:
        pid = state_file(lxpath, unique)["pid"]
        assert host_ids(pid) == ([BLOCK] * 4, [BLOCK] * 4)       # init runs as the block's root
        run("stop", "-n", unique, "-r")     # a reboot: the monitor's own helper idmaps again
        st = wait_for(lambda: (s := state_file(lxpath, unique)).get("state") == "RUNNING" and
                      s.get("pid") not in (pid, "") and s, what="a new init after the reboot")
        assert host_ids(st["pid"]) == ([BLOCK] * 4, [BLOCK] * 4)
        out = sh(run, unique, "id -u; touch /made; mkdir /dir; chown 33:44 /dir; "
                 "echo more >> /etc/passwd; rm /etc/group; ls -ln /made /etc/passwd; "
                 "test -e /etc/group || echo gone")
        lines = out.split("\n")
        assert lines[0] == "0"
        assert "gone" in out
        assert all(" 0 " in x for x in lines[1:3]), out          # root owns them inside
    finally:
        run("stop", "-n", unique, "-k")
    assert_nothing_left(lxpath, unique)
    disk = on_disk(lxpath, unique)
    # written inside, owned on disk as inside: 0 and 33:44, not the host block's ids
    assert (os.stat(disk / "made").st_uid, os.stat(disk / "made").st_gid) == (0, 0)
    assert (os.stat(disk / "dir").st_uid, os.stat(disk / "dir").st_gid) == (33, 44)
    assert os.stat(disk / "etc/passwd").st_uid == 0
    assert (disk / "etc/passwd").read_text().endswith("more\n")
    if backend == "overlay":
        wh = os.lstat(disk / "etc/group")                        # a whiteout, owned by 0
        assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
        assert any(x.startswith("trusted.overlay.") for x in os.listxattr(disk / "etc")) or \
            os.stat(disk / "etc").st_uid == 0
        assert not (disk / "etc/group").is_file()
    # the read-only base tree (the cache under an overlay, or the tree itself before our
    # writes) was not chowned: owners and ctimes of what we did not touch are as they were
    after = tree_owners_and_ctimes(base_tree)
    touched = ("made", "dir", "etc", "etc/passwd", "etc/group", "run", "run/", "dev/", "tmp/")
    assert {k: v for k, v in after.items() if not k.startswith(touched) and k in before} == \
        {k: v for k, v in before.items() if not k.startswith(touched)}
    assert not [k for k, v in after.items() if v[0] >= BLOCK or v[1] >= BLOCK]
    # the same delta or tree serves a privileged start: nothing was shifted
    make_privileged(run, unique)
    run("start", "-n", unique)
    try:
        assert host_ids(state_file(lxpath, unique)["pid"])[0] == [0] * 4
        out = sh(run, unique, "stat -c %u:%g /made /dir; tail -1 /etc/passwd; "
                 "test -e /etc/group || echo gone")
        assert out.split() == ["0:0", "33:44", "more", "gone"]
    finally:
        run("stop", "-n", unique, "-k")
    assert_nothing_left(lxpath, unique)


@pytest.mark.parametrize("lx", BACKENDS, indirect=True)
def test_clones_copies_and_restores_keep_owners(lx):  # noqa: F811
    run, lxpath, backend = lx
    create(run, lxpath, "gold", backend)
    run("start", "-n", "gold")
    try:
        sh(run, "gold", "echo gold > /owned; chown 33:33 /owned")
    finally:
        run("stop", "-n", "gold", "-k")
    run("snapshot", "-n", "gold")
    run("copy", "-n", "gold", "-N", "snap", "-s")
    run("copy", "-n", "gold", "-N", "full")
    sh_ok = "stat -c '%u:%g' /owned; cat /owned; touch /new; stat -c %u /new"
    for name in ("gold", "snap", "full"):
        run("start", "-n", name)
        try:
            assert host_ids(state_file(lxpath, name)["pid"])[0] == [BLOCK] * 4
            assert sh(run, name, sh_ok).split() == ["33:33", "gold", "0"]
        finally:
            run("stop", "-n", name, "-k")
        assert os.stat(on_disk(lxpath, name) / "new").st_uid == 0
    run("snapshot", "-n", "gold", "-r", "snap0", "-N", "restored")
    run("start", "-n", "restored")
    try:
        assert sh(run, "restored", "stat -c '%u:%g' /owned; test -e /new || echo no-new").split() \
            == ["33:33", "no-new"]
    finally:
        run("stop", "-n", "restored", "-k")
    for name in ("gold", "snap", "full", "restored"):
        assert_nothing_left(lxpath, name)


@pytest.mark.parametrize("lx", ["dir", "overlay"], indirect=True)
def test_a_new_map_chowns_nothing(lx, unique):  # noqa: F811
    run, lxpath, backend = lx
    create(run, lxpath, unique, backend)
    run("start", "-n", unique)
    try:
        sh(run, unique, "echo x > /mine; chown 1000:1000 /mine")
    finally:
        run("stop", "-n", unique, "-k")
    disk = on_disk(lxpath, unique)
    before = tree_owners_and_ctimes(disk)
    other = BLOCK + 65536
    run("config", "-n", unique, "set", "idmap",
        f"{{ uid = [[0, {other}, 65536]], gid = [[0, {other}, 65536]] }}")
    run("start", "-n", unique)
    try:
        assert host_ids(state_file(lxpath, unique)["pid"]) == ([other] * 4, [other] * 4)
        assert sh(run, unique, "stat -c '%u:%g' /mine /etc/passwd").split() == \
            ["1000:1000", "0:0"]
    finally:
        run("stop", "-n", unique, "-k")
    assert tree_owners_and_ctimes(disk) == before     # no owner, no ctime changed
    assert_nothing_left(lxpath, unique)


@pytest.mark.parametrize("ids", ["explicit", "auto"])
def test_bind_mounts_idmapped_noidmap_and_pass_through(lxpy, lxpath, unique, tmp_path, ids):
    """Host uid/gid 1000 passed through (inside 1000 = host 1000): an explicit map with a
    hole, or idmap = "auto" (a block of the host's) with idmap_pass = [1000]."""
    src = tmp_path / "shared"
    src.mkdir(mode=0o777)
    os.chmod(src, 0o777)
    (src / "root-file").write_text("r\n")
    (src / "user-file").write_text("u\n")
    os.chown(src / "user-file", 1000, 1000)
    extra = "".join(
        f'[[mount]]\nsource = "{src}"\ntarget = "{t}"\noptions = [{o}]\n'
        for t, o in (("/mnt/idm", '"bind", "create=dir"'),
                     ("/mnt/raw", '"bind", "create=dir", "noidmap"'),
                     ("/mnt/ro", '"bind", "ro", "create=dir"')))
    f = tmp_path / "extra.toml"
    f.write_text((idmap_toml(BLOCK, hole=1000) if ids == "explicit" else
                  'idmap = "auto"\nidmap_pass = [1000]\n') + '[[net]]\ntype = "empty"\n' + extra)
    lxpy("create", "-n", unique, "-t", "busybox", "-B", "dir", "-f", str(f), "-q")
    lxpy("start", "-n", unique)
    try:
        root = host_ids(state_file(lxpath, unique)["pid"])[0][0]
        assert root != 0 and (ids == "auto" or root == BLOCK)
        out = sh(lxpy, unique, "cd /mnt; stat -c %u idm/root-file idm/user-file raw/root-file "
                 "raw/user-file ro/root-file; touch idm/by-root; touch raw/by-root-raw; "
                 "touch idm/by-user; chown 1000:1000 idm/by-user; "
                 "touch ro/nope 2>/dev/null || echo ro-refused")
        assert out.split() == ["0", "1000", "65534", "1000", "0", "ro-refused"], out
    finally:
        lxpy("stop", "-n", unique, "-k")
    # idmapped: the container's root writes as the host's root, its uid 1000 as host 1000
    assert os.stat(src / "by-root").st_uid == 0
    assert os.stat(src / "by-user").st_uid == 1000
    # noidmap: the host sees the container's own host ids
    assert os.stat(src / "by-root-raw").st_uid == root
    assert not (src / "nope").exists()
    assert_nothing_left(lxpath, unique)


def test_lxpath_that_cannot_be_idmapped_is_refused(tmp_path, unique):
    """An lxpath on an overlayfs mount: the dir backend's rootfs cannot be idmapped there."""
    for d in ("lower", "upper", "work", "mnt"):
        (tmp_path / d).mkdir()
    mnt = tmp_path / "mnt"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,"
                    f"workdir={tmp_path}/work", str(mnt)], check=True)
    try:
        lxpath = mnt / "lxpath"
        lxpath.mkdir()
        run = Runner(lxpath)
        create(run, lxpath, unique, "dir")
        r = run("start", "-n", unique, check=False)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert len([x for x in r.stderr.splitlines() if x.strip()]) == 1, r.stderr
        assert "(overlay) does not support idmapped mounts" in r.stderr
        assert "5.12" in r.stderr
        assert_nothing_left(lxpath, unique)
        run("destroy", "-n", unique, "-f")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_checkconfig_reports_idmapped_rootfs_per_backend(lxpy, btrfs_lxpath):  # noqa: F811
    def lines(*args: str) -> dict[str, str]:
        out = lxpy("checkconfig", *args, lxpath=False, check=False).stdout
        return {x.split(":")[0]: x for x in out.splitlines() if x.startswith("Idmapped rootfs")}
    here = lines()
    for backend in ("dir", "overlay"):
        assert "enabled" in here[f"Idmapped rootfs ({backend})"], here
    assert "Idmapped rootfs (btrfs)" in here      # enabled, or why not (not btrfs)
    on_btrfs = lines("-P", str(btrfs_lxpath))
    assert all("enabled" in x for x in on_btrfs.values()), on_btrfs
    assert not [p for p in btrfs_lxpath.parent.rglob("*") if ".lxpy-idmap-probe" in str(p)]


@pytest.mark.parametrize("idmap", ['idmap = "none"\n', ""])
def test_a_failed_mount_says_which_and_why(lxpy, lxpath, unique, tmp_path, idmap):
    """PID 1's (or the idmap helper's) failure reaches lxpy-start as its own message, also
    when "go" was sent ahead and is still unread (privileged, no network)."""
    f = tmp_path / "extra.toml"
    f.write_text(idmap + '[[net]]\ntype = "empty"\n[[mount]]\nsource = "/nonexistent-lxpy"\n'
                 'target = "/mnt/x"\noptions = ["bind", "create=dir"]\n')
    lxpy("create", "-n", unique, "-t", "busybox", "-B", "overlay", "-f", str(f), "-q")
    for _ in range(3):
        r = lxpy("start", "-n", unique, check=False)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "/nonexistent-lxpy" in r.stderr and \
            "No such file or directory" in r.stderr, r.stderr
        assert_nothing_left(lxpath, unique)

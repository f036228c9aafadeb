"""Storage backends on the real kernel: create_from, mounted, mount, usage, destroy, and a
full copy that keeps owners, modes, xattrs, ACLs, hard links, sparse files and devices."""

from __future__ import annotations

import os
import subprocess

import pytest

from lxpy import storage
from lxpy.config.loader import load
from lxpy.lifecycle.destroy import destroy_container
from lxpy.linux.mount import is_mountpoint, mounts_under, umount2
from tests.conftest import clear_lxpath
from tests.integration.test_storage_helpers import (  # noqa: F401 - fixture
    btrfs_lxpath,
    container_sum,
    make_container,
    make_special_tree,
    tree_sum,
)

BACKENDS = ["dir", "overlay", "btrfs"]


@pytest.fixture
def lx(request, tmp_path):
    """(lxpath, backend) for the parametrized backend; btrfs gets a loop-file lxpath."""
    backend = request.param
    p = request.getfixturevalue("btrfs_lxpath") if backend == "btrfs" else tmp_path / "lxpath"
    p.mkdir(exist_ok=True)
    yield p, backend
    clear_lxpath(p)         # destroyed through lxpy: their id blocks go back


@pytest.fixture
def base(tmp_path):
    b = tmp_path / "base"
    make_special_tree(b)
    os.chmod(b, 0o755)
    return b


def test_registry_and_best(tmp_path):
    assert storage.names() == ["btrfs", "dir", "overlay"]
    assert storage.get("dir").name == "dir"
    with pytest.raises(Exception, match="not a storage backend"):
        storage.get("zfs")
    ok, why = storage.get("btrfs").available(tmp_path)
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True,
                        text=True).stdout.strip()
    if fs != "btrfs":
        assert not ok and "not btrfs" in why
        assert storage.best(tmp_path).name == "overlay"


def test_best_is_btrfs_on_btrfs(btrfs_lxpath):  # noqa: F811 - the fixture
    assert storage.best(btrfs_lxpath).name == "btrfs"


@pytest.mark.parametrize("lx", BACKENDS, indirect=True)
def test_backend_lifecycle(lx, base, tmp_path):
    lxpath, backend = lx
    before = tree_sum(base)
    cdir = make_container(lxpath, "c1", backend, base)
    cfg = load(cdir / "config.toml")
    assert cfg.rootfs.backend == backend
    assert cfg.rootfs.path == "rootfs"
    b = storage.get(backend)
    with b.mounted(cdir, cfg) as root:
        assert tree_sum(root, with_dir_times=False) == tree_sum(base, with_dir_times=False)
        (root / "etc" / "hostname").write_text("changed\n")
        (root / "new-file").write_text("new\n")
        os.unlink(root / "a")
    assert not mounts_under(cdir), "mounted() left a mount behind"
    assert tree_sum(base) == before, "writing in the container changed its base"
    # mount(): what the runtime calls in the container's mount namespace
    target = tmp_path / "target"
    target.mkdir()
    b.mount(cdir, cfg, target)
    try:
        assert (target / "new-file").read_text() == "new\n"
        assert (target / "etc" / "hostname").read_text() == "changed\n"
        assert not (target / "a").exists() and (target / "b").exists()
    finally:
        umount2(target)
    assert b.usage(cdir, cfg) > 0
    b.destroy(cdir, cfg)
    assert not (cdir / "rootfs").exists() or not any((cdir / "rootfs").iterdir())
    assert not (cdir / "delta").exists()
    assert not mounts_under(cdir)
    assert tree_sum(base) == before


@pytest.mark.parametrize("lx", BACKENDS, indirect=True)
def test_full_copy_keeps_everything(lx, base):
    from lxpy.container import Container
    from lxpy.lifecycle.copy import copy_container
    lxpath, backend = lx
    make_container(lxpath, "src", backend, base)
    copy_container(Container("src", lxpath), "dst", keep_hostname=True, keep_macs=True)
    assert container_sum(lxpath, "dst") == container_sum(lxpath, "src")
    cfg = load(lxpath / "dst" / "config.toml")
    with storage.for_config(cfg).mounted(lxpath / "dst", cfg) as root:
        st = os.lstat(root / "owned")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 5678, 0o4750)
        assert os.getxattr(root / "xattr", "user.lxpy") == b"hello"
        assert os.getxattr(root / "xattr", "trusted.lxpy") == b"root only"
        assert os.getxattr(root / "acl", "system.posix_acl_access")
        assert os.lstat(root / "a").st_ino == os.lstat(root / "b").st_ino
        assert os.lstat(root / "sparse").st_blocks * 512 < (1 << 20), "sparse file filled in"
        assert os.lstat(root / "null").st_rdev == os.makedev(1, 3)
        assert os.readlink(root / "abs-link") == "/etc/shadow"


def test_btrfs_create_from_a_subvolume_is_a_snapshot(btrfs_lxpath, tmp_path):  # noqa: F811
    from lxpy.linux.fsops import btrfs_subvol_create, is_btrfs_subvolume
    base = btrfs_lxpath.parent / "cache-base"
    btrfs_subvol_create(base)
    (base / "etc").mkdir()
    (base / "etc" / "hostname").write_text("base\n")
    cdir = make_container(btrfs_lxpath, "s1", "btrfs", base)
    assert is_btrfs_subvolume(cdir / "rootfs")
    (cdir / "rootfs" / "etc" / "hostname").write_text("mine\n")
    assert (base / "etc" / "hostname").read_text() == "base\n"
    destroy_container(cdir, load(cdir / "config.toml"))
    assert not cdir.exists()
    assert is_btrfs_subvolume(base)


def test_overlay_mounted_replaces_a_stale_mount(tmp_path, base):
    cdir = make_container(tmp_path / "lx", "o1", "overlay", base)
    cfg = load(cdir / "config.toml")
    b = storage.get("overlay")
    b.mount(cdir, cfg, cdir / "rootfs")          # as a killed command would leave it
    try:
        with b.mounted(cdir, cfg) as root:
            assert (root / "etc" / "hostname").exists()
    finally:
        for mp in mounts_under(cdir):
            umount2(mp, 2)
    assert not is_mountpoint(cdir / "rootfs")
    destroy_container(cdir, cfg)
    assert not cdir.exists()


def test_overlay_editable_copies_up_like_the_kernel(tmp_path, base):
    """Editing the hostname files of a fresh overlay (empty delta) without a mount gives
    the same tree as editing through the mount, and leaves the lower alone."""
    import stat as st_
    lower_before = tree_sum(base)
    b = storage.get("overlay")
    results = []
    for name, via_mount in (("m", True), ("e", False)):
        cdir = make_container(tmp_path / "lx", name, "overlay", base)
        cfg = load(cdir / "config.toml")
        ctx = b.mounted(cdir, cfg) if via_mount else b.editable(
            cdir, cfg, ("etc/hostname", "etc/hosts", "etc/new"))
        with ctx as root:
            (root / "etc" / "hostname").write_text("edited\n")
            (root / "etc" / "new").write_text("new\n")
        assert not mounts_under(cdir)
        with b.mounted(cdir, cfg) as root:
            results.append(tree_sum(root, with_dir_times=False, file_times=False))
            assert (root / "etc" / "hosts").read_text() == (base / "etc" / "hosts").read_text()
    assert results[0] == results[1]
    assert tree_sum(base) == lower_before
    # a whiteout in the upper is not handled by hand: editable() mounts instead
    cdir = tmp_path / "lx" / "e"
    cfg = load(cdir / "config.toml")
    os.unlink(cdir / "delta" / "etc" / "hosts")
    os.mknod(cdir / "delta" / "etc" / "hosts", st_.S_IFCHR | 0o000, 0)
    with b.editable(cdir, cfg, ("etc/hosts",)) as root:
        assert root == cdir / "rootfs"
        assert not (root / "etc" / "hosts").exists()
    assert not mounts_under(cdir)


@pytest.mark.parametrize("top_etc", ["merged", "opaque", "hosts-whiteout", "etc-whiteout"])
def test_overlay_editable_follows_lower_layers_like_the_kernel(tmp_path, base, top_etc):
    """Over several lowers (a snapshot clone's source layers), editing the hostname files
    without a mount gives the same merged tree as through the mount: an opaque /etc in an
    upper lower hides the files of the lowers below it (they are not copied up), whiteouts
    make editable() mount instead."""
    import stat as st_
    top = tmp_path / "top"
    top.mkdir()
    os.chmod(top, 0o755)
    if top_etc == "etc-whiteout":
        os.mknod(top / "etc", st_.S_IFCHR | 0o000, 0)
    else:
        (top / "etc").mkdir()
        (top / "etc" / "hostname").write_text("top\n")
        if top_etc == "opaque":
            os.setxattr(top / "etc", "trusted.overlay.opaque", b"y")
        if top_etc == "hosts-whiteout":
            os.mknod(top / "etc" / "hosts", st_.S_IFCHR | 0o000, 0)
    b = storage.get("overlay")
    results = []
    for name, via_mount in (("m", True), ("e", False)):
        cdir = make_container(tmp_path / "lx", name, "overlay", base)
        cfg_path = cdir / "config.toml"
        cfg_path.write_text(cfg_path.read_text().replace(f'lower = "{base}"',
                                                         f'lower = "{top}:{base}"'))
        cfg = load(cfg_path)
        ctx = b.mounted(cdir, cfg) if via_mount else b.editable(
            cdir, cfg, ("etc/hostname", "etc/hosts"))
        with ctx as root:
            if via_mount is False and top_etc in ("hosts-whiteout", "etc-whiteout"):
                assert root == cdir / "rootfs"         # mounted after all
            if (root / "etc").is_dir():
                (root / "etc" / "hostname").write_text("edited\n")
        assert not mounts_under(cdir)
        with b.mounted(cdir, cfg) as root:
            results.append(tree_sum(root, with_dir_times=False, file_times=False))
            if top_etc == "opaque":
                assert not (root / "etc" / "hosts").exists()
            if top_etc in ("merged", "opaque"):
                assert (root / "etc" / "hostname").read_text() == "edited\n"
            if top_etc == "merged":
                assert (root / "etc" / "hosts").read_text() == \
                    (base / "etc" / "hosts").read_text()
    assert results[0] == results[1]

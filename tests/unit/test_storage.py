"""Storage logic that needs no root: the registry, lower lists, temp-name parsing, the
clone's config (paths, hostname, MACs, origin, comments kept), MAC regeneration."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lxpy import storage
from lxpy.config.schema import BY_KEY
from lxpy.errors import StorageError
from lxpy.lifecycle.identity import clone_config, new_hwaddr
from lxpy.lifecycle.snapshot import SNAP_RE
from lxpy.lifecycle.sweep import _tmp_owner
from lxpy.linux import loop, quota
from lxpy.storage.base import join_lowers, rootfs_dir, split_lowers
from lxpy.storage.pool import DRIVERS, Pool, unit_escape, unit_text


def test_registry():
    assert storage.names() == ["btrfs", "dir", "overlay"]
    for n in storage.names():
        b = storage.get(n)
        assert b.name == n and b.description
    with pytest.raises(StorageError) as e:
        storage.get("zfs")
    assert "dir" in str(e.value) and "best" in str(e.value)


def test_dir_is_always_available(tmp_path):
    assert storage.get("dir").available(tmp_path) == (True, "")
    assert storage.best(tmp_path).name in ("btrfs", "overlay", "dir")


def test_lowers_round_trip(tmp_path):
    lowers = [Path("/var/lib/lxpy/a/rootfs"), Path("/var/cache/lxpy/debian/rootfs")]
    assert split_lowers(join_lowers(lowers), tmp_path) == lowers
    assert split_lowers("layer:/abs", tmp_path) == [tmp_path / "layer", Path("/abs")]
    assert split_lowers("", tmp_path) == []
    for bad in ("/a:b", "/a,b"):
        with pytest.raises(StorageError):
            join_lowers([Path(bad)])


def test_rootfs_dir_follows_the_container_dir(tmp_path):
    class R:
        path = "rootfs"

    class C:
        rootfs = R()
    assert rootfs_dir(tmp_path / ".tmp-x", C()) == tmp_path / ".tmp-x" / "rootfs"
    R.path = "/srv/tree"
    assert rootfs_dir(tmp_path, C()) == Path("/srv/tree")


@pytest.mark.parametrize("entry,owner", [
    (".tmp-copy-web1-abcd1234", ("copy", "web1")),
    (".tmp-copy-web-1-x-abcd1234", ("copy", "web-1-x")),
    (".tmp-rename-b-00ff00ff", ("rename", "b")),
    (".tmp-create-a.b_c-12345678", ("create", "a.b_c")),
    (".web1.lock", None), ("web1", None), (".tmp-", None), (".tmp-copy-", None),
])
def test_tmp_owner(entry, owner):
    assert _tmp_owner(entry) == owner


def test_new_hwaddr_keeps_the_oui():
    macs = {new_hwaddr("00:16:3e:12:34:56") for _ in range(20)}
    assert len(macs) > 1
    for m in macs:
        assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", m)
    assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", new_hwaddr("00:16:3e:xx:xx:xx"))
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", new_hwaddr("garbage"))


@given(st.text(max_size=40))
def test_new_hwaddr_never_raises(mac):
    assert len(new_hwaddr(mac).split(":")) == 6


SRC = """# the golden image
include = ["busybox"]
hostname = "gold"   # keep me

[rootfs]
backend = "overlay"
path = "rootfs"
lower = "/var/cache/lxpy/busybox/rootfs"

[[mount]]
source = "/var/lib/lxpy/gold/shared"
target = "/srv"

[[net]]
type = "veth"
hwaddr = "00:16:3e:aa:bb:cc"
"""


def test_render_config_for_a_snapshot_clone():
    text = clone_config(SRC, keys={"rootfs.backend": "overlay", "rootfs.path": "rootfs",
                                    "rootfs.lower": "/var/cache/lxpy/busybox/rootfs"},
                         old_dir=Path("/var/lib/lxpy/gold"), new_dir=Path("/var/lib/lxpy/web"),
                         old_name="gold", new_name="web", keep_hostname=False,
                         keep_macs=False, origin="gold")
    assert "# the golden image" in text and "# keep me" in text
    d = tomllib.loads(text)
    assert d["hostname"] == "web"
    assert d["rootfs"]["origin"] == "gold"
    assert d["mount"][0]["source"] == "/var/lib/lxpy/web/shared"
    assert d["net"][0]["hwaddr"].startswith("00:16:3e:")
    assert d["net"][0]["hwaddr"] != "00:16:3e:aa:bb:cc"


def test_render_config_full_copy_to_dir_keeps_what_was_asked():
    text = clone_config(SRC, keys={"rootfs.backend": "dir", "rootfs.path": "rootfs"},
                         old_dir=Path("/var/lib/lxpy/gold"), new_dir=Path("/x/web"),
                         old_name="gold", new_name="web", keep_hostname=True,
                         keep_macs=True, origin=None)
    d = tomllib.loads(text)
    assert d["hostname"] == "gold"
    assert d["rootfs"] == {"backend": "dir", "path": "rootfs"}
    assert d["net"][0]["hwaddr"] == "00:16:3e:aa:bb:cc"


def test_snapshot_names():
    assert SNAP_RE.match("snap0") and SNAP_RE.match("snap12")
    for bad in ("snap", "snap-1", "snapx", ".tmp-snap0-ab", "snap0/..", "Snap0"):
        assert not SNAP_RE.match(bad)


# -- lxpy-storage pools and limits.disk (no privileges) ---------------------------------

@pytest.mark.parametrize("path", ["/var/lib/lxpy/storage/p1", "/srv/my-pool.d/x_y",
                                  "/tmp/a b/ü", "/x/.hidden"])
def test_pool_unit_name_is_systemd_escape(path):
    if not shutil.which("systemd-escape"):
        pytest.skip("systemd-escape (systemd) is not installed")
    want = subprocess.run(["systemd-escape", "--path", path], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert unit_escape(path) == want


def test_pool_unit_text_mounts_the_image_at_the_lxpath(tmp_path):
    p = Pool("p1", tmp_path)
    text = unit_text(p, DRIVERS["xfs"])
    assert f"What={tmp_path}/p1.img\nWhere={tmp_path}/p1\nType=xfs\nOptions=loop,prjquota" in text
    assert "WantedBy=local-fs.target" in text
    assert "Options=loop\n" in unit_text(p, DRIVERS["btrfs"])


def test_limits_disk_is_a_size_of_at_least_1m():
    s = BY_KEY["limits.disk"]
    assert s.live and s.parse("20G") == 20 << 30
    for bad in ("100K", "20X", -1, True):
        with pytest.raises(ValueError):
            s.parse(bad)


def test_quota_structs_match_the_kernel():
    assert ctypes.sizeof(quota.IfDqblk) == 72 and ctypes.sizeof(quota.IfDqinfo) == 24
    assert quota._FSXATTR.size == 28
    assert loop._CONFIG_SIZE == 304

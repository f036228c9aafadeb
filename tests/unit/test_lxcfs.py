"""lxpy.lxcfs without root: which lxcfs mounts a mountinfo shows, what LXC's hook would
bind from an lxcfs tree, and the proc.lxcfs setting."""

from __future__ import annotations

import pytest

from lxpy import lxcfs
from lxpy.config.schema import BY_KEY
from lxpy.runtime import mounts

MOUNTINFO = """\
24 1 8:1 / / rw,relatime - ext4 /dev/root rw
313 27 0:83 / /var/lib/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,user_id=0,allow_other
314 27 0:84 / /var/tmp/my\\040lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,allow_other
338 336 0:83 /proc/cpuinfo /proc/cpuinfo ro,nosuid - fuse.lxcfs lxcfs rw,allow_other
400 27 0:90 / /mnt/other rw shared:5 - fuse.sshfs host:/ rw
"""


def test_parse_mountinfo():
    assert lxcfs.parse_mountinfo(MOUNTINFO) == {
        "/var/lib/lxcfs": "0:83", "/var/tmp/my lxcfs": "0:84", "/proc/cpuinfo": "0:83"}
    assert lxcfs.parse_mountinfo("garbage\n\n") == {}


def test_binds_as_lxcs_hook(tmp_path):
    for f in ("meminfo", "uptime", "cpuinfo"):
        (tmp_path / "proc").mkdir(exist_ok=True)
        (tmp_path / "proc" / f).write_text("")
    cpu = tmp_path / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text("0\n")
    # no uevent: each entry of the cpu directory
    assert lxcfs.binds(str(tmp_path)) == [
        (f"{tmp_path}/proc/cpuinfo", "/proc/cpuinfo"),
        (f"{tmp_path}/proc/meminfo", "/proc/meminfo"),
        (f"{tmp_path}/proc/uptime", "/proc/uptime"),
        (f"{cpu}/online", "/sys/devices/system/cpu/online")]
    # lxcfs 5 serves the whole directory (it has a uevent): bound as one
    (cpu / "uevent").write_text("")
    assert lxcfs.binds(str(tmp_path))[-1] == (str(cpu), "/sys/devices/system/cpu")
    assert not lxcfs.live(str(tmp_path))        # a directory, not lxcfs's mount


@pytest.mark.parametrize("value, parsed", [("auto", "auto"), (True, True), (False, False),
                                           ("yes", True), ("off", False)])
def test_setting(value, parsed):
    assert BY_KEY["proc.lxcfs"].parse(value) == parsed
    assert BY_KEY["proc.lxcfs"].default == "auto"


def test_setting_rejects():
    with pytest.raises(ValueError, match='not "auto", true or false'):
        BY_KEY["proc.lxcfs"].parse("maybe")
    with pytest.raises(ValueError):
        BY_KEY["proc.lxcfs_path"].parse("var/lib/lxcfs")


def test_op_describes():
    op = mounts.LxcfsBind("/var/lib/lxcfs/proc/meminfo", "/proc/meminfo", "/run/x/rootfs")
    assert op.describe() == "bind lxcfs's /var/lib/lxcfs/proc/meminfo on /proc/meminfo, read-only"

"""The cgroup part of a start plan (no root needed): an unprivileged container mounts its
cgroups inside its own cgroup namespace, where the kernel allows it; without one the plan
says why it will have none."""

from __future__ import annotations

import pytest

from lxpy.cgroups.v1 import container_mounts_v1
from lxpy.cgroups.v2 import container_mounts_v2
from lxpy.container import Container
from lxpy.idmap import IdMap
from lxpy.runtime import plan
from lxpy.runtime.mounts import CgroupFs

IDMAP = '[idmap]\nuid = [[0, 100000, 65536]]\ngid = [[0, 100000, 65536]]\n'


class _Cgroup:
    """What plan.build reads of a cgroups.Cgroup."""
    path = "lxpy/c1"
    hierarchies = ()

    def dirs(self):
        return []

    def container_mounts(self):
        return container_mounts_v2()


def _cgroup_op(tmp_path, config: str) -> CgroupFs:
    d = tmp_path / "c1"
    (d / "rootfs").mkdir(parents=True)
    (d / "config.toml").write_text(config)
    c = Container("c1", tmp_path)
    idmap = IdMap(((0, 100000, 65536),), ((0, 100000, 65536),)) if IDMAP in config else None
    p = plan.build(c, c.config, idmap=idmap, cgroup=_Cgroup(), monitor_cgroup=None,
                   app_cmd=None, share_pids={}, logs=str(tmp_path / "log"), attach_context={})
    return next(op for op in p.mounts if isinstance(op, CgroupFs))


@pytest.mark.parametrize("config", ["", IDMAP])
def test_own_cgroup_namespace_mounts_without_a_warning(tmp_path, config):
    op = _cgroup_op(tmp_path, config)
    assert op.warn == ""           # a failure to mount them fails the start
    assert op.describe() == "mount cgroup2 on /sys/fs/cgroup"


def test_unprivileged_without_a_cgroup_namespace_says_why(tmp_path):
    op = _cgroup_op(tmp_path, IDMAP + '[namespaces]\ncreate = ["mnt", "pid", "uts", "ipc"]\n')
    assert "no cgroup namespace of its own" in op.warn
    assert "namespaces.create" in op.warn


def test_v1_mounts_each_hierarchy_under_a_read_only_tmpfs():
    from pathlib import Path

    from lxpy.cgroups import parse_mountinfo
    text = ("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
            "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
            "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    lay = parse_mountinfo(text, {"memory"})
    steps = container_mounts_v1(lay)
    assert [(s.target, s.fstype) for s in steps if s.fstype != "symlink"] == [
        ("/sys/fs/cgroup", "tmpfs"), ("/sys/fs/cgroup/memory", "cgroup"),
        ("/sys/fs/cgroup/systemd", "cgroup"), ("/sys/fs/cgroup/unified", "cgroup2"),
        ("/sys/fs/cgroup", "remount")]
    assert [s.data for s in steps if s.fstype == "cgroup"] == ["memory", "name=systemd"]
    assert lay.root == Path("/sys/fs/cgroup")

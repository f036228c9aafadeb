"""Cgroup logic that needs no kernel: layout parsing, limit plans, device rules, the BPF
program's shape, the container's mount plan. (Enforcement is tested for real in
tests/integration/test_cgroups.py, on this host and in the cgroup2 VM.)"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lxpy.cgroups import Layout, parse_mountinfo
from lxpy.cgroups.base import Hierarchy, check_file_name, keyed
from lxpy.cgroups.devices import rules
from lxpy.cgroups.v1 import container_mounts_v1, plan_v1
from lxpy.cgroups.v2 import container_mounts_v2, delegated, plan_v2
from lxpy.config import validate
from lxpy.errors import CgroupError

SUBSYS = {"cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls",
          "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"}

HYBRID = """\
25 1 0:22 / /sys rw - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
35 30 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
"""
V2 = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"


def test_parse_hybrid():
    lay = parse_mountinfo(HYBRID, SUBSYS, lambda m: ["hugetlb"])
    assert lay.kind == "hybrid"
    ctl = lay.controllers()
    assert ctl["cpu"].mount == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert ctl["cpu"].options == "cpu,cpuacct"
    assert ctl["name=systemd"].options == "name=systemd"
    assert ctl["hugetlb"].version == 2
    assert lay.unified.mount == Path("/sys/fs/cgroup/unified")


def test_parse_v2_and_v1_and_none():
    lay = parse_mountinfo(V2, SUBSYS, lambda m: ["cpu", "memory", "pids"])
    assert lay.kind == "v2" and lay.root == Path("/sys/fs/cgroup")
    assert lay.controllers()["memory"].version == 2
    v1only = "\n".join(x for x in HYBRID.splitlines() if "cgroup2" not in x)
    assert parse_mountinfo(v1only, SUBSYS).kind == "v1"
    assert parse_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n", SUBSYS).kind == "none"


def _values(**kw):
    cfg = validate({"limits": kw}, "t")
    return {k: cfg.get(k) for k in cfg.values if k.startswith("limits.") and "raw" not in k}


def test_plan_v2():
    plan = {w.file: w.value for w in plan_v2(_values(memory="1G", cpus=1.5, pids=500,
                                                     cpu_weight=200, cpuset="0-1",
                                                     memory_swap="1536M"))}
    assert plan == {"memory.max": str(1 << 30), "cpu.max": "150000 100000", "pids.max": "500",
                    "cpu.weight": "200", "cpuset.cpus": "0-1",
                    "memory.swap.max": str(512 << 20)}
    # live: None removes the limit
    live = plan_v2({"limits.memory": None}, live=True)
    assert [(w.file, w.value) for w in live] == [("memory.max", "max")]
    # applying a config: unset keys are left alone
    assert plan_v2(_values()) == []
    with pytest.raises(CgroupError, match="below limits.memory"):
        plan_v2({"limits.memory": 1 << 30, "limits.memory_swap": 1 << 29})


def test_plan_v1_and_hybrid():
    vers = {"memory": 1, "cpu": 1, "pids": 1, "hugetlb": 2, "blkio": 1, "cpuset": 1}
    plan = plan_v1(_values(memory="64M", memory_swap="128M", cpus=0.5, cpu_weight=50,
                           io_weight=100, hugepages={"2MB": "64M"}), vers)
    got = {w.file: w.value for w in plan}
    assert got == {"memory.limit_in_bytes": str(64 << 20),
                   "memory.memsw.limit_in_bytes": str(128 << 20),
                   "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000",
                   "cpu.shares": "512", "blkio.weight": "500",
                   "hugetlb.2MB.max": str(64 << 20)}        # hugetlb on the v2 side
    with pytest.raises(CgroupError, match="no swap accounting"):
        plan_v1(_values(memory="64M", memory_swap="128M"), vers, has_memsw=False)
    live = {w.file: w.value for w in plan_v1({"limits.memory": None, "limits.pids": None},
                                             vers, live=True)}
    assert live == {"memory.limit_in_bytes": "-1", "pids.max": "max"}


def test_device_rules():
    r = [x.v1() for x in rules(["fuse", "loop"])]
    for want in ("c 1:3 rwm", "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:229 rwm",
                 "b 7:* rwm", "c 10:237 rwm"):
        assert want in r
    assert "c 10:200 rwm" not in r          # tun only when asked


def test_bpf_program_shape():
    from lxpy.linux import bpf
    prog = bpf.device_program([("c", 1, 3, "rwm"), ("c", 136, None, "rw"), ("b", None, None, "m")])
    insns = [struct.unpack("<BBhi", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert insns[-1][0] == bpf.JMP_EXIT and insns[-2] == (bpf.ALU64_MOV_K, 0, 0, 0)
    # every jump lands inside the program, on an instruction
    for i, (code, _, off, _) in enumerate(insns):
        if code == bpf.JMP_JNE_K:
            assert 0 < i + 1 + off < len(insns)
    # a rule that matches everything ends the program (no unreachable code)
    allow_all = bpf.device_program([("a", None, None, "rwm"), ("c", 1, 3, "rwm")])
    assert len(allow_all) == (6 + 2) * 8


def test_container_mounts_plans():
    v2 = container_mounts_v2()
    assert [(m.target, m.fstype) for m in v2] == [("/sys/fs/cgroup", "cgroup2")]
    lay = Layout("hybrid", (
        Hierarchy(Path("/sys/fs/cgroup/cpu,cpuacct"), 1, ("cpu", "cpuacct"), "cpu,cpuacct"),
        Hierarchy(Path("/sys/fs/cgroup/systemd"), 1, ("name=systemd",), "name=systemd"),
        Hierarchy(Path("/sys/fs/cgroup/unified"), 2, ("hugetlb",), ""),
    ), Path("/nonexistent"))
    plan = container_mounts_v1(lay)
    assert plan[0].fstype == "tmpfs" and plan[0].target == "/sys/fs/cgroup"
    assert plan[-1].fstype == "remount" and plan[-1].target == "/sys/fs/cgroup"
    from lxpy.linux.mount import MS_RDONLY
    assert plan[-1].flags & MS_RDONLY
    mids = [(m.target, m.fstype, m.data) for m in plan[1:-1]]
    assert ("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "cpu,cpuacct") in mids
    assert ("/sys/fs/cgroup/systemd", "cgroup", "name=systemd") in mids
    assert ("/sys/fs/cgroup/unified", "cgroup2", "") in mids


def test_file_names_and_keyed():
    assert check_file_name("memory.max") == "memory.max"
    for bad in ("", "../x.y", "a/b.c", "..", ".hidden", "memory"):
        with pytest.raises(CgroupError):
            check_file_name(bad)
    assert keyed("oom 1\noom_kill 3\nbad\n") == {"oom": 1, "oom_kill": 3}


def test_not_delegated_outside_units(tmp_path):
    assert not delegated("", tmp_path)
    assert not delegated("user.slice/session-1.scope", tmp_path)   # no xattr


def test_delegated_unit_detected(tmp_path):
    unit = tmp_path / "system.slice" / "lxpy-web1.service"
    unit.mkdir(parents=True)
    try:
        import os
        os.setxattr(unit, "trusted.delegate", b"1")
    except OSError:
        pytest.skip("cannot set trusted.* xattrs here (needs root)")
    assert delegated("system.slice/lxpy-web1.service", tmp_path)
    assert not delegated("system.slice", tmp_path)

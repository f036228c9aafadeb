"""An unprivileged container's root owns its cgroup subtree (delegation, as systemd's
Delegate= gives a unit): it makes child cgroups, moves its processes and, on cgroup v2,
enables controllers for them; it cannot raise its own limits or reach the host's cgroups.
Runs on this host (v1/hybrid: the named systemd hierarchy and the v1 controllers) and in
the cgroup2 VM (tests/vm/test_cgroup2_vm.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lxpy import cgroups

from .test_cgroups_container import attach
from .test_runtime import assert_nothing_left, make_busybox, state_file

pytestmark = pytest.mark.root

ROOT = 100000       # the container's root on the host
IDMAP = '[idmap]\nuid = [[0, 100000, 65536]]\ngid = [[0, 100000, 65536]]\n[limits]\n' \
        'memory = "256M"\npids = 100\n'

# Inside, as the container's root: each line "step rc" (0: it worked).
V2 = """cd /sys/fs/cgroup
r() { "$@" 2>/dev/null; echo "$STEP $?"; }
STEP=mkdir-leaf r mkdir leaf
for p in $(cat cgroup.procs); do echo $p > leaf/cgroup.procs 2>/dev/null; done
STEP=root-empty r test -z "$(cat cgroup.procs)"
STEP=enable r sh -c 'echo "+memory +pids" > cgroup.subtree_control'
STEP=mkdir-child r mkdir child
STEP=child-has-memory r grep -qw memory child/cgroup.controllers
STEP=child-limit r sh -c 'echo 64M > child/memory.max'
STEP=join-child r sh -c 'echo $$ > child/cgroup.procs && grep -qx 0::/child /proc/self/cgroup'
STEP=raise-own-limit r sh -c 'echo max > memory.max'
STEP=raise-own-pids r sh -c 'echo max > pids.max'
"""

V1 = """cd /sys/fs/cgroup
r() { "$@" 2>/dev/null; echo "$STEP $?"; }
STEP=mkdir-leaf r mkdir systemd/leaf
STEP=join-leaf r sh -c 'echo $$ > systemd/leaf/cgroup.procs &&
  grep -qx "[0-9]*:name=systemd:/leaf" /proc/self/cgroup'
STEP=mkdir-child r mkdir memory/child
STEP=child-limit r sh -c 'echo 67108864 > memory/child/memory.limit_in_bytes'
STEP=join-child r sh -c 'echo $$ > memory/child/cgroup.procs &&
  grep -qx "[0-9]*:memory:/child" /proc/self/cgroup'
STEP=raise-own-limit r sh -c 'echo -1 > memory/memory.limit_in_bytes'
STEP=raise-own-pids r sh -c 'echo max > pids/pids.max'
STEP=release-agent r sh -c 'echo /bin/sh > memory/release_agent'
if [ -s unified/cgroup.controllers ]; then      # hybrid: cgroup2 with a controller (hugetlb)
  mkdir unified/leaf
  for p in $(cat unified/cgroup.procs); do echo $p > unified/leaf/cgroup.procs 2>/dev/null; done
  STEP=enable r sh -c "echo +$(cut -d' ' -f1 unified/cgroup.controllers) \
    > unified/cgroup.subtree_control"
fi
"""


@pytest.fixture
def unpriv(lxpy, lxpath, unique):
    make_busybox(lxpath, unique, extra=IDMAP)
    lxpy("start", "-n", unique, timeout=180)
    return unique       # (the lxpath fixture stops what a failed test left running)


def steps(out: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in out.splitlines()
                                   if len(line.split()) == 2 and line.split()[1].isdigit())}


def test_unprivileged_root_owns_its_cgroup_subtree(lxpy, lxpath, unique, unpriv):
    drv = cgroups.driver()
    v2 = drv.version == 2
    r = attach(lxpy, unpriv, V2 if v2 else V1)
    got = steps(r.stdout)
    works = (["mkdir-leaf", "root-empty", "enable", "mkdir-child", "child-has-memory",
              "child-limit", "join-child"] if v2 else
             ["mkdir-leaf", "join-leaf", "mkdir-child", "child-limit", "join-child"])
    refused = ["raise-own-limit", "raise-own-pids"] + ([] if v2 else ["release-agent"])
    assert {k: got.get(k) for k in works} == dict.fromkeys(works, 0), r.stdout + r.stderr
    assert all(got.get(k, 0) != 0 for k in refused), r.stdout + r.stderr
    if "enable" in got:
        assert got["enable"] == 0, r.stdout
        # its cgroup has controllers enabled for its subtree: no process may join it, so
        # lxpy-attach enters init's cgroup (the leaf the container moved it to)
        again = attach(lxpy, unpriv, "cat /proc/self/cgroup").stdout.splitlines()
        assert "0::/leaf" in again, again

    # on the host: its cgroup is its root's (systemd's Delegate= files), its limits not
    parent = drv.parent_path(None)
    for hier in drv.hierarchies():
        d = hier.path(f"{parent}/{unpriv}")
        mine = [d] + [d / f for f in cgroups.DELEGATED[hier.version] if (d / f).exists()]
        assert {p.name: p.stat().st_uid for p in mine} == dict.fromkeys(
            (p.name for p in mine), ROOT)
        theirs = [d / f for f in ("memory.max", "memory.limit_in_bytes", "pids.max",
                                  "notify_on_release") if (d / f).exists()]
        assert all(p.stat().st_uid == 0 for p in theirs), theirs
    # the children it made are in its cgroup, owned by its root's host uid
    h = drv.hierarchy_for("memory")
    child = h.path(f"{parent}/{unpriv}/child")
    assert child.is_dir() and child.stat().st_uid == ROOT
    if v2:
        enabled = (h.path(f"{parent}/{unpriv}") / "cgroup.subtree_control").read_text()
        assert "memory" in enabled.split()
        assert (child / "memory.max").read_text().strip() == str(64 << 20)
    else:
        assert (child / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert drv.hierarchy_for("name=systemd").path(f"{parent}/{unpriv}/leaf").is_dir()
    # its own limits stayed as the host set them
    assert drv.open(f"{parent}/{unpriv}").get_limit("limits.memory") == str(256 << 20)
    # every process in its cgroup runs as a host id of its map
    pids = drv.open(f"{parent}/{unpriv}").pids()
    assert pids and all(ROOT <= os.stat(f"/proc/{p}").st_uid < ROOT + 65536 for p in pids
                        if Path(f"/proc/{p}").exists())
    # a stop takes the subtree it made with it
    lxpy("stop", "-n", unpriv, "-k", timeout=120)
    assert_nothing_left(lxpath, unpriv)


def test_unprivileged_init_sees_its_cgroup_as_the_root(lxpy, lxpath, unpriv):
    pid = state_file(lxpath, unpriv)["pid"]
    assert os.stat(f"/proc/{pid}").st_uid == ROOT
    r = lxpy("attach", "-n", unpriv, "--", "/bin/sh", "-c",
             "cat /proc/1/cgroup; grep ' /sys/fs/cgroup' /proc/self/mountinfo")
    lines = r.stdout.splitlines()
    own = [line for line in lines if " " not in line]             # /proc/1/cgroup
    assert own and all(line.endswith(":/") for line in own), r.stdout
    mounts = [line for line in lines if " /sys/fs/cgroup" in line]
    fstypes = {line.split(" - ")[1].split()[0] for line in mounts}
    want = {"cgroup2"} if cgroups.driver().version == 2 else {"cgroup", "tmpfs"}
    assert want <= fstypes, r.stdout


def test_unprivileged_without_a_cgroup_namespace_starts_without_cgroups(lxpy, lxpath, unique):
    """The kernel refuses it the cgroup filesystems: it starts with none (nothing half-made
    at /sys/fs/cgroup), and its log says why and what to change."""
    make_busybox(lxpath, unique, extra=IDMAP + '[namespaces]\n'
                 'create = ["mnt", "pid", "uts", "ipc", "net"]\n')
    lxpy("start", "-n", unique, timeout=180)
    r = attach(lxpy, unique, "grep -c ' /sys/fs/cgroup' /proc/self/mountinfo; "
               "ls -A /sys/fs/cgroup | wc -l")
    assert r.stdout.split() == ["0", "0"], r.stdout + r.stderr
    logs = "".join(p.read_text(errors="replace") for p in (lxpath / unique / "log").iterdir())
    assert "no cgroup namespace of its own" in logs and "namespaces.create" in logs
    lxpy("stop", "-n", unique, "-k", timeout=120)
    assert_nothing_left(lxpath, unique)

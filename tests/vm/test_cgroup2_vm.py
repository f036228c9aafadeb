"""The cgroup integration tests, run inside a qemu guest whose kernel has pure cgroup v2
(the machines here are hybrid with no v2 controllers). One boot runs the whole batch."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rig  # noqa: E402

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.root]

# tests that must pass (not skip) in the guest
MUST_PASS = ["test_layout_and_driver", "test_oom_kill_inside_cgroup_only",
             "test_fork_bomb_stops_at_pids", "test_cpu_quota", "test_cpuset",
             "test_live_memory_change", "test_freeze_thaw", "test_kill_and_destroy",
             "test_device_allowlist", "test_container_cgroup_view", "test_bpf_device_program"]
# ... and, once lxpy-start works, a busybox container with limits started and stopped
CONTAINER_MUST_PASS = ["test_container_limits_live_change_freeze",
                       "test_container_fork_bomb_and_view",
                       "test_init_and_attached_processes_in_the_cgroup_everywhere",
                       "test_lxpy_cgroup_cpus_and_procs", "test_config_set_live"]
GUEST_TESTS = ["tests/integration/test_cgroups.py"]
GUEST_TIMEOUT = 900     # seconds for the whole batch in the guest (TCG on a busy host)
# An unprivileged container's root owns its cgroup: writes its cgroup.subtree_control, makes
# child cgroups. Run apart, with pytest's temp dir on the guest's ext4 disk: its rootfs is
# idmapped, which the guest's /tmp (a tmpfs) cannot be before Linux 6.3 (the guest has 6.1).
DISK_TESTS = ["tests/integration/test_cgroup_delegation.py"]
DISK_MUST_PASS = ["test_unprivileged_root_owns_its_cgroup_subtree",
                  "test_unprivileged_init_sees_its_cgroup_as_the_root"]
DISK_TIMEOUT = 300


def rig_venv() -> Path:
    """The venv the guest runs; skips when this host cannot run the rig."""
    if os.geteuid() != 0:
        pytest.skip("the VM rig needs root")
    missing = rig.missing_tools()
    if missing:
        pytest.skip(f"the VM rig needs: {', '.join(missing)}")
    return rig.ensure_venv(rig.REPO)


@pytest.fixture(scope="module")
def guest_run():
    venv = rig_venv()
    extra = [t for t in ("tests/integration/test_cgroups_container.py",)
             if (rig.REPO / t).exists()]
    run = f"{venv}/bin/python -m pytest -p no:cacheprovider -v -rs -o faulthandler_timeout=240"
    cmd = (f"export PYTHONDONTWRITEBYTECODE=1 LXPY_EXPECT_CGROUP=v2 LXPY_IN_VM=1\n"
           f"timeout {GUEST_TIMEOUT} {run} "
           f"--junitxml=/results/junit.xml {' '.join(GUEST_TESTS + extra)}; rc=$?\n"
           f"timeout {DISK_TIMEOUT} {run} --basetemp=/var/tmp/lxpy-pytest "
           f"--junitxml=/results/junit-disk.xml {' '.join(DISK_TESTS)} || rc=1\n"
           "exit $rc")
    return rig.run(cmd, repo=rig.REPO, timeout=GUEST_TIMEOUT + DISK_TIMEOUT + 120)


def _cases(xml: str) -> dict[str, str]:
    out = {}
    for tc in ET.fromstring(xml).iter("testcase"):
        status = "passed"
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                status = child.tag
        out[tc.get("name", "")] = status
    return out


def test_cgroup_suite_in_cgroup2_vm(guest_run):
    r = guest_run
    detail = f"guest output:\n{r.output[-6000:]}\nconsole:\n{r.console[-3000:]}"
    assert "junit.xml" in r.files, f"the guest did not run pytest (rc={r.rc})\n{detail}"
    assert "junit-disk.xml" in r.files, f"the guest did not run {DISK_TESTS}\n{detail}"
    cases = _cases(r.files["junit.xml"]) | _cases(r.files["junit-disk.xml"])
    bad = {k: v for k, v in cases.items() if v in ("failure", "error")}
    assert not bad, f"failed in the cgroup2 guest: {bad}\n{detail}"
    must = MUST_PASS + DISK_MUST_PASS + (
        CONTAINER_MUST_PASS if any(t in cases for t in CONTAINER_MUST_PASS) else [])
    not_run = [t for t in must if cases.get(t) != "passed"]
    assert not not_run, f"not passed in the guest: {not_run} ({cases})\n{detail}"
    assert r.rc == 0, detail

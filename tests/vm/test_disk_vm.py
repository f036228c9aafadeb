"""limits.disk by ext4 and xfs project quotas on dir and overlay containers, in a qemu guest running
Debian's kernel (the machines here have no quota format for ext4 and no xfs quotas). One
boot runs both filesystems' checks (tests/integration/test_disk.py -k project_quota)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rig  # noqa: E402
from test_cgroup2_vm import _cases, rig_venv  # noqa: E402

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.root]

MUST_PASS = [f"test_project_quota_container[{fs}-{b}]" for fs in ("ext4", "xfs")
             for b in ("dir", "overlay")]
GUEST_TIMEOUT = 900


def test_project_quotas_in_vm():
    venv = rig_venv()
    cmd = (f"export PYTHONDONTWRITEBYTECODE=1 LXPY_IN_VM=1\n"
           f"modprobe -a loop xfs quota_v2 overlay\n"
           f"timeout {GUEST_TIMEOUT} {venv}/bin/python -m pytest -p no:cacheprovider -v -rs "
           f"--junitxml=/results/junit.xml -k project_quota tests/integration/test_disk.py")
    r = rig.run(cmd, repo=rig.REPO, timeout=GUEST_TIMEOUT + 120)
    detail = f"guest output:\n{r.output[-6000:]}\nconsole:\n{r.console[-3000:]}"
    assert "junit.xml" in r.files, f"the guest did not run pytest (rc={r.rc})\n{detail}"
    cases = _cases(r.files["junit.xml"])
    not_passed = {t: cases.get(t) for t in MUST_PASS if cases.get(t) != "passed"}
    assert not not_passed, f"not passed in the guest: {not_passed}\n{detail}"
    assert r.rc == 0, detail

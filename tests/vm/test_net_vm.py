"""ipvlan and vlan interfaces, which this machine's kernel lacks, in the Debian guest of
the VM rig: the modules (with veth) are handed in over the shared checkout and loaded,
then the integration tests that need the link kinds run there. One boot."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rig  # noqa: E402
from test_cgroup2_vm import _cases  # noqa: E402

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="the VM rig needs root")]

MUST_PASS = ["test_ipvlan_and_vlan_carry_traffic[ipvlan]",
             "test_ipvlan_and_vlan_carry_traffic[vlan]"]
GUEST_TIMEOUT = 600


def test_ipvlan_and_vlan_in_a_guest():
    if rig.missing_tools():
        pytest.skip(f"the VM rig needs: {', '.join(rig.missing_tools())}")
    mods = Path(tempfile.mkdtemp(prefix=".vm-modules-", dir=rig.REPO))
    try:
        names = []
        for ko in rig._modules_in_order(["veth", "bridge", "ipvlan", "8021q"]):
            shutil.copy2(ko, mods / ko.name)
            names.append(ko.name)
        venv = rig.ensure_venv(rig.REPO)
        cmd = (f"for m in {' '.join(names)}; do insmod {mods}/$m 2>/dev/null; done\n"
               "export PYTHONDONTWRITEBYTECODE=1 LXPY_IN_VM=1\n"
               f"timeout {GUEST_TIMEOUT} {venv}/bin/python -m pytest -p no:cacheprovider -v "
               "-rs --junitxml=/results/junit.xml tests/integration/test_net_hosting.py "
               "-k 'vlan'")
        r = rig.run(cmd, repo=rig.REPO, timeout=GUEST_TIMEOUT + 120)
    finally:
        shutil.rmtree(mods, ignore_errors=True)
    detail = f"guest output:\n{r.output[-6000:]}\nconsole:\n{r.console[-3000:]}"
    assert "junit.xml" in r.files, f"the guest did not run pytest (rc={r.rc})\n{detail}"
    cases = _cases(r.files["junit.xml"])
    not_run = [t for t in MUST_PASS if cases.get(t) != "passed"]
    assert not not_run, f"not passed in the guest: {not_run} ({cases})\n{detail}"

"""A Debian bookworm container boots systemd as PID 1, shuts down through it, and boots again.

The rootfs comes from the debian template (the session's `debian_cache`: a debootstrap of a
few minutes, kept across runs with LXPY_TEST_CACHE). For quick runs during development,
LXPY_TEST_DEBIAN_ROOTFS=/path/to/a/debootstrapped/bookworm uses that tree as the read-only
lower of an overlay container instead (it is never written to)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from .test_runtime import assert_nothing_left, state_file

pytestmark = [pytest.mark.slow, pytest.mark.debian, pytest.mark.root]

# Units that cannot run in any container on this host, and may leave systemd "degraded":
# networking.service fails to raise interfaces that a container with an empty network lacks.
MAY_FAIL = {"networking.service", "ifupdown-wait-online.service",
            "systemd-networkd-wait-online.service"}


@pytest.fixture
def debian(request, lxpy, lxpath, unique, tmp_path) -> str:
    lower = os.environ.get("LXPY_TEST_DEBIAN_ROOTFS")
    if lower:
        if not Path(lower, "sbin/init").exists() and not Path(lower, "lib/systemd/systemd") \
                .exists():
            pytest.skip(f"LXPY_TEST_DEBIAN_ROOTFS={lower} has no systemd")
        d = lxpath / unique
        for sub in ("rootfs", "delta", "work"):
            (d / sub).mkdir(parents=True)
        (d / "delta/etc").mkdir()
        (d / "delta/etc/hostname").write_text(f"{unique}\n")
        (d / "config.toml").write_text(
            f'hostname = "{unique}"\n[rootfs]\nbackend = "overlay"\nlower = "{lower}"\n'
            '[init]\ncmd = ["/sbin/init"]\nstop_timeout = 60\n[[net]]\ntype = "empty"\n')
    else:
        request.getfixturevalue("debian_cache")
        empty = tmp_path / "empty-net.toml"
        empty.write_text('[[net]]\ntype = "empty"\n')
        lxpy("create", "-n", unique, "-t", "debian", "-B", "overlay", "-f", str(empty),
             timeout=900)
    yield unique
    lxpy("stop", "-n", unique, "-k", check=False)


def systemctl(lxpath: Path, name: str, *args: str, timeout: float = 60) -> str:
    """systemctl inside the container (via nsenter, independent of lxpy-attach). Call it
    once the guest is READY (lxpy-wait -s READY): before, systemd's bus may not be up."""
    pid = state_file(lxpath, name)["pid"]
    r = subprocess.run(["nsenter", "-t", pid, "-a", "systemctl", *args],
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout.strip() or r.stderr.strip()


def wait_ready(lxpy, name: str, waited: bool = False) -> None:
    """The guest's systemd sent READY=1 on its notify socket (an event, no retries)."""
    if not waited:
        lxpy("wait", "-n", name, "-s", "READY", "-t", "120", timeout=150)
    info = lxpy("info", "-n", name, "--no-size").stdout
    assert re.search(r"^Ready:\s+yes", info, re.M), info


def boot_and_check(lxpy, lxpath: Path, name: str, start_waits: bool = False) -> None:
    if start_waits:         # lxpy-start -w: returns once the guest reported READY=1
        lxpy("start", "-w", "-t", "120", name, timeout=150)
    else:
        lxpy("start", "-n", name)
    wait_ready(lxpy, name, waited=start_waits)
    state = systemctl(lxpath, name, "is-system-running")
    if state == "degraded":
        failed = set(systemctl(lxpath, name, "list-units", "--failed", "--plain",
                               "--no-legend", "--no-pager").split()[::5])
        assert failed <= MAY_FAIL, f"units failed: {failed - MAY_FAIL}"
    else:
        assert state == "running", state
    pid = state_file(lxpath, name)["pid"]
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "systemd"
    r = subprocess.run(["nsenter", "-t", pid, "-a", "systemd-cgls", "--no-pager"],
                       capture_output=True, text=True, timeout=30)
    assert "init.scope" in r.stdout and "systemd-journald.service" in r.stdout


def test_debian_boots_systemd_and_shuts_down_cleanly(lxpy, lxpath, debian):
    boot_and_check(lxpy, lxpath, debian)
    lxpy("stop", "-n", debian, "-t", "60")
    # systemd shut down by itself (the journal's last words), nothing was killed
    log = (lxpath / debian / "log" / "console.log").read_text(errors="replace")
    assert "Reached target" in log and ("Halting system" in log or "Powering off" in log)
    assert_nothing_left(lxpath, debian)
    boot_and_check(lxpy, lxpath, debian, start_waits=True)
    # reboot from inside: the same monitor boots a new init; poweroff from inside stops it
    pid = state_file(lxpath, debian)["pid"]
    systemctl(lxpath, debian, "reboot")
    deadline = time.monotonic() + 60
    while state_file(lxpath, debian).get("pid") in (pid, "", None) or \
            state_file(lxpath, debian).get("state") != "RUNNING":
        assert time.monotonic() < deadline, "no new init after systemctl reboot"
        lxpy("wait", "-n", debian, "-s", "RUNNING", "-t", "1", check=False)
    wait_ready(lxpy, debian)          # the new init's READY=1 (the old one's was cleared)
    assert systemctl(lxpath, debian, "is-system-running") in ("running", "degraded")
    systemctl(lxpath, debian, "poweroff")
    lxpy("wait", "-n", debian, "-s", "STOPPED", "-t", "60")
    assert_nothing_left(lxpath, debian)


def test_unprivileged_debian_boots(request, lxpy, lxpath, unique, tmp_path):
    """The same Debian, unprivileged: init in a user namespace (host uid 100000), the dir
    backend's tree idmapped, its cgroup delegated to the container's root."""
    idmap = ('[idmap]\nuid = [[0, 100000, 65536]]\ngid = [[0, 100000, 65536]]\n'
             '[[net]]\ntype = "empty"\n')
    lower = os.environ.get("LXPY_TEST_DEBIAN_ROOTFS")
    if lower:
        d = lxpath / unique
        d.mkdir()
        subprocess.run(["cp", "-a", lower, str(d / "rootfs")], check=True)
        (d / "rootfs/etc/hostname").write_text(f"{unique}\n")
        (d / "config.toml").write_text(f'hostname = "{unique}"\n[init]\ncmd = ["/sbin/init"]\n'
                                       + idmap)
    else:
        request.getfixturevalue("debian_cache")
        extra = tmp_path / "unpriv.toml"
        extra.write_text(idmap)
        lxpy("create", "-n", unique, "-t", "debian", "-B", "dir", "-f", str(extra),
             timeout=900)
    try:
        boot_and_check(lxpy, lxpath, unique)
        pid = state_file(lxpath, unique)["pid"]
        assert os.stat(f"/proc/{pid}").st_uid == 100000
        lxpy("stop", "-n", unique, "-t", "60")
    finally:
        lxpy("stop", "-n", unique, "-k", check=False)
    assert_nothing_left(lxpath, unique)

"""Unprivileged Debian and busybox, as an admin makes them from the shipped templates (the
dir backend, an explicit id map): Debian boots `running` with nothing failed (journald,
logind, dbus, DHCP on the managed bridge), runs as host ids of its map, installs a
package from Debian's mirror, reboots from inside, stops cleanly; busybox too."""

from __future__ import annotations

import os
import re

import pytest

from lxpy import cgroups

from .test_runtime import assert_nothing_left, state_file, wait_for_file_text
from .test_runtime_debian import wait_ready

pytestmark = [pytest.mark.root, pytest.mark.slow]

ROOT = 100000
IDMAP = '[idmap]\nuid = [[0, 100000, 65536]]\ngid = [[0, 100000, 65536]]\n'


def in_ct(lxpy, name: str, *cmd: str, timeout: float = 120) -> str:
    return lxpy("attach", "-n", name, "--", *cmd, timeout=timeout).stdout.strip()


def host_uids(name: str) -> set[int]:
    drv = cgroups.driver()
    out = set()
    for pid in drv.open(f"{drv.parent_path(None)}/{name}").pids():
        try:
            out.add(os.stat(f"/proc/{pid}").st_uid)
        except FileNotFoundError:
            pass
    return out


@pytest.fixture
def unpriv_toml(tmp_path):
    p = tmp_path / "unpriv.toml"
    p.write_text(IDMAP)
    return str(p)


def boots_running(lxpy, name: str) -> None:
    wait_ready(lxpy, name)
    assert in_ct(lxpy, name, "systemctl", "is-system-running") == "running", \
        in_ct(lxpy, name, "systemctl", "--failed", "--no-pager")
    assert in_ct(lxpy, name, "systemctl", "list-units", "--failed", "--plain",
                 "--no-legend", "--no-pager") == ""


@pytest.mark.debian
def test_unprivileged_debian_runs_installs_reboots_stops(request, lxpy, lxpath, unique,
                                                         unpriv_toml):
    request.getfixturevalue("debian_cache")
    lxpy("create", "-n", unique, "-t", "debian", "-B", "dir", "-f", unpriv_toml, timeout=900)
    lxpy("start", "-w", "-t", "120", unique, timeout=150)
    boots_running(lxpy, unique)
    active = in_ct(lxpy, unique, "systemctl", "is-active", "systemd-journald",
                   "systemd-logind", "dbus", "networking")
    assert active.split() == ["active"] * 4, active
    assert in_ct(lxpy, unique, "journalctl", "-b", "-q", "-n", "1", "-u", "systemd-logind")
    # its processes run as host ids of its map (root inside: 100000 outside)
    uids = host_uids(unique)
    assert ROOT in uids and all(ROOT <= u < ROOT + 65536 for u in uids), uids
    assert os.stat(f"/proc/{state_file(lxpath, unique)['pid']}").st_uid == ROOT
    # DHCP on the managed bridge: an address of the bridge's subnet
    from lxpy.paths import system_config
    subnet = system_config().subnet.rsplit(".", 1)[0] + "."
    addr = in_ct(lxpy, unique, "ip", "-4", "-o", "addr", "show", "eth0")
    assert f"inet {subnet}" in addr, addr
    # a package from Debian's mirror; on disk its files are owned as inside (unshifted)
    out = in_ct(lxpy, unique, "sh", "-c", "apt-get update -q >/dev/null && "
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello >/dev/null && "
                "hello", timeout=600)
    assert out == "Hello, world!"
    assert os.stat(lxpath / unique / "rootfs/usr/bin/hello").st_uid == 0
    # reboot from inside: a new init, running again
    pid = state_file(lxpath, unique)["pid"]
    lxpy("attach", "-n", unique, "--", "systemctl", "reboot", check=False)
    log = lxpath / unique / "log" / "lxpy.log"
    wait_for_file_text(log, "rebooted: init pid", timeout=60)
    assert re.search(rf"init \(pid {pid}\) asked for a reboot", log.read_text())
    assert state_file(lxpath, unique)["pid"] != pid
    boots_running(lxpy, unique)
    # lxpy-stop: systemd shuts down by itself, nothing is killed, nothing left
    lxpy("stop", "-n", unique, "-t", "60", timeout=90)
    console = (lxpath / unique / "log" / "console.log").read_text(errors="replace")
    assert "Powering off" in console or "Halting system" in console
    lines = log.read_text().splitlines()
    assert "powered off" in lines[-2] and "killing" not in lines[-3], lines[-3:]
    assert_nothing_left(lxpath, unique)
    # and poweroff from inside stops it too
    lxpy("start", "-w", "-t", "120", unique, timeout=150)
    boots_running(lxpy, unique)
    lxpy("attach", "-n", unique, "--", "systemctl", "poweroff", check=False)
    lxpy("wait", "-n", unique, "-s", "STOPPED", "-t", "60", timeout=90)
    assert "powered off" in log.read_text()
    assert_nothing_left(lxpath, unique)


def test_unprivileged_busybox_from_the_template(lxpy, lxpath, unique, unpriv_toml):
    lxpy("create", "-n", unique, "-t", "busybox", "-B", "dir", "-f", unpriv_toml,
         timeout=300)
    lxpy("start", "-w", unique, timeout=120)
    assert in_ct(lxpy, unique, "id", "-u") == "0"
    uids = host_uids(unique)
    assert uids and all(ROOT <= u < ROOT + 65536 for u in uids), uids
    # its cgroups are there, and its own
    assert in_ct(lxpy, unique, "sh", "-c", "mkdir /sys/fs/cgroup/" + (
        "c" if cgroups.driver().version == 2 else "systemd/c") + " && echo ok") == "ok"
    lxpy("stop", "-n", unique, "-t", "30", timeout=60)
    assert_nothing_left(lxpath, unique)

"""The host's kernel limits for many containers: the sysctl file setup-host and the package
install, lxpy-checkconfig's warning for the containers defined, and lxpy-info's reason for a
degraded guest that hit an inotify limit."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from lxpy import hostlimits
from tests.conftest import BIN, REPO

from .test_runtime import assert_nothing_left, state_file
from .test_runtime_debian import wait_ready

SHIPPED = REPO / "packaging/sysctl.d/60-lxpy.conf"


def sysctl_file(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = (x.strip() for x in line.split("=", 1))
            out[key] = int(value)
    return out


def checkconfig(lxpath: Path) -> dict[str, dict]:
    r = subprocess.run([str(BIN / "lxpy-checkconfig"), "-P", str(lxpath), "--format", "json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr
    return {c["name"]: c for c in json.loads(r.stdout) if c["section"] == "Host limits"}


def test_the_sysctl_file_is_the_table_and_this_kernel_has_every_key():
    assert sysctl_file(SHIPPED) == {lim.key: lim.value for lim in hostlimits.LIMITS}
    for key in sysctl_file(SHIPPED):
        assert hostlimits.read(key) is not None, f"{key}: not in this kernel"


def test_setup_host_installs_the_limits_and_raises_them():
    installed = Path(hostlimits.SYSCTL_FILE)
    had = installed.read_bytes() if installed.exists() else None
    try:
        r = subprocess.run(["bash", str(REPO / "scripts/setup-host"), "--limits"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stderr == "", r
        assert installed.read_bytes() == SHIPPED.read_bytes()
        low = {k: (hostlimits.read(k), v) for k, v in sysctl_file(SHIPPED).items()
               if hostlimits.read(k) < v}
        assert not low, f"still below lxpy's values: {low}"
    finally:        # the kernel's values stay raised (never lowered); the file as it was
        if had is None:
            installed.unlink(missing_ok=True)
        else:
            installed.write_bytes(had)


def test_checkconfig_warns_when_a_limit_is_too_low_for_the_containers_defined(tmp_path):
    lxpath = tmp_path / "many"
    n = 3
    for i in range(n):          # defined containers: a config each (none runs)
        (lxpath / f"c{i}").mkdir(parents=True)
        (lxpath / f"c{i}/config.toml").write_text(f'hostname = "c{i}"\n')
    key = "net.ipv4.neigh.default.gc_thresh3"
    lim = hostlimits.BY_KEY[key]
    need = lim.need(n)
    before = hostlimits.read(key)
    path = Path("/proc/sys", key.replace(".", "/"))
    try:
        path.write_text(f"{need - 1}\n")          # one short, for a moment
        low = checkconfig(lxpath)[key]
        path.write_text(f"{need}\n")
        enough = checkconfig(lxpath)[key]
    finally:
        path.write_text(f"{before}\n")
    assert hostlimits.read(key) == before
    assert low["ok"] is False and not low["required"] and low["words"][1] == "too low"
    assert f"{n} containers defined need about {need}" in low["detail"], low
    assert low["hint"].startswith(f"sysctl -w {key}={lim.value}") and \
        hostlimits.SYSCTL_FILE in low["hint"]
    assert enough["ok"] is True
    # text: one line each, exit 0 (a warning, not a missing feature)
    r = subprocess.run([str(BIN / "lxpy-checkconfig"), "-P", str(lxpath)], capture_output=True,
                       text=True, timeout=60)
    assert re.search(rf"^{re.escape(key)}: ok \(", r.stdout, re.M), r.stdout
    # the inotify instances every guest draws on: judged for these containers
    ino = checkconfig(lxpath)["fs.inotify.max_user_instances"]
    cur = hostlimits.read("fs.inotify.max_user_instances")
    assert ino["ok"] is (cur >= hostlimits.BY_KEY["fs.inotify.max_user_instances"].need(n))
    # limits that do not grow with the containers are shown with lxpy's value
    mm = checkconfig(lxpath)["vm.max_map_count"]
    assert mm["info"] and f"sets {hostlimits.BY_KEY['vm.max_map_count'].value}" in mm["detail"]


def inotify_instances(pid: str) -> int:
    """The inotify instances the container's processes hold (each an fd on one)."""
    cgroup = dict(line.split(":", 2)[1:] for line in
                  Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    top = Path("/sys/fs/cgroup/memory" + cgroup["memory"]) if "memory" in cgroup else \
        Path("/sys/fs/cgroup" + cgroup[""])
    procs = set()
    for f in top.rglob("cgroup.procs"):
        procs |= set(f.read_text().split())
    n = 0
    for p in procs:
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                n += os.readlink(fd) == "anon_inode:inotify"
            except OSError:
                pass
    return n


@pytest.mark.slow
@pytest.mark.debian
def test_info_names_the_inotify_limit_a_degraded_guest_hit(request, lxpy, lxpath, unique,
                                                          tmp_path):
    """A Debian guest (unprivileged) whose inotify instances run out: its user namespace's
    own limit is set to what it holds (the host's shared one is not touched on a machine
    others use), so the next .path unit fails as it does when the host's runs out."""
    request.getfixturevalue("debian_cache")
    extra = tmp_path / "unpriv.toml"
    extra.write_text('[idmap]\nuid = [[0, 100000, 65536]]\ngid = [[0, 100000, 65536]]\n'
                     '[[net]]\ntype = "empty"\n')
    lxpy("create", "-n", unique, "-t", "debian", "-B", "dir", "-f", str(extra), timeout=900)
    try:
        lxpy("start", "-n", unique)
        wait_ready(lxpy, unique)
        pid = state_file(lxpath, unique)["pid"]
        info = lxpy("info", "-n", unique, "--no-size").stdout
        # degraded, but not by a host limit: an empty network fails networking.service
        guest = re.search(r"^Guest:\s+(.*)$", info, re.M)
        assert guest and guest.group(1).split(" ")[0] in ("running", "degraded"), info
        assert "Degraded by" not in info, info
        held = inotify_instances(pid)
        assert held > 0
        subprocess.run(["nsenter", "-t", pid, "-U", "sh", "-c",
                        f"echo {held} > /proc/sys/user/max_inotify_instances"], check=True)
        subprocess.run(["nsenter", "-t", pid, "-a", "systemd-run", "--unit", "lxpyprobe",
                        "--path-property=PathExists=/nonexistent", "/bin/true"],
                       capture_output=True, timeout=60)
        info = lxpy("info", "-n", unique, "--no-size").stdout
        assert re.search(r"^Guest:\s+degraded \(failed: .*lxpyprobe\.path", info, re.M), info
        cause = re.search(r"^Degraded by:\s+(.*)$", info, re.M)
        host = hostlimits.read("fs.inotify.max_user_instances")
        assert cause and cause.group(1).startswith(
            f"the host's fs.inotify.max_user_instances ({host}): lxpyprobe.path: ") and \
            "Too many open files" in cause.group(1), info
        j = lxpy("info", "-n", unique, "--no-size", "--json").stdout
        g = json.loads(j)["guest"]
        assert g["state"] == "degraded" and g["host_limit"]["key"] == \
            "fs.inotify.max_user_instances" and "lxpyprobe.path" in g["failed"]
        lxpy("stop", "-n", unique, "-t", "60")
    finally:
        lxpy("stop", "-n", unique, "-k", check=False)
    assert_nothing_left(lxpath, unique)

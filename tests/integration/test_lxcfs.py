"""The container's own /proc through Debian's lxcfs (proc.lxcfs, issue 17): a container with
limits.memory 256M sees 256 MB, its CPUs and its own uptime; when lxcfs stops or restarts it
keeps running and lxpy-info says its view is stale; proc.lxcfs = true without lxcfs is one
clear error. PID 1 here is not systemd: each test runs its own lxcfs on a directory of its
own (proc.lxcfs_path), with the options lxpy's lxcfs.service drop-in gives it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from lxpy import lxcfs

from ..conftest import wait_for
from .test_runtime import assert_nothing_left, make_busybox

pytestmark = pytest.mark.root

LXCFS = shutil.which("lxcfs") or "/usr/bin/lxcfs"
# as packaging/systemd/lxcfs.service.d/lxpy.conf runs it: CPU quotas count, loadavg per cgroup
OPTIONS = ("--enable-cfs", "--enable-loadavg")
UNPRIV = "[idmap]\nuid = [[0, 100000, 65536]]\ngid = [[0, 100000, 65536]]\n"
ENOTCONN = "Transport endpoint is not connected"


class Lxcfs:
    """lxcfs on a directory of its own (0755 under /var/tmp: an unprivileged container's
    root traverses it), started, killed, restarted; unmounted and reaped at the end."""

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="lxpy-test-lxcfs.", dir="/var/tmp")
        os.chmod(self.base, 0o755)
        self.dir = os.path.join(self.base, "fs")
        os.mkdir(self.dir, 0o755)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([LXCFS, "-f", *OPTIONS, "-p",
                                      os.path.join(self.base, "lxcfs.pid"), self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: lxcfs.live(self.dir) or self.proc.poll() is not None,
                 what=f"lxcfs on {self.dir}")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def kill(self) -> None:
        """SIGKILL: its mount stays, dead (ENOTCONN), as after a crash."""
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stderr.close()

    def umount(self) -> None:
        if self.dir in lxcfs.parse_mountinfo(open("/proc/self/mountinfo").read()):
            subprocess.run(["umount", self.dir], check=True)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        self.umount()
        shutil.rmtree(self.base)


@pytest.fixture
def fs():
    f = Lxcfs()
    try:
        f.start()
        yield f
    finally:
        f.close()


def config(f: Lxcfs | str, extra: str = "") -> str:
    path = f.dir if isinstance(f, Lxcfs) else f
    return f'{extra}\n[proc]\nlxcfs_path = "{path}"\n'


def info(lxpy, name: str) -> dict:
    return json.loads(lxpy("info", "-n", name, "--json", "--no-size").stdout)


def sh(lxpy, name: str, script: str) -> str:
    r = lxpy("attach", "-n", name, "--", "/bin/sh", "-c", script, check=False, timeout=60)
    return r.stdout + r.stderr


def meminfo_kb(text: str) -> int:
    return int(re.search(r"MemTotal:\s+(\d+) kB", text).group(1))


def test_busybox_view_then_lxcfs_dies_and_restarts(lxpy, lxpath, unique, fs):
    make_busybox(lxpath, unique, extra=config(fs, '[limits]\nmemory = "256M"\ncpus = 1\n'))
    plan = lxpy("start", "-n", unique, "--dry-run").stdout
    for f in ("meminfo", "cpuinfo", "stat", "uptime", "loadavg", "diskstats", "swaps"):
        assert f"bind lxcfs's {fs.dir}/proc/{f} on /proc/{f}, read-only" in plan, plan
    assert f"{fs.dir}/sys/devices/system/cpu on /sys/devices/system/cpu" in plan
    # after /proc and /sys are mounted, before pivot_root
    assert plan.index("mount sysfs on /sys") < plan.index("bind lxcfs's") \
        < plan.index("pivot_root")

    lxpy("start", "-n", unique)
    out = sh(lxpy, unique, "cat /proc/meminfo; echo cpus=$(grep -c ^processor /proc/cpuinfo);"
             " echo online=$(cat /sys/devices/system/cpu/online); echo up=$(cat /proc/uptime);"
             " grep -c fuse.lxcfs /proc/self/mountinfo; touch /proc/meminfo; echo rc=$?")
    assert meminfo_kb(out) == 256 * 1024, out         # limits.memory, not the host's
    assert "cpus=1" in out and "online=0\n" in out, out     # limits.cpus (--enable-cfs)
    up = float(re.search(r"up=([\d.]+)", out).group(1))
    host_up = float(open("/proc/uptime").read().split()[0])
    assert up < min(60, host_up / 2), out              # since the container's start
    assert "rc=1" in out, out                          # read-only
    view = info(lxpy, unique)["proc_view"]
    assert view == {"lxcfs": fs.dir, "stale": False, "why": ""}
    assert f"Proc view:    lxcfs at {fs.dir}" in lxpy("info", "-n", unique, "--no-size").stdout

    # lxcfs dies: the container runs on, its binds answer ENOTCONN, lxpy-info says stale
    fs.kill()
    st = info(lxpy, unique)
    assert st["state"] == "RUNNING" and st["proc_view"]["stale"], st
    assert "does not answer" in st["proc_view"]["why"]
    assert ENOTCONN in sh(lxpy, unique, "cat /proc/uptime")
    text = lxpy("info", "-n", unique, "--no-size").stdout
    assert re.search(r"^Proc view: +stale: .*restart the container", text, re.M), text

    # lxcfs restarted: a new mount; the container's binds are still the old one's
    fs.umount()
    fs.start()
    st = info(lxpy, unique)
    assert st["state"] == "RUNNING" and st["proc_view"]["stale"], st
    assert "stopped or restarted" in st["proc_view"]["why"]
    assert ENOTCONN in sh(lxpy, unique, "cat /proc/meminfo")

    # a reboot from inside binds the new lxcfs (the plan's binds run again)
    pid = st["pid"]
    lxpy("stop", "-n", unique, "-r")
    st = wait_for(lambda: (i := info(lxpy, unique))["state"] == "RUNNING" and i["pid"] not in
                  (pid, None) and i, what="a new init after the reboot")
    assert not st["proc_view"]["stale"], st
    assert meminfo_kb(sh(lxpy, unique, "cat /proc/meminfo")) == 256 * 1024

    # the refresh the hint gives: restart the container
    fs.kill()
    fs.umount()
    fs.start()
    assert info(lxpy, unique)["proc_view"]["stale"]
    lxpy("stop", "-n", unique, "-k")
    lxpy("start", "-n", unique)
    assert meminfo_kb(sh(lxpy, unique, "cat /proc/meminfo")) == 256 * 1024
    assert not info(lxpy, unique)["proc_view"]["stale"]
    lxpy("stop", "-n", unique, "-k")
    assert_nothing_left(lxpath, unique)


def test_unprivileged_cpuset(lxpy, lxpath, unique, fs):
    make_busybox(lxpath, unique, extra=config(fs, UNPRIV + '[limits]\nmemory = "256M"\n'
                                                  'cpuset = "0"\n'))
    lxpy("start", "-n", unique)
    assert info(lxpy, unique)["unprivileged"]
    out = sh(lxpy, unique, "cat /proc/meminfo; echo nproc=$(nproc); echo cpus=$(grep -c "
             "^processor /proc/cpuinfo); echo online=$(cat /sys/devices/system/cpu/online); "
             "echo up=$(cut -d' ' -f1 /proc/uptime)")
    assert meminfo_kb(out) == 256 * 1024, out
    assert "nproc=1\n" in out and "cpus=1\n" in out and "online=0\n" in out, out
    assert float(re.search(r"up=([\d.]+)", out).group(1)) < 60, out
    assert not info(lxpy, unique)["proc_view"]["stale"]
    lxpy("stop", "-n", unique, "-k")
    assert_nothing_left(lxpath, unique)


def test_required_without_lxcfs_auto_and_off(lxpy, lxpath, unique, fs, tmp_path):
    # true, and no lxcfs at its path: one line saying what to do, nothing left behind
    nothing = tmp_path / "no-lxcfs"
    nothing.mkdir()
    make_busybox(lxpath, unique, extra=config(str(nothing)))
    lxpy("config", "-n", unique, "set", "proc.lxcfs", "true")
    r = lxpy("start", "-n", unique, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip()
    assert "proc.lxcfs is true but lxcfs is not running at" in err and "\n" not in err, err
    assert "Traceback" not in err and "systemctl start lxcfs" in err
    assert info(lxpy, unique)["state"] == "STOPPED"
    assert_nothing_left(lxpath, unique)
    r = lxpy("config", "-n", unique, "set", "proc.lxcfs", "maybe", check=False)
    assert r.returncode == 1 and "not \"auto\", true or false" in r.stderr, r.stderr

    # "auto" without lxcfs: the host's /proc view, no binds, nothing stale
    lxpy("config", "-n", unique, "set", "proc.lxcfs", "auto")
    lxpy("start", "-n", unique)
    assert "fuse.lxcfs" not in sh(lxpy, unique, "cat /proc/self/mountinfo")
    assert "proc_view" not in info(lxpy, unique)
    lxpy("stop", "-n", unique, "-k")

    # false with lxcfs running: no binds either
    lxpy("config", "-n", unique, "set", "proc.lxcfs_path", fs.dir)
    lxpy("config", "-n", unique, "set", "proc.lxcfs", "false")
    assert "bind lxcfs" not in lxpy("start", "-n", unique, "--dry-run").stdout
    lxpy("config", "-n", unique, "set", "proc.lxcfs", "true")
    assert "bind lxcfs" in lxpy("start", "-n", unique, "--dry-run").stdout


@pytest.mark.slow
@pytest.mark.debian
def test_debian_free_nproc_uptime(lxpy, lxpath, unique, fs, tmp_path, request):
    """procps's free and uptime, coreutils's nproc: what an admin types."""
    request.getfixturevalue("debian_cache")
    cfg = tmp_path / "ct.toml"
    cfg.write_text(config(fs, '[[net]]\ntype = "empty"\n[init]\ncmd = ["/bin/sleep", '
                              '"infinity"]\n[limits]\nmemory = "256M"\ncpuset = "0"\n'))
    lxpy("create", "-n", unique, "-t", "debian", "-B", "overlay", "-f", str(cfg), timeout=900)
    lxpy("start", "-n", unique)
    out = sh(lxpy, unique, "free -m; echo nproc=$(nproc); uptime")
    total = int(re.search(r"^Mem:\s+(\d+)", out, re.M).group(1))
    assert 250 <= total <= 256, out
    assert "nproc=1\n" in out and re.search(r"up 0 min", out), out
    lxpy("stop", "-n", unique, "-k")
    assert_nothing_left(lxpath, unique)

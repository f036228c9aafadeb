"""The cgroup drivers against the real kernel: limits enforced on processes placed in the
driver's cgroups, freeze/thaw, live changes, kill, devices, and the container's view.

These run on this host (hybrid: v1 controllers) and, unchanged, inside the cgroup2 VM
(tests/vm). Every cgroup made here is under LXPY_CGROUP_PARENT and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lxpy import cgroups
from lxpy.config import validate
from lxpy.errors import CgroupError
from tests.conftest import wait_for

PY = "/usr/bin/python3"
ALLOC = ("import sys\nb=[]\nn=int(sys.argv[1])\nfor i in range(n): b.append(bytearray(1<<20))\n"
         "print('allocated', flush=True)\n")
pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def drv():
    d = cgroups.driver()
    yield d
    # No cgroup left behind: the test parent goes, on every hierarchy.
    d.remove_parent()
    rel = d.parent_path(None)
    left = [str(h.path(rel)) for h in d.hierarchies() if h.path(rel).exists()]
    assert not left, f"cgroups left behind: {left}"


@pytest.fixture
def cg(drv, unique):
    c = drv.create(unique)
    yield c
    c.destroy()
    assert not any(d.exists() for d in c.dirs())


def cfg(**limits):
    return validate({"limits": limits}, "test")


class Gated:
    """A process that waits on stdin before exec'ing its payload, so it can be put into a
    cgroup first (as the runtime does with init)."""

    def __init__(self, cgroup, *argv: str):
        self.p = subprocess.Popen(["/bin/sh", "-c", 'read _ && exec "$@"', "sh", *argv],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        cgroup.attach(self.p.pid)

    def go(self):
        self.p.stdin.write("\n")
        self.p.stdin.flush()
        return self

    def wait(self, timeout: float = 120):
        out, _ = self.p.communicate(timeout=timeout)
        return self.p.returncode, out

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate(timeout=30)


def busy(cgroup) -> Gated:
    return Gated(cgroup, "/bin/sh", "-c", "while :; do :; done").go()


def cpu_ns(cgroup) -> int:
    return cgroup.stats()["cpu_usage_ns"]


def test_layout_and_driver(drv):
    lay = cgroups.layout()
    assert lay.kind in ("v1", "v2", "hybrid")
    expect = os.environ.get("LXPY_EXPECT_CGROUP")
    if expect:
        assert lay.kind == expect, lay.describe()
    sup = drv.supported()
    for key in ("limits.memory", "limits.pids", "limits.cpus", "freeze", "devices"):
        assert key in sup and isinstance(sup[key][1], str)
    assert sup["limits.memory"][0] and sup["limits.pids"][0] and sup["limits.cpus"][0]


def test_oom_kill_inside_cgroup_only(drv, cg, unique):
    cg.apply_limits(cfg(memory="32M"))
    mon = drv.create_monitor(unique)
    sleeper = Gated(mon, "sleep", "600").go()
    try:
        rc, out = Gated(cg, PY, "-S", "-c", ALLOC, "200").go().wait()
        assert rc == -signal.SIGKILL, out
        assert "allocated" not in out
        st = cg.stats()
        assert st["oom_kills"] >= 1
        assert st["memory_limit"] == 32 << 20
        assert sleeper.p.poll() is None, "the monitor's cgroup was touched"
        assert mon.stats()["oom_kills"] in (0, None)
    finally:
        sleeper.stop()
        mon.destroy()


def test_fork_bomb_stops_at_pids(cg):
    cg.apply_limits(cfg(pids=20))
    bomb = Gated(cg, "/bin/sh", "-c", "while :; do sleep 600 & done 2>/dev/null").go()
    try:
        f = "pids.events"
        wait_for(lambda: "max" in cg.get(f) and int(cg.get(f).split()[-1]) > 0, 60,
                 "the pids limit to be hit")
        st = cg.stats()
        assert st["pids_limit"] == 20
        assert 1 < st["pids_current"] <= 20
        assert len(cg.pids()) <= 20
        # still manageable: kill empties it
        cg.kill()
        assert cg.pids() == []
    finally:
        bomb.stop()


def test_cpu_quota(cg):
    cg.apply_limits(cfg(cpus=0.5))
    loop = busy(cg)
    try:
        wait_for(lambda: cpu_ns(cg) > 50_000_000, 30, "the loop to run")
        t0, u0 = time.monotonic(), cpu_ns(cg)
        wait_for(lambda: time.monotonic() - t0 > 3, 10, "3 s")
        ratio = (cpu_ns(cg) - u0) / ((time.monotonic() - t0) * 1e9)
        # (no lower bound: on a loaded machine the loop may get less than its quota)
        assert 0 < ratio < 0.65, f"busy loop used {ratio:.2f} CPUs with limits.cpus=0.5"
    finally:
        loop.stop()


def test_cpuset(cg):
    cg.apply_limits(cfg(cpuset="0"))
    p = Gated(cg, "/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status").go()
    rc, out = p.wait()
    assert rc == 0
    assert out.split()[-1] == "0"


def test_live_memory_change(cg):
    cg.apply_limits(cfg(memory="32M"))

    def alloc(mb: int) -> int:
        return Gated(cg, PY, "-S", "-c", ALLOC, str(mb)).go().wait()[0]

    assert alloc(64) == -signal.SIGKILL
    cg.set_limit("limits.memory", "256M")
    assert cg.stats()["memory_limit"] == 256 << 20
    assert alloc(64) == 0
    cg.set_limit("limits.memory", "32M")
    assert alloc(64) == -signal.SIGKILL
    assert "32M" not in cg.get_limit("limits.memory")   # raw bytes from the kernel
    assert int(cg.get_limit("limits.memory").split()[-1]) == 32 << 20


def test_freeze_thaw(cg):
    loop = busy(cg)
    try:
        wait_for(lambda: cpu_ns(cg) > 50_000_000, 30, "the loop to run")
        assert cg.freezer_state() == "THAWED"
        assert cg.freeze() == "FROZEN"
        assert cg.frozen()
        assert cg.stats()["freezer_state"] == "FROZEN"
        u0 = cpu_ns(cg)
        t0 = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 1, 5, "1 s")
        assert cpu_ns(cg) - u0 < 20_000_000, "a frozen loop used CPU"
        assert cg.thaw() == "THAWED"
        u1 = cpu_ns(cg)
        wait_for(lambda: cpu_ns(cg) - u1 > 100_000_000, 30, "the thawed loop to run")
    finally:
        loop.stop()


def test_kill_and_destroy(drv, unique):
    c = drv.create(unique)
    tree = Gated(c, "/bin/sh", "-c", "sleep 600 & sleep 600 & sleep 600").go()
    wait_for(lambda: len(c.pids()) >= 4, 30, "the tree to start")
    c.destroy()
    assert tree.p.wait(timeout=30) == -signal.SIGKILL
    assert not any(d.exists() for d in c.dirs())
    c.destroy()   # already gone: fine


def test_kill_of_an_empty_cgroup_leaves_it_thawed(drv, unique):
    """A stale cgroup reused by the next start must not stay FROZEN after a kill."""
    c = drv.create(unique)
    try:
        c.kill()
        assert c.freezer_state() == "THAWED"
        p = Gated(c, "sleep", "600").go()
        try:
            wait_for(lambda: c.pids(), 30, "the task to join")
            c.kill()
            assert c.freezer_state() == "THAWED" and not c.pids()
        finally:
            p.stop()
    finally:
        c.destroy()


def test_names_never_collide(drv, unique):
    a = drv.create(unique)
    p = Gated(a, "sleep", "600")
    try:
        b = drv.create(unique)
        assert b.path == f"{a.path}-1"
        b.destroy()
        # a stale one (no tasks) is reused
        p.stop()
        wait_for(lambda: not a.pids(), 30, "the task to go")
        c = drv.create(unique)
        assert c.path == a.path
        assert drv.open(a.path).path == a.path
    finally:
        p.stop()
        a.destroy()
    with pytest.raises(CgroupError, match="does not exist"):
        drv.open(a.path)


def test_io_weight_is_soft(drv, cg, caplog):
    """A weight the kernel cannot apply is a warning, not a failed start."""
    ok, why = drv.supported()["limits.io_weight"]
    cg.apply_limits(cfg(io_weight=200))
    if not ok:
        assert any("io_weight" in r.getMessage() for r in caplog.records)


def test_raw_get_set_and_bad_names(drv, cg):
    cg.set("pids.max", "77")
    assert cg.get("pids.max").strip() == "77"
    assert int(cg.get_limit("limits.pids")) == 77
    for bad in ("../memory.max", "a/b", "..", "memory"):
        with pytest.raises(CgroupError, match="not a cgroup file name"):
            cg.get(bad)
    other = "memory.limit_in_bytes" if drv.version == 2 else "memory.max"
    with pytest.raises(CgroupError, match="use memory"):
        cg.get(other)
    with pytest.raises(CgroupError) as e:
        cg.set("pids.max", "lots")
    assert "pids.max" in str(e.value) and "lots" in str(e.value)
    with pytest.raises(CgroupError, match="not a limit"):
        cg.set_limit("limits.memroy", "1G")


def test_monitor_apart_from_payload(drv, unique):
    payload = drv.create(unique)
    mon = drv.create_monitor(unique)
    try:
        assert payload.path != mon.path
        assert not mon.path.startswith(payload.path + "/")
        assert Path(payload.path).parent == Path(mon.path).parent
    finally:
        mon.destroy()
        payload.destroy()


def _mknod_char(path: Path, major: int, minor: int) -> None:
    import stat
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(major, minor))


def test_device_allowlist(cg, tmp_path):
    enforced = cg.apply_devices(validate({"devices": {"allow": ["tun"]}}, "test"))
    if not enforced:
        pytest.skip("device policy not enforced on this host: "
                    + cgroups.driver().supported()["devices"][1])
    _mknod_char(tmp_path / "null", 1, 3)
    _mknod_char(tmp_path / "fuse", 10, 229)
    _mknod_char(tmp_path / "tun", 10, 200)
    code = ("import os,sys\nfor p in sys.argv[1:]:\n try:\n  os.close(os.open(p, os.O_RDWR))"
            "\n  print(p, 'ok')\n except OSError as e: print(p, e.errno)\n")
    rc, out = Gated(cg, PY, "-S", "-c", code, *(str(tmp_path / n) for n in
                                                  ("null", "fuse", "tun"))).go().wait()
    res = dict(line.split() for line in out.splitlines())
    assert res[str(tmp_path / "null")] == "ok"
    assert res[str(tmp_path / "fuse")] == "1", out      # EPERM: denied by policy
    assert res[str(tmp_path / "tun")] != "1", out       # allowed (ok, or no such device)


def test_bpf_device_program(cg, tmp_path):
    """The cgroup2 device program (what the v2 driver attaches), on the unified hierarchy
    (on hybrid hosts it has no controllers, but device programs work there too)."""
    from lxpy.cgroups import devices
    from lxpy.linux import bpf
    unified = cgroups.layout().unified
    if unified is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    ok, why = bpf.device_programs_supported()
    if not ok:
        pytest.skip(why)
    bpf.attach_device_program(unified.path(cg.path), devices.rules(["tun"]))
    _mknod_char(tmp_path / "null", 1, 3)
    _mknod_char(tmp_path / "zero", 1, 5)
    _mknod_char(tmp_path / "fuse", 10, 229)
    _mknod_char(tmp_path / "kvm", 10, 232)
    code = ("import os,sys\nfor p in sys.argv[1:]:\n try:\n  os.close(os.open(p, os.O_RDWR))"
            "\n  print(p, 'ok')\n except OSError as e: print(p, e.errno)\n")
    names = ("null", "zero", "fuse", "kvm")
    rc, out = Gated(cg, PY, "-S", "-c", code, *(str(tmp_path / n) for n in names)).go().wait()
    res = {Path(k).name: v for k, v in (line.split() for line in out.splitlines())}
    assert res == {"null": "ok", "zero": "ok", "fuse": "1", "kvm": "1"}, out


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux unshare")
def test_container_cgroup_view(cg, tmp_path):
    """What the runtime mounts at /sys/fs/cgroup after unsharing the cgroup namespace:
    the container's cgroup appears as the root and its subtree is writable (systemd)."""
    root = tmp_path / "root"
    root.mkdir()
    repo = Path(__file__).resolve().parent.parent.parent
    code = f"""
import os, sys
sys.path.insert(0, {str(repo)!r})
from lxpy import cgroups
from lxpy.linux import mount as m
m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
cg = cgroups.driver().open({cg.path!r})
steps = cg.container_mounts()
cgroups.mount_in_container(steps, {str(root)!r})
base = {str(root)!r} + "/sys/fs/cgroup"
lay = cgroups.layout()
top = base if lay.kind == "v2" else base + "/" + ("systemd" if os.path.isdir(base + "/systemd")
                                                   else os.listdir(base)[0])
print("procs", *open(top + "/cgroup.procs").read().split())
print("own", *open("/proc/self/cgroup").read().split())
os.mkdir(top + "/init.scope")
with open(top + "/init.scope/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
print("moved", *open("/proc/self/cgroup").read().split())
try:
    os.mkdir(base + "/intruder")
    print("tmpfs-writable")
except OSError as e:
    print("tmpfs-ro", e.errno)
"""
    p = subprocess.Popen(["/bin/sh", "-c", 'read _ && exec "$@"', "sh", "unshare", "-m",
                          "-C", sys.executable, "-c", code],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    cg.attach(p.pid)
    out, err = p.communicate("\n", timeout=60)
    assert p.returncode == 0, err
    own = [line for line in out.splitlines() if line.startswith("own")][0]
    # in its cgroup namespace, the container's cgroup is "/" on every hierarchy
    assert all(e.endswith(":/") for e in own.split()[1:]), own
    assert "moved" in out and "/init.scope" in out
    if cgroups.layout().kind != "v2":
        # v1/hybrid: the tmpfs holding the hierarchies is read-only
        assert "tmpfs-ro 30" in out, out      # EROFS
    assert any(d.joinpath("init.scope").is_dir() for d in cg.dirs())

"""A busybox container with limits, started and stopped by lxpy-start/lxpy-stop, driven by
lxpy-cgroup, lxpy-freeze/unfreeze and read by lxpy-info: the acceptance list of the cgroup
issue as a user sees it. Runs on this host and in the cgroup2 VM (tests/vm)."""

from __future__ import annotations

import json

import pytest

from lxpy import cgroups

from .test_runtime import make_busybox

pytestmark = pytest.mark.root

# one read into an n-byte buffer: n bytes touched at once (a pipe is slow under TCG)
HOG = "dd if=/dev/zero of=/dev/null bs={n} count=1 2>/dev/null; echo rc=$?"
LIMITS = '[limits]\nmemory = "64M"\npids = 40\ncpus = 0.5\n'


def mib(n: int) -> int:
    return n << 20


def info(lxpy, name: str) -> dict:
    return json.loads(lxpy("info", "-n", name, "--json", "--no-size").stdout)


def attach(lxpy, name: str, script: str, timeout: float = 120):
    return lxpy("attach", "-n", name, "--", "/bin/sh", "-c", script, check=False,
                timeout=timeout)


@pytest.fixture
def ct(lxpy, lxpath, unique):
    make_busybox(lxpath, unique, extra=LIMITS)
    lxpy("start", "-n", unique, timeout=180)
    yield unique
    lxpy("stop", "-n", unique, "-k", check=False, timeout=120)
    parent = cgroups.driver().parent_path(None)
    left = [str(h.path(f"{parent}/{unique}")) for h in cgroups.driver().hierarchies()
            if h.path(f"{parent}/{unique}").exists()]
    assert not left, f"cgroups left behind: {left}"


def test_container_limits_live_change_freeze(lxpy, ct):
    # the limits of the config are in force, in the lxpy vocabulary and the raw file
    assert int(lxpy("cgroup", "-n", ct, "limits.memory").stdout) == mib(64)
    raw = "memory.max" if cgroups.driver().version == 2 else "memory.limit_in_bytes"
    assert int(lxpy("cgroup", "-n", ct, raw).stdout) == mib(64)
    st = info(lxpy, ct)
    res = st["resources"]
    assert res["memory_limit"] == mib(64) and res["pids_limit"] == 40
    assert res["oom_kills"] == 0

    # past limits.memory: OOM-killed inside the container; it and its monitor live on
    r = attach(lxpy, ct, HOG.format(n=mib(100)))
    assert "rc=137" in r.stdout, r.stdout + r.stderr
    st = info(lxpy, ct)
    assert st["state"] == "RUNNING"
    assert st["resources"]["oom_kills"] >= 1

    # raise it live: the same allocation now fits; lower it: it no longer does
    lxpy("cgroup", "-n", ct, "limits.memory", "256M")
    assert int(lxpy("cgroup", "-n", ct, "limits.memory").stdout) == mib(256)
    assert "rc=0" in attach(lxpy, ct, HOG.format(n=mib(100))).stdout
    lxpy("cgroup", "-n", ct, "limits.memory", "64M")
    assert "rc=137" in attach(lxpy, ct, HOG.format(n=mib(100))).stdout

    # freeze / thaw, visible in lxpy-info
    lxpy("freeze", ct)
    st = info(lxpy, ct)
    assert st["state"] == "FROZEN" and st["resources"]["freezer_state"] == "FROZEN"
    cpu0 = st["resources"]["cpu_usage_ns"]
    lxpy("unfreeze", ct)
    st = info(lxpy, ct)
    assert st["state"] == "RUNNING" and st["resources"]["freezer_state"] == "THAWED"
    assert st["resources"]["cpu_usage_ns"] >= cpu0

    # a bad value: one line, the kernel's reason, exit 1
    r = lxpy("cgroup", "-n", ct, "pids.max", "lots", check=False)
    assert r.returncode == 1 and "pids.max" in r.stderr and "Traceback" not in r.stderr
    r = lxpy("cgroup", "-n", ct, "../../etc/passwd", check=False)
    assert r.returncode == 1 and "not a cgroup file name" in r.stderr


def test_container_fork_bomb_and_view(lxpy, ct):
    # a fork bomb stops at limits.pids; the container stays manageable
    # (ash gives up on a failed fork: the bomb runs in a subshell)
    r = attach(lxpy, ct, "(i=0; while [ $i -lt 200 ]; do sleep 1000 >/dev/null 2>&1 & "
                         "i=$((i+1)); done) 2>/dev/null; echo spawned; "
                         "cat /sys/fs/cgroup/pids.current /sys/fs/cgroup/pids/pids.current "
                         "2>/dev/null; true")
    assert "spawned" in r.stdout
    counts = [int(x) for x in r.stdout.split()[1:] if x.isdigit()]
    assert counts and max(counts) <= 40
    res = info(lxpy, ct)["resources"]
    assert res["pids_current"] <= 40
    # inside: its own cgroup namespace, /sys/fs/cgroup shows the container's cgroup as root
    r = attach(lxpy, ct, "cat /proc/self/cgroup; ls /sys/fs/cgroup")
    lines = r.stdout.split()
    assert "0::/" in lines
    if cgroups.driver().version == 2:
        assert "cgroup.procs" in lines and "cgroup.subtree_control" in lines
    else:
        assert "memory" in lines and "systemd" in lines
    lxpy("stop", "-n", ct, timeout=120)
    assert info(lxpy, ct)["state"] == "STOPPED"


def test_not_running_errors(lxpy, lxpath, unique):
    make_busybox(lxpath, unique)
    for cmd in (("cgroup", "-n", unique, "limits.memory"), ("freeze", unique),
                ("unfreeze", unique)):
        r = lxpy(*cmd, check=False)
        assert r.returncode == 1, r
        assert "not running" in r.stderr and "Traceback" not in r.stderr
    r = lxpy("cgroup", "-n", unique, check=False)
    assert r.returncode == 2



def _host_cgroups(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {ctrl: path for _h, ctrl, path in (ln.rstrip("\n").split(":", 2) for ln in f)}


def test_init_and_attached_processes_in_the_cgroup_everywhere(lxpy, ct):
    # Seen from the host: init and an attached process are in the container's cgroup on
    # every hierarchy (the helper is born in it on cgroup2 and moves itself on v1; attach
    # likewise), and the limits hold for what attach started.
    parent = cgroups.driver().parent_path(None)
    want = f"/{parent.strip('/')}/{ct}"
    init = info(lxpy, ct)["pid"]
    assert set(_host_cgroups(init).values()) == {want}, _host_cgroups(init)
    r = attach(lxpy, ct, "sleep 1000 >/dev/null 2>&1 & echo $!")
    inner = r.stdout.strip()
    assert inner.isdigit(), r
    # the sleeper's host pid: the member of the container's cgroup whose NSpid ends in it
    procs = cgroups.driver().hierarchies()[0].path(want.lstrip("/")) / "cgroup.procs"
    host = []
    for p in procs.read_text().split():
        with open(f"/proc/{p}/status") as f:
            nspid = next(ln.split()[1:] for ln in f if ln.startswith("NSpid:"))
        if nspid[-1] == inner:
            host.append(int(p))
    assert len(host) == 1, (procs.read_text(), inner)
    assert set(_host_cgroups(host[0]).values()) == {want}, _host_cgroups(host[0])


def test_lxpy_cgroup_cpus_and_procs(lxpy, ct):
    # limits.cpus reads back in the config's own vocabulary, not as quota/period
    assert lxpy("cgroup", "-n", ct, "limits.cpus").stdout.strip() == "0.5"
    lxpy("cgroup", "-n", ct, "limits.cpus", "1.25")
    assert lxpy("cgroup", "-n", ct, "limits.cpus").stdout.strip() == "1.25"
    # a host process moved in with cgroup.procs joins the cgroup on every hierarchy
    import subprocess
    p = subprocess.Popen(["sleep", "600"])
    try:
        lxpy("cgroup", ct, "cgroup.procs", str(p.pid))
        parent = cgroups.driver().parent_path(None)
        want = f"/{parent.strip('/')}/{ct}"
        assert set(_host_cgroups(p.pid).values()) == {want}, _host_cgroups(p.pid)
    finally:
        p.kill()
        p.wait()
    r = lxpy("cgroup", ct, "cgroup.procs", "abc", check=False)
    assert r.returncode == 2 and "not a process id" in r.stderr


def test_config_set_live(lxpy, lxpath, ct):
    # saved in the config and applied to the running container at once
    lxpy("config", "-n", ct, "set", "limits.memory", "128M", "--live")
    assert int(lxpy("cgroup", "-n", ct, "limits.memory").stdout) == mib(128)
    assert lxpy("config", "-n", ct, "get", "limits.memory").stdout.strip() in ("128M", "134217728")
    # a key that only a restart can change: exit 1, one line, the config untouched
    before = (lxpath / ct / "config.toml").read_text()
    r = lxpy("config", "-n", ct, "set", "hostname", "other", "--live", check=False)
    assert r.returncode == 1 and "cannot be changed on a running container" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert (lxpath / ct / "config.toml").read_text() == before


def test_the_parent_cgroup_goes_with_its_last_container(lxpy, lxpath, unique, monkeypatch):
    """A container's cgroups sit under a parent (cgroup_parent, "lxpy"): once its last
    container stopped, nothing of it is left on any hierarchy, and the next start makes it
    again."""
    parent = f"lxpy-last-{unique}"
    monkeypatch.setenv("LXPY_CGROUP_PARENT", parent)
    hierarchies = cgroups.driver().hierarchies()

    def parent_dirs():
        return [str(h.path(parent)) for h in hierarchies if h.path(parent).exists()]
    make_busybox(lxpath, unique)
    try:
        for how in (["-t", "10"], ["-k"]):
            lxpy("start", "-n", unique)
            assert parent_dirs(), "the start made no parent cgroup"
            lxpy("stop", "-n", unique, *how)
            assert parent_dirs() == []
    finally:
        lxpy("stop", "-n", unique, "-k", check=False)
        cgroups.driver().remove_parent(parent)

"""Shared fixtures. Integration tests run the real commands, as root, against the real
kernel, each with its own lxpath under a temp dir and their own cgroup parent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def loaded_by(imports: str, candidates) -> list[str]:
    """Which of candidates (module names) a fresh `python -I -S` holds after running
    imports (Python statements) with this checkout first on its path."""
    code = (f"import sys; sys.path.insert(0, sys.argv[1]); {imports}; "
            f"print(' '.join(m for m in {tuple(candidates)!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(REPO)],
                       capture_output=True, text=True, check=True)
    return r.stdout.split()


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    """pred()'s first true value, asked again every 20 ms (for what no event tells: a
    process's state, a link, a file); AssertionError naming what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def _is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    # `long` tests (minutes each: a systemd guest under emulation) run only when the -m
    # expression names them: `pytest -m long tests/vm`
    if "long" not in (config.getoption("markexpr") or ""):
        long = [i for i in items if i.get_closest_marker("long")]
        if long:
            config.hook.pytest_deselected(items=long)
            items[:] = [i for i in items if not i.get_closest_marker("long")]
    for item in items:
        if "integration" in item.nodeid.split("/") and not _is_root():
            item.add_marker(pytest.mark.skip(reason="integration tests need root"))


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lxpy-session")


@pytest.fixture(scope="session")
def cache_dir(session_dir) -> Path:
    """The rootfs cache for this test run (LXPY_TEST_CACHE keeps one across runs)."""
    keep = os.environ.get("LXPY_TEST_CACHE")
    p = Path(keep) if keep else session_dir / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p


@pytest.fixture(scope="session", autouse=True)
def lxpy_env(session_dir, cache_dir, _nothing_left_by_the_run):
    """Isolate every lxpy command of the test run from the host's own set-up."""
    # The test run's own managed bridge and subnet, never the host's lxpybr0.
    n = os.getpid() % 250 + 1
    (session_dir / "lxpy.toml").write_text(
        f'[net]\nbridge = "lxpyts{n}"\nsubnet = "10.213.{n}.0/24"\n'
        f'dhcp_range = "10.213.{n}.10,10.213.{n}.250"\ndomain = "lxpytest"\n')
    env = {
        "LXPY_CONFIG": str(session_dir / "lxpy.toml"),
        "LXPY_CACHE": str(cache_dir),
        "LXPY_CGROUP_PARENT": f"lxpy-test-{os.getpid()}",
        "LXPY_LOG_DIR": str(session_dir / "log"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    # A test that started a container on the default network brought this bridge up.
    if os.path.exists(f"/sys/class/net/lxpyts{n}"):
        subprocess.run([str(BIN / "lxpy-net"), "stop", "--force"], capture_output=True,
                       timeout=60)
    if _is_root():      # no cgroup left behind: the run's cgroup parent goes when empty
        try:
            from lxpy import cgroups
            cgroups.driver().remove_parent(env["LXPY_CGROUP_PARENT"])
        except Exception:  # noqa: BLE001 - a container test left a task: its own test fails
            pass
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# -- nothing leaks: what the whole test run leaves on the host ---------------------------
# Every lxpath a test used (their run dirs are /run/lxpy/<hash of the lxpath>/...), and what
# the run owns: its cgroup parent, its temp dir (mounts, processes), /run/lxpy/net.
_LXPATHS: set[str] = set()


def _run_hash(lxpath: str) -> str:
    import hashlib
    return hashlib.sha256(os.fsencode(os.path.realpath(lxpath))).hexdigest()[:12]


def _leftovers(base: str, parent: str) -> set[str]:
    out = set()
    for lp in _LXPATHS:
        d = f"/run/lxpy/{_run_hash(lp)}"
        if os.path.lexists(d):
            out.add(f"run dir {d} (of {lp}): {sorted(os.listdir(d))}")
    hashes = {_run_hash(lp) for lp in _LXPATHS}
    net = Path("/run/lxpy/net")
    bridge = net / f"lxpyts{os.getpid() % 250 + 1}"      # lxpy_env's bridge
    if bridge.exists():
        out.add(f"dnsmasq state {bridge}")
    for f in list(net.glob("containers/*.json")) + list(net.glob("forwards/*.json")):
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.name.split("-")[0] in hashes or any(h in text for h in hashes):
            out.add(f"network record {f}")
    for h in Path("/sys/fs/cgroup").iterdir():
        if (h / parent).is_dir():
            out.add(f"cgroup {h / parent}: "
                    f"{sorted(x.name for x in (h / parent).iterdir() if x.is_dir())}")
    try:        # id blocks (lxpy.idmap) held by containers of the run's lxpaths
        with open("/var/lib/lxpy/idmap.toml", "rb") as f:
            held = tomllib.load(f).get("container", [])
    except (OSError, tomllib.TOMLDecodeError):
        held = []
    out.update(f"id block {e.get('uid')} of {e.get('lxpath')}/{e.get('name')}" for e in held
               if str(e.get("lxpath", "")).startswith(base + "/"))
    base += "/"
    ours = [base] + [f"/run/lxpy/{h}/" for h in hashes]
    with open("/proc/self/mountinfo") as f:
        out.update(f"mount {line.split()[4]}" for line in f
                   if any(o in line.split()[4] + "/" for o in ours))
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(o in cmd for o in ours):
                out.add(f"process {p.name}: {cmd[:200]}")
    return out


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_by_the_run(tmp_path_factory):
    """After the whole run, nothing the run made may be left: no run dir, network record,
    cgroup, mount or process (lxpy_env, which stops the run's bridge and removes its cgroup
    parent, depends on this fixture: it is torn down before this check). A failure here
    fails the run."""
    if not _is_root():
        yield
        return
    base = str(tmp_path_factory.getbasetemp())
    parent = f"lxpy-test-{os.getpid()}"
    before = _leftovers(base, parent)
    yield
    left = _leftovers(base, parent) - before
    if left:
        pytest.fail("the test run left this behind:\n  " + "\n  ".join(sorted(left)),
                    pytrace=False)


@pytest.fixture
def lxpath(tmp_path) -> Path:
    p = tmp_path / "lxpath"
    p.mkdir()
    _LXPATHS.add(str(p))
    yield p
    clear_lxpath(p)
    shutil.rmtree(p, ignore_errors=True)


def clear_lxpath(p: Path) -> None:
    """Whatever a test left in lxpath p: stopped and destroyed, so nothing leaks into the
    next test."""
    for c in sorted(p.iterdir()) if p.exists() else []:
        if (c / "config.toml").exists():
            subprocess.run([str(BIN / "lxpy-stop"), "-P", str(p), "-n", c.name, "-k"],
                           capture_output=True, timeout=60)
            subprocess.run([str(BIN / "lxpy-destroy"), "-P", str(p), "-n", c.name, "-f"],
                           capture_output=True, timeout=60)


class Runner:
    def __init__(self, lxpath: Path):
        self.lxpath = lxpath

    def __call__(self, verb: str, *args: str, check: bool = True, input: str | None = None,
                 timeout: float = 120, lxpath: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(BIN / f"lxpy-{verb}")]
        if lxpath:
            cmd += ["-P", str(self.lxpath)]
        cmd += list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r


@pytest.fixture
def lxpy(lxpath) -> Runner:
    """lxpy("create", "-n", "x", "-t", "busybox") runs lxpy-create -P <lxpath> ..."""
    return Runner(lxpath)


@pytest.fixture
def unique() -> str:
    return "t" + uuid.uuid4().hex[:8]

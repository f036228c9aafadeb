#!/usr/bin/env python3
"""lxpy side by side with LXC on the same machine, in one run (issue 7).

    sudo bench/run [--quick] [--full] [--rows a,b] [--iterations N] [--no-install] [--readme]

Every operation runs through the COMMANDS (lxpy-* and lxc-*), several times, alternating
lxpy and LXC, under a bench directory of its own (lxpy lxpath and LXC lxcpath side by side).
Reports min/median/max and the lxpy/LXC ratio of medians against the project's goals (for
the commands that return before the guest's work: a multiple of the bare interpreter start,
python_start, measured in the same run): a table on the terminal, bench/results/last.json
and bench/results/last.png.
Everything it made is stopped and destroyed at the end, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_BIN = REPO / ".venv" / "bin"   # --dev: the checkout's editable venv
BASE_PYTHON = "/usr/bin/python3"    # what scripts/setup-host makes /opt/lxpy from
RESULTS = HERE / "results"
README = HERE / "README.md"
DEFAULT_DIR = Path("/var/tmp/lxpy-bench")
RELEASE = "bookworm"
BIG_MB = 3072
APT_LXC = ["lxc", "lxc-templates", "debootstrap", "rsync"]
APT_NSPAWN = ["systemd-container"]
LXC_CONF = """\
# The bench's own LXC config (lxc-create -f): no network, as the lxpy containers.
lxc.net.0.type = empty
lxc.apparmor.profile = unconfined
"""
LXPY_CONF = """\
# The bench's own lxpy config (lxpy-create -f): no network, as the LXC containers.
[[net]]
type = "empty"
"""


# --------------------------------------------------------------------------- rows and goals

@dataclass(frozen=True)
class Row:
    id: str
    group: str
    title: str
    goal: str = "—"
    max_ratio: float | None = None      # lxpy/LXC ratio of medians must be <= this
    abs_max: float | None = None        # lxpy's own median must be <= this (unit)
    py_max: float | None = None         # lxpy's median per call <= this × python_start's
    calls: int = 1                      # commands per sample (per call: median / calls)
    lxc: bool = True                    # LXC has an equivalent (a column)
    unit: str = "s"
    quick: bool = False
    full_only: bool = False
    vs: str = "lxc"                     # the column compared against: LXC, or lxpy privileged


PY5 = "≤ 5× python_start"      # issue 15: the budget of an idiomatic Python command line


ROWS: list[Row] = [
    Row("python_start", "busybox", "bare interpreter start: python3 -I -S -c pass (the "
        "baseline)", lxc=False, quick=True),
    Row("headline", "debian", "HEADLINE: Debian from cache → systemd running/degraded "
        "(create + start + boot)", "≤ 0.15", 0.15),
    Row("create_busybox", "busybox", "create -t busybox", "≤ 0.5", 0.5, quick=True),
    Row("create_debian_cold", "cold", "create -t debian, cold (bootstrap + download)",
        full_only=True),
    Row("create_debian_cached", "debian", "create -t debian from cache (lxpy: overlay)",
        "≤ 0.05", 0.05),
    Row("start_busybox", "busybox", "start busybox → RUNNING", "≤ 5.0", 5.0, quick=True),
    Row("start_debian_init", "debian", "start Debian → init running"),
    Row("start_debian_systemd", "debian", "start Debian → is-system-running running/degraded",
        "≤ 1.25", 1.25),
    Row("stop_debian", "debian", "stop Debian (clean systemd shutdown)", "≤ 1.1", 1.1),
    Row("attach_true", "busybox", "attach -- /bin/true", PY5, py_max=5, quick=True),
    Row("attach_true_x100", "busybox", "100 × attach -- /bin/true (loop)",
        PY5 + " per call", py_max=5, calls=100),
    Row("execute_true", "busybox", "execute -- /bin/true (busybox)", PY5 + ", ≤ nspawn",
        py_max=5),
    Row("stop_busybox", "busybox", "stop busybox (clean)", quick=True),
    Row("stop_kill_busybox", "busybox", "stop -k busybox (running)", PY5, py_max=5,
        quick=True),
    Row("config_get", "busybox", "config get limits.memory (lxpy-config; no LXC equivalent)",
        PY5, py_max=5, lxc=False, quick=True),
    Row("cgroup_get", "busybox", "cgroup get (lxpy-cgroup limits.memory; lxc-cgroup "
        "memory.limit_in_bytes)", PY5, py_max=5, quick=True),
    Row("wait_running", "busybox", "wait -s RUNNING (running)", PY5, py_max=5, quick=True),
    Row("clone_snapshot_debian", "clone", "snapshot clone, Debian (lxc-copy -s -B overlayfs)",
        PY5, py_max=5),
    Row("clone_full_debian", "clone", "full clone, Debian (lxpy default: copies the upper)",
        "≤ 1.0", 1.0),
    Row("clone_full_debian_dir", "clone", "full clone, Debian, whole tree (lxpy-copy -B dir)"),
    Row("clone_snapshot_3g", "clone", "snapshot clone, Debian + 3 GB file",
        PY5 + ", flat", py_max=5),
    Row("ls_1", "busybox", "ls -f, 1 container (running)", PY5, py_max=5, quick=True),
    Row("info_1", "busybox", "info, 1 container (running)", PY5, py_max=5, quick=True),
    Row("ls_50", "many", "ls -f, 50 containers (50 running)"),
    Row("info_50", "many", "info, 50 containers (50 running)"),
    Row("ls_200", "many", "ls -f, 200 containers (50 running)", "≤ 1.0", 1.0),
    Row("info_200", "many", "info, 200 containers (50 running)", PY5, py_max=5),
    Row("monitor_rss", "many", "monitor RSS per running container (50 running)", unit="MB"),
    Row("monitor_pss", "many", "monitor PSS per running container (50 running)",
        "PSS ≤ 4 MB", abs_max=4.0, unit="MB"),
    Row("start_stop_50", "many", "start 50 busybox + stop them (total)", "≤ 1.5", 1.5),
    # issue 17: density, 50 Debian guests made and booted together, all running
    Row("density_debian_50", "density", "50 Debian from cache, created + started together, "
        "until each systemd is running/degraded (total; none degraded)", "≤ 0.05, 50 running",
        0.05, full_only=True),
    # issue 16: an unprivileged container (the default) against a privileged one, both lxpy
    Row("unpriv_clone_snapshot", "unpriv", "snapshot clone, Debian: unprivileged vs "
        "privileged lxpy", "≤ 1.2", 1.2, vs="lxpy_priv"),
    Row("unpriv_clone_snapshot_3g", "unpriv", "snapshot clone, Debian + 3 GB file: "
        "unprivileged vs privileged lxpy", "≤ 1.2, flat", 1.2, vs="lxpy_priv"),
    Row("unpriv_start_debian_systemd", "unpriv", "start Debian → is-system-running: "
        "unprivileged vs privileged lxpy", "≤ 1.2", 1.2, vs="lxpy_priv"),
]
ROW = {r.id: r for r in ROWS}
GROUP_ORDER = ["busybox", "debian", "clone", "unpriv", "many", "density", "cold"]


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


def _on_signal(signum, frame):  # noqa: ARG001
    raise Interrupted(signal.Signals(signum).name)


# --------------------------------------------------------------------------- running commands

class Runner:
    def __init__(self, log: Path, env: dict[str, str]):
        self.log = log.open("a")
        self.env = env

    def run(self, cmd: list[str], *, check: bool = True, timeout: float = 600,
            env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               env=env or self.env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.log.write(f"TIMEOUT {timeout}s {' '.join(cmd)}\n")
            raise BenchError(f"{' '.join(cmd[:4])}…: timed out after {timeout:.0f} s") from e
        elapsed = time.perf_counter() - t0
        self.log.write(f"{elapsed * 1000:9.1f} ms rc={p.returncode} {' '.join(cmd)}\n")
        if p.returncode and p.stderr:
            self.log.write("  " + p.stderr.strip()[-2000:].replace("\n", "\n  ") + "\n")
        self.log.flush()
        if check and p.returncode != 0:
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise BenchError(f"{' '.join(cmd[:3])} … exit {p.returncode}: {tail[0][:200]}")
        return elapsed, p


class Tool:
    """One container manager, driven only through its commands (lxpy-VERB or lxc-VERB)."""

    key = ""
    label = ""
    prefix = ""                          # of the commands: lxpy-start, lxc-start
    quiet: tuple[str, ...] = ()          # destroy's option for no output
    memory_limit = ""                    # cgroup get: what lxpy-cgroup / lxc-cgroup read

    def __init__(self, runner: Runner, path: Path, conf: Path, bin_dir: Path | None = None):
        self.r = runner
        self.path = path
        self.conf = conf
        self.bin = bin_dir
        self.made: list[str] = []        # in creation order: destroyed in reverse

    def c(self, verb: str, *args: str) -> list[str]:
        exe = f"{self.prefix}-{verb}"
        return [str(self.bin / exe) if self.bin else exe, "-P", str(self.path), *args]

    def _made(self, name: str) -> None:
        if name not in self.made:
            self.made.append(name)

    def run(self, cmd: list[str], **kw) -> float:
        return self.r.run(cmd, **kw)[0]

    def out(self, cmd: list[str], **kw) -> str:
        return self.r.run(cmd, **kw)[1].stdout

    def wait_systemd(self, name: str, timeout: float = 120) -> str:
        """Attach `systemctl is-system-running --wait` until it says running/degraded."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            _, p = self.r.run(self.attach_cmd(name, ["systemctl", "is-system-running",
                                                      "--wait"]), check=False, timeout=timeout)
            last = (p.stdout.strip().splitlines() or [p.stderr.strip()])[-1:]
            last = last[0] if last else ""
            if last in ("running", "degraded"):
                return last
            if last in ("maintenance", "stopping"):
                break
            time.sleep(0.02)
        raise BenchError(f"{self.label} {name}: systemd did not come up ({last!r})")

    def attach(self, name: str, argv: list[str], timeout: float = 120) -> float:
        return self.run(self.attach_cmd(name, argv), timeout=timeout)

    def init_pid(self, name: str) -> int:
        m = re.search(r"(\d+)", self.out(self.info_cmd(name) + ["-p"]))
        if not m:
            raise BenchError(f"{self.label} {name}: no init pid")
        return int(m.group(1))

    def destroy_all(self) -> list[str]:
        """Stop and destroy everything in this tool's path; returns what could not go."""
        problems: list[str] = []
        for _ in range(3):
            names = list(reversed(self.made))
            names += [n for n in self.list_names() if n not in names]
            if not names:
                return []
            problems = []
            for n in names:
                try:
                    self.destroy(n)
                except BenchError as e:
                    problems.append(f"{n}: {e}")
        return problems + [f"{n}: still listed" for n in self.list_names()]

    def wait(self, name: str, state: str, timeout: float = 60) -> float:
        return self.run(self.c("wait", "-n", name, "-s", state, "-t", str(int(timeout))),
                        timeout=timeout + 10)

    def stop(self, name: str) -> float:
        return self.run(self.c("stop", "-n", name), timeout=120)

    def kill(self, name: str) -> float:
        """stop -k; a container that is not running is fine (exit 2, or LXC's message)."""
        elapsed, p = self.r.run(self.c("stop", "-n", name, "-k"), check=False, timeout=60)
        if p.returncode not in (0, 2) and "not running" not in p.stderr:
            raise BenchError(f"{self.prefix}-stop -k {name}: exit {p.returncode}")
        return elapsed

    def attach_cmd(self, name: str, argv: list[str]) -> list[str]:
        return self.c("attach", "-n", name, "--", *argv)

    def execute(self, name: str, argv: list[str]) -> float:
        return self.run(self.c("execute", "-n", name, "--", *argv))

    def ls(self) -> float:
        return self.run(self.c("ls", "-f"))

    def info_cmd(self, name: str) -> list[str]:
        return self.c("info", "-n", name)

    def info(self, name: str) -> float:
        return self.run(self.info_cmd(name))

    def cgroup_get(self, name: str) -> float:
        return self.run(self.c("cgroup", "-n", name, self.memory_limit))

    def destroy(self, name: str) -> None:
        self.run(self.c("destroy", "-n", name, "-f", "-s", *self.quiet), timeout=300)
        if name in self.made:
            self.made.remove(name)

    def list_names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        _, p = self.r.run(self.c("ls", "-1"), check=False)
        return [n for n in p.stdout.split() if n]

    def rootfs_of(self, name: str) -> Path:
        return self.path / name / "rootfs"


class Lxpy(Tool):
    key = "lxpy"
    label = "lxpy"
    prefix = "lxpy"
    quiet = ("-q",)
    memory_limit = "limits.memory"

    privileged: tuple[str, ...] = ()     # lxpy-create's option for a privileged container

    def create_busybox(self, name: str) -> float:
        self._made(name)
        return self.run(self.c("create", "-n", name, "-t", "busybox", "-q", *self.privileged,
                               "-f", str(self.conf)))

    def create_debian(self, name: str, env: dict | None = None, timeout: float = 120) -> float:
        self._made(name)
        return self.run(self.c("create", "-n", name, "-t", "debian", "-B", "overlay", "-q",
                               *self.privileged, "-f", str(self.conf), "--", "-r", RELEASE),
                        env=env, timeout=timeout)

    def start(self, name: str) -> float:
        return self.run(self.c("start", "-n", name), timeout=120)

    def copy(self, src: str, dst: str, snapshot: bool, backend: str | None = None) -> float:
        self._made(dst)
        return self.run(self.c("copy", "-n", src, "-N", dst, "-q", *(["-s"] if snapshot else []),
                               *(["-B", backend] if backend else [])), timeout=600)

    def config_get(self, name: str) -> float:
        return self.run(self.c("config", "-n", name, "get", "limits.memory"))


class LxpyPrivileged(Lxpy):
    """lxpy making privileged containers (the unpriv rows' other column): same lxpath."""
    key = "lxpy_priv"
    label = "lxpy privileged"
    privileged = ("--privileged",)


class Lxc(Tool):
    key = "lxc"
    label = "LXC"
    prefix = "lxc"
    # the v1 memory controller's file (this machine: hybrid); memory.max on a v2-only host
    memory_limit = ("memory.limit_in_bytes" if Path("/sys/fs/cgroup/memory").is_dir()
                    else "memory.max")

    def create_busybox(self, name: str) -> float:
        self._made(name)
        return self.run(self.c("create", "-n", name, "-t", "busybox", "-f", str(self.conf)))

    def create_debian(self, name: str, flush: bool = False, timeout: float = 120) -> float:
        self._made(name)
        return self.run(self.c("create", "-n", name, "-t", "debian", "-f", str(self.conf), "--",
                               "-r", RELEASE, *(["--flush-cache"] if flush else [])),
                        timeout=timeout)

    def start(self, name: str) -> float:
        return self.run(self.c("start", "-n", name, "-d"), timeout=120)

    def copy(self, src: str, dst: str, snapshot: bool, backend: str | None = None) -> float:
        self._made(dst)
        extra = ["-s", "-B", "overlayfs"] if snapshot else []
        return self.run(self.c("copy", "-n", src, "-N", dst, *extra), timeout=600)


# --------------------------------------------------------------------------- the bench

def stats(samples: list[float]) -> dict:
    return {"n": len(samples), "min": min(samples), "median": statistics.median(samples),
            "max": max(samples), "samples": [round(s, 6) for s in samples]}


def hsize(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def smaps_rollup(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("Rss", "Pss"):
            vals[k] = int(v.split()[0]) / 1024
    return vals["Rss"], vals["Pss"]


def ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise BenchError(f"no parent for {pid}")


class Bench:
    def __init__(self, args: argparse.Namespace, lxpy_bin: Path = VENV_BIN):
        self.args = args
        self.dir: Path = args.dir
        self.n: int = args.iterations
        self.rows: list[str] = args.selected
        self.results: dict[str, dict] = {}
        self.notes: list[str] = []
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.row_notes: dict[str, list[str]] = {}
        env = dict(os.environ)
        env.setdefault("LXPY_CGROUP_PARENT", "lxpy-bench")
        env["LXPY_LOG_DIR"] = str(self.dir / "log")
        env["USE_LXC_BRIDGE"] = "false"
        env["PATH"] = f"{lxpy_bin}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        self.env = env
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        self.runner = Runner(self.dir / "log" / "bench.log", env)
        (self.dir / "lxc.conf").write_text(LXC_CONF)
        (self.dir / "lxpy.toml").write_text(LXPY_CONF)
        self.lxpy = Lxpy(self.runner, self.dir / "lxpy", self.dir / "lxpy.toml", lxpy_bin)
        self.python = lxpy_bin / "python3"     # the interpreter lxpy's commands run on
        self.lxc: Lxc | None = None
        if shutil.which("lxc-create"):
            self.lxc = Lxc(self.runner, self.dir / "lxc", self.dir / "lxc.conf")
        self.lxpy.path.mkdir(exist_ok=True)
        if self.lxc:
            self.lxc.path.mkdir(exist_ok=True)
        self.tools: list[Tool] = [t for t in (self.lxpy, self.lxc) if t]
        self.lxpy_priv = LxpyPrivileged(self.runner, self.lxpy.path, self.lxpy.conf, lxpy_bin)

    # ----- helpers
    def want(self, *rows: str) -> bool:
        return any(r in self.rows for r in rows)

    def say(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def alternate(self, n: int | None = None,
                  tools: list[Tool] | None = None) -> Iterator[tuple[int, Tool]]:
        tools = self.tools if tools is None else tools
        for i in range(self.n if n is None else n):
            order = tools if i % 2 == 0 else list(reversed(tools))
            for t in order:
                yield i, t

    def sample(self, row: str, tool: Tool | str, value: float) -> None:
        key = tool if isinstance(tool, str) else tool.key
        self.samples.setdefault(row, {}).setdefault(key, []).append(value)

    def note(self, row: str, msg: str) -> None:
        self.row_notes.setdefault(row, []).append(msg)

    def parallel(self, fn: Callable[[str], object], names: list[str], workers: int = 2) -> None:
        with concurrent.futures.ThreadPoolExecutor(workers) as ex:
            for f in [ex.submit(fn, n) for n in names]:
                f.result()

    def du(self, path: Path) -> int:
        _, p = self.runner.run(["du", "-sxb", str(path)], check=False)
        try:
            return int(p.stdout.split()[0])
        except (IndexError, ValueError):
            return 0

    # ----- groups
    def g_busybox(self) -> None:
        if self.want("create_busybox"):
            self.say("create -t busybox")
            for i, t in self.alternate():
                name = f"lxb-bbc{i}"
                self.sample("create_busybox", t, t.create_busybox(name))
                t.destroy(name)
        running = ("attach_true", "attach_true_x100", "ls_1", "info_1", "config_get",
                   "cgroup_get", "wait_running")
        if not self.want("start_busybox", "stop_busybox", "stop_kill_busybox", "execute_true",
                         *running):
            return
        for t in self.tools:
            t.create_busybox("lxb-bb")
        if self.want("start_busybox", "stop_busybox", "stop_kill_busybox"):
            self.say("start / stop -k / stop busybox")
            for _i, t in self.alternate():
                self.sample("start_busybox", t, t.start("lxb-bb"))
                self.sample("stop_kill_busybox", t, t.kill("lxb-bb"))
                if self.want("stop_busybox"):
                    t.start("lxb-bb")
                    self.sample("stop_busybox", t, t.stop("lxb-bb"))
        if self.want(*running):
            self.say("attach, ls -f, info, config get, cgroup get, wait (1 container, running)")
            for t in self.tools:
                t.start("lxb-bb")
            for _i, t in self.alternate():
                if self.want("attach_true"):
                    self.sample("attach_true", t, t.attach("lxb-bb", ["/bin/true"]))
                if self.want("ls_1"):
                    self.sample("ls_1", t, t.ls())
                if self.want("info_1"):
                    self.sample("info_1", t, t.info("lxb-bb"))
                if self.want("config_get") and t is self.lxpy:
                    self.sample("config_get", t, self.lxpy.config_get("lxb-bb"))
                if self.want("cgroup_get"):
                    self.sample("cgroup_get", t, t.cgroup_get("lxb-bb"))
                if self.want("wait_running"):
                    self.sample("wait_running", t, t.wait("lxb-bb", "RUNNING"))
            if self.want("attach_true_x100"):
                loops = max(1, min(self.n, 3))
                self.note("attach_true_x100", f"{loops} loop(s) of 100")
                for _i, t in self.alternate(loops):
                    t0 = time.perf_counter()
                    for _ in range(100):
                        t.attach("lxb-bb", ["/bin/true"])
                    self.sample("attach_true_x100", t, time.perf_counter() - t0)
            for t in self.tools:
                t.kill("lxb-bb")
        if self.want("execute_true"):
            self.say("execute")
            nspawn = shutil.which("systemd-nspawn") and self.lxc
            if nspawn:
                self.nspawn_prepare()
            for i, t in self.alternate():
                self.sample("execute_true", t, t.execute("lxb-bb", ["/bin/true"]))
                if nspawn and t is self.tools[-1 if i % 2 == 0 else 0]:
                    self.sample("execute_true", "nspawn", self.nspawn_true())
            if not nspawn:
                self.note("execute_true", "systemd-nspawn not installed: no nspawn column")

    def python_start(self) -> None:
        """The baseline: the bare start of the interpreter lxpy's commands run on, sampled
        before each group that has rows measured against it (one untimed start first)."""
        cmd = [str(self.python), "-I", "-S", "-c", "pass"]
        self.runner.run(cmd)
        for _ in range(self.n):
            self.sample("python_start", self.lxpy, self.runner.run(cmd)[0])

    def nspawn_prepare(self) -> None:
        """nspawn runs /bin/true in a copy of LXC's busybox rootfs (an OS tree needs
        os-release; it is added to the copy)."""
        root = self.dir / "nspawn-bb"
        if not root.exists():
            self.runner.run(["cp", "-a", str(self.lxc.rootfs_of("lxb-bb")), str(root)])
            (root / "usr" / "lib").mkdir(parents=True, exist_ok=True)
            (root / "etc" / "os-release").unlink(missing_ok=True)
            (root / "etc" / "os-release").write_text('ID=busybox\nNAME="busybox"\n')

    def nspawn_true(self) -> float:
        return self.runner.run(["systemd-nspawn", "-q", "--register=no", "--keep-unit",
                                "-D", str(self.dir / "nspawn-bb"), "/bin/true"],
                               env={**self.env, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "0"})[0]

    def g_cold(self) -> None:
        self.say("create -t debian, cold (bootstrap; 1 iteration; several minutes)")
        cold = self.dir / "lxpy-cold-cache"
        for t in self.tools:
            name = "lxb-cold"
            if t is self.lxpy:
                el = t.create_debian(name, env={**self.env, "LXPY_CACHE": str(cold)},
                                     timeout=1800)
                self.note("create_debian_cold", f"lxpy cache {self.du(cold) / 1e6:.0f} MB")
            else:
                el = t.create_debian(name, flush=True, timeout=1800)
                self.lxc_cache_ready = True
            self.sample("create_debian_cold", t, el)
            t.destroy(name)
        shutil.rmtree(cold, ignore_errors=True)
        self.note("create_debian_cold", "downloads from deb.debian.org: network-bound")

    def g_density(self) -> None:
        """Issue 17: 50 Debian containers from the cache, created and started together (two
        at a time, as an admin's script would), then each one's systemd waited for; the
        total, and how many came up running rather than degraded."""
        self.ensure_lxc_debian_cache()
        names = [f"lxb-d{i:02d}" for i in range(50)]
        for t in self.tools:
            self.say(f"density: 50 Debian, {t.label}")
            t0 = time.perf_counter()
            self.parallel(lambda n, t=t: (t.create_debian(n, timeout=600), t.start(n)), names)
            states: dict[str, int] = {}
            for n in names:
                st = t.wait_systemd(n, timeout=600)
                states[st] = states.get(st, 0) + 1
            self.sample("density_debian_50", t, time.perf_counter() - t0)
            self.note("density_debian_50", f"{t.label}: " + ", ".join(
                f"{k} {v}" for k, v in sorted(states.items())))
            if t is self.lxpy and states.get("running", 0) != len(names):
                self.results["density_debian_50_degraded"] = {"status": "error"}
                self.note("density_debian_50", "lxpy: not every guest is running: goal missed")
            self.parallel(lambda n, t=t: (t.kill(n), t.destroy(n)), names)

    def ensure_lxc_debian_cache(self) -> None:
        if not self.lxc or getattr(self, "lxc_cache_ready", False):
            return
        cache = Path("/var/cache/lxc/debian") / f"rootfs-{RELEASE}-amd64"
        if not cache.is_dir():
            self.say("LXC has no Debian cache yet: building it once (untimed, minutes)")
        self.lxc.create_debian("lxb-prep", timeout=1800)
        self.lxc.destroy("lxb-prep")
        self.lxc_cache_ready = True

    def g_debian(self) -> None:
        self.ensure_lxc_debian_cache()
        if self.want("create_debian_cached") and not self.want("headline"):
            self.say("create -t debian from cache")
            for i, t in self.alternate():
                name = f"lxb-dc{i}"
                self.sample("create_debian_cached", t, t.create_debian(name))
                t.destroy(name)
        if self.want("headline"):
            self.say("headline: create + start + systemd (its create step is the cached-create "
                     "sample)")
            for i, t in self.alternate():
                name = f"lxb-vps{i}"
                t0 = time.perf_counter()
                created = t.create_debian(name)
                if self.want("create_debian_cached"):
                    self.sample("create_debian_cached", t, created)
                t.start(name)
                state = t.wait_systemd(name)
                self.sample("headline", t, time.perf_counter() - t0)
                self.note("headline", f"{t.label}#{i}: {state}")
                t.kill(name)
                t.destroy(name)
        if self.want("start_debian_init", "start_debian_systemd", "stop_debian"):
            self.say("start / systemd / stop, Debian (after one untimed first boot)")
            for t in self.tools:
                t.create_debian("lxb-deb")
                t.start("lxb-deb")
                t.wait_systemd("lxb-deb")
                t.stop("lxb-deb")
            # systemd-shutdown in the guest calls sync(2), which writes back the whole host's
            # dirty pages: without this, the first timed stop paid for lxc-create's 300 MB.
            os.sync()
            for i, t in self.alternate():
                t0 = time.perf_counter()
                t.start("lxb-deb")
                self.sample("start_debian_init", t, time.perf_counter() - t0)
                state = t.wait_systemd("lxb-deb")
                self.sample("start_debian_systemd", t, time.perf_counter() - t0)
                self.note("start_debian_systemd", f"{t.label}#{i}: {state}")
                self.sample("stop_debian", t, t.stop("lxb-deb"))
            for t in self.tools:
                t.destroy("lxb-deb")

    def g_clone(self) -> None:
        self.ensure_lxc_debian_cache()
        for t in self.tools:
            t.create_debian("lxb-src")
        for row, snap, backend in (("clone_snapshot_debian", True, None),
                                   ("clone_full_debian", False, None),
                                   ("clone_full_debian_dir", False, "dir")):
            if not self.want(row):
                continue
            self.say(row.replace("_", " "))
            for i, t in self.alternate():
                name = f"lxb-cl{i}"
                self.sample(row, t, t.copy("lxb-src", name, snap,
                                           backend if t is self.lxpy else None))
                if i == 0:
                    self.note(row, f"{t.label} clone dir {hsize(self.du(t.path / name))} on disk")
                t.destroy(name)
        for t in self.tools:
            self.note("clone_snapshot_debian",
                      f"{t.label} source dir {hsize(self.du(t.path / 'lxb-src'))} on disk")
        if self.want("clone_snapshot_3g"):
            self.big("lxb-src")
        for t in self.tools:
            t.destroy("lxb-src")

    def big(self, src: str) -> None:
        """Write 3 GB of real blocks into the source (through attach), then snapshot-clone."""
        need = (BIG_MB * 2 + 2048) * 1024 * 1024
        st = os.statvfs(self.dir)
        if st.f_bavail * st.f_frsize < need:
            raise BenchError(f"needs {need >> 30} GB free under {self.dir}")
        self.say(f"snapshot clone of the same rootfs holding a {BIG_MB} MB file")
        for t in self.tools:
            t.start(src)
            t.attach(src, ["/bin/dd", "if=/dev/zero", "of=/var/big.bin", "bs=4M",
                           f"count={BIG_MB // 4}", "conv=fsync", "status=none"], timeout=900)
            t.kill(src)
            self.note("clone_snapshot_3g",
                      f"{t.label} source dir {hsize(self.du(t.path / src))} on disk")
        for i, t in self.alternate():
            name = f"lxb-bigc{i}"
            self.sample("clone_snapshot_3g", t, t.copy(src, name, True))
            t.destroy(name)

    def g_unpriv(self) -> None:
        """Issue 16: unprivileged (the default) against privileged, both lxpy: snapshot clone
        at 300 MB and 3 GB, and start → systemd running."""
        pair: list[Tool] = [self.lxpy, self.lxpy_priv]
        if self.want("unpriv_clone_snapshot", "unpriv_clone_snapshot_3g"):
            self.say("snapshot clone, unprivileged vs privileged")
            for t in pair:
                t.create_debian(f"lxb-us-{t.key}")
            for i, t in self.alternate(tools=pair):
                self.sample("unpriv_clone_snapshot", t,
                            t.copy(f"lxb-us-{t.key}", f"lxb-uc{i}-{t.key}", True))
                t.destroy(f"lxb-uc{i}-{t.key}")
            if self.want("unpriv_clone_snapshot_3g"):
                for t in pair:
                    src = f"lxb-us-{t.key}"
                    t.start(src)
                    t.attach(src, ["/bin/dd", "if=/dev/zero", "of=/var/big.bin", "bs=4M",
                                   f"count={BIG_MB // 4}", "conv=fsync", "status=none"],
                             timeout=900)
                    t.kill(src)
                for i, t in self.alternate(tools=pair):
                    self.sample("unpriv_clone_snapshot_3g", t,
                                t.copy(f"lxb-us-{t.key}", f"lxb-ub{i}-{t.key}", True))
                    t.destroy(f"lxb-ub{i}-{t.key}")
            for t in pair:
                t.destroy(f"lxb-us-{t.key}")
        if self.want("unpriv_start_debian_systemd"):
            self.say("start Debian → systemd running, unprivileged vs privileged")
            for t in pair:
                t.create_debian(f"lxb-ud-{t.key}")
                t.start(f"lxb-ud-{t.key}")
                t.wait_systemd(f"lxb-ud-{t.key}")
                t.stop(f"lxb-ud-{t.key}")
            os.sync()
            for i, t in self.alternate(tools=pair):
                t0 = time.perf_counter()
                t.start(f"lxb-ud-{t.key}")
                state = t.wait_systemd(f"lxb-ud-{t.key}")
                self.sample("unpriv_start_debian_systemd", t, time.perf_counter() - t0)
                self.note("unpriv_start_debian_systemd", f"{t.label}#{i}: {state}")
                t.stop(f"lxb-ud-{t.key}")
            for t in pair:
                t.destroy(f"lxb-ud-{t.key}")

    def g_many(self) -> None:
        rows50 = ("ls_50", "info_50", "ls_200", "info_200", "monitor_rss", "monitor_pss",
                  "start_stop_50")
        if not self.want(*rows50):
            return
        first = "lxb-m000"
        names = [f"lxb-m{i:03d}" for i in range(50)]
        self.say("creating 50 busybox containers per tool (untimed, 2 at a time)")
        for t in self.tools:
            self.parallel(t.create_busybox, names)
        self.say("start 50")
        started: dict[str, float] = {}
        for t in self.tools:
            t0 = time.perf_counter()
            for n in names:
                t.start(n)
            started[t.key] = time.perf_counter() - t0
            self.note("start_stop_50", f"{t.label}: start 50 {started[t.key]:.2f} s")
        time.sleep(2)                        # let 50 idle monitors settle before measuring
        for t in self.tools:
            rss, pss, comms = [], [], set()
            for n in names:
                mon = ppid(t.init_pid(n))
                comms.add(Path(f"/proc/{mon}/comm").read_text().strip())
                r, p = smaps_rollup(mon)
                rss.append(r)
                pss.append(p)
            for v in rss:
                self.sample("monitor_rss", t, v)
            for v in pss:
                self.sample("monitor_pss", t, v)
            self.note("monitor_pss", f"{t.label} monitor = parent of init ({', '.join(comms)});"
                      f" PSS sum {sum(pss):.1f} MB for 50")
        for _i, t in self.alternate():
            self.sample("ls_50", t, t.ls())
            self.sample("info_50", t, t.info(first))
        if self.want("ls_200", "info_200"):
            self.say("defining 150 more (stopped) per tool: a template + 149 snapshot clones")
            clones = [f"lxb-s{i:03d}" for i in range(149)]
            for t in self.tools:
                t.create_busybox("lxb-tpl")
                self.parallel(lambda n, t=t: t.copy("lxb-tpl", n, True), clones)
                self.note("ls_200", f"{t.label}: {len(t.list_names())} defined")
            for _i, t in self.alternate():
                self.sample("ls_200", t, t.ls())
                self.sample("info_200", t, t.info(first))
        self.say("stop 50")
        for t in self.tools:
            t0 = time.perf_counter()
            for n in names:
                t.stop(n)
            stopped = time.perf_counter() - t0
            self.note("start_stop_50", f"{t.label}: stop 50 {stopped:.2f} s")
            self.sample("start_stop_50", t, started[t.key] + stopped)
        self.say("destroying the 200 (untimed)")
        for t in self.tools:
            self.parallel(t.destroy, [n for n in reversed(t.made) if n.startswith("lxb-s")])
            self.parallel(t.destroy, [n for n in t.made if n.startswith("lxb-")])

    # ----- run and report
    def run_groups(self) -> None:
        groups = [g for g in GROUP_ORDER if any(ROW[r].group == g for r in self.rows)]
        for g in groups:
            spent = time.monotonic() - self.t_start
            if self.args.max_minutes and spent > self.args.max_minutes * 60:
                for r in self.rows:
                    if ROW[r].group == g:
                        self.results[r] = {"status": "skipped", "note": "--max-minutes reached"}
                continue
            fn = getattr(self, f"g_{g}")
            t0 = time.perf_counter()
            try:
                if any(ROW[r].group == g and (ROW[r].py_max or r == "python_start")
                       for r in self.rows):
                    self.python_start()
                fn()
            except BenchError as e:
                self.say(f"group {g} failed: {e}")
                for r in self.rows:
                    if ROW[r].group == g and r not in self.samples:
                        self.results[r] = {"status": "error", "note": str(e)}
                    elif ROW[r].group == g:
                        self.note(r, f"group failed after some samples: {e}")
            finally:
                for t in self.tools:
                    left = t.destroy_all()
                    if left:
                        self.notes.append(f"after {g}: could not destroy {left}")
            self.say(f"group {g}: {time.perf_counter() - t0:.0f} s")

    def finish_rows(self) -> list[dict]:
        out = []
        base = self.samples.get("python_start", {}).get("lxpy")
        base = statistics.median(base) if base else None
        for r in self.rows:
            row = ROW[r]
            res = {"id": r, "title": row.title, "unit": row.unit, "goal": row.goal,
                   "goal_max_ratio": row.max_ratio, "goal_abs_max": row.abs_max,
                   "goal_py_max": row.py_max, "tools": {}, "ratio": None, "py_multiple": None,
                   "meets_goal": None, "status": "ok", "notes": self.row_notes.get(r, [])}
            res.update({k: v for k, v in self.results.get(r, {}).items() if k == "status"})
            if r in self.results and "note" in self.results[r]:
                res["notes"] = res["notes"] + [self.results[r]["note"]]
            for tool, s in self.samples.get(r, {}).items():
                res["tools"][tool] = stats(s)
            tl = res["tools"]
            res["vs"] = row.vs
            if "lxpy" in tl and row.vs in tl and tl[row.vs]["median"] > 0:
                res["ratio"] = tl["lxpy"]["median"] / tl[row.vs]["median"]
            if res["status"] == "ok" and "lxpy" not in tl:
                res["status"] = "error"
            met = []                     # every part of the goal that this run can judge
            if row.abs_max is not None and "lxpy" in tl:
                met.append(tl["lxpy"]["median"] <= row.abs_max)
            if row.max_ratio is not None and res["ratio"] is not None:
                met.append(res["ratio"] <= row.max_ratio)
            if row.py_max is not None and base and "lxpy" in tl:
                res["py_multiple"] = tl["lxpy"]["median"] / row.calls / base
                met.append(res["py_multiple"] <= row.py_max)
            if r == "execute_true" and "nspawn" in tl and "lxpy" in tl:
                met.append(tl["lxpy"]["median"] <= tl["nspawn"]["median"])
            if r == "density_debian_50" and "density_debian_50_degraded" in self.results:
                met.append(False)
            if met:
                res["meets_goal"] = all(met)
            if row.lxc and row.vs == "lxc" and "lxc" not in tl and res["status"] == "ok" \
                    and self.lxc is None:
                res["notes"].append("LXC not installed: lxpy only")
            out.append(res)
        extra_flat(out)
        return out


def extra_flat(rows: list[dict]) -> None:
    """A 3 GB snapshot clone is 'flat' when it costs no more than 1.5× the 300 MB one."""
    by = {r["id"]: r for r in rows}
    for big_id, small_id in (("clone_snapshot_3g", "clone_snapshot_debian"),
                             ("unpriv_clone_snapshot_3g", "unpriv_clone_snapshot")):
        big, small = by.get(big_id), by.get(small_id)
        if not big or not small or "lxpy" not in big["tools"] or "lxpy" not in small["tools"]:
            continue
        for tool in ("lxpy", big["vs"]):
            if tool in big["tools"] and tool in small["tools"]:
                f = big["tools"][tool]["median"] / small["tools"][tool]["median"]
                big["notes"].append(f"{tool}: 3 GB / 300 MB = {f:.2f}")
                if tool == "lxpy":
                    big["flat_factor"] = f
                    if big["meets_goal"] is not None:
                        big["meets_goal"] = big["meets_goal"] and f <= 1.5


# --------------------------------------------------------------------------- formatting

def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "MB":
        return f"{v:.2f} MB"
    if v < 1:
        return f"{v * 1000:.1f} ms"
    return f"{v:.2f} s"


def cell(t: dict | None, unit: str) -> str:
    if not t:
        return "—"
    if t["n"] == 1:
        return fmt(t["median"], unit)
    return f"{fmt(t['median'], unit)} ({fmt(t['min'], unit)}–{fmt(t['max'], unit)})"


def verdict(r: dict) -> str:
    if r["status"] != "ok":
        return r["status"]
    if r["meets_goal"] is None:
        return "no goal" if r["goal"] == "—" else "n/a"
    return "MET" if r["meets_goal"] else "missed"


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        u = r["unit"]
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "—"
        mult = f"{r['py_multiple']:.1f}×" if r.get("py_multiple") is not None else "—"
        lx = cell(r["tools"].get(r.get("vs", "lxc")), u)
        if r.get("vs", "lxc") != "lxc" and lx != "—":
            lx = f"lxpy privileged: {lx}"
        if "nspawn" in r["tools"]:
            lx += f"; nspawn {fmt(r['tools']['nspawn']['median'], u)}"
        out.append([r["title"], cell(r["tools"].get("lxpy"), u), lx, ratio, mult, r["goal"],
                    verdict(r)])
    return out


HEAD = ["row", "lxpy median (min–max)", "LXC median (min–max)", "lxpy/LXC",
        "× python_start", "goal", "result"]


def text_table(rows: list[dict]) -> str:
    body = table_rows(rows)
    w = [max(len(x[i]) for x in [HEAD, *body]) for i in range(len(HEAD))]
    lines = ["  ".join(h.ljust(w[i]) for i, h in enumerate(HEAD)),
             "  ".join("-" * x for x in w)]
    lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(x)) for x in body]
    return "\n".join(lines)


def md_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for x, r in zip(table_rows(rows), rows, strict=True):
        if r["id"] == "headline":
            x[0] = f"**{x[0]}**"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in x) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no plot"
    rs = [r for r in rows if r["ratio"] is not None]
    if not rs:
        return "no ratios to plot"
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rs) + 1.5))
    ys = range(len(rs))
    colors = ["tab:gray" if r["goal_max_ratio"] is None else "tab:green" if r["meets_goal"]
              else "tab:red" for r in rs]
    ax.barh(list(ys), [r["ratio"] for r in rs], color=colors)
    for y, r in zip(ys, rs, strict=True):
        if r["goal_max_ratio"] is not None:
            ax.plot([r["goal_max_ratio"]] * 2, [y - 0.4, y + 0.4], color="black", lw=2)
        ax.text(r["ratio"], y, f" {r['ratio']:.2f}", va="center", fontsize=8)
    ax.axvline(1.0, color="gray", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(list(ys), [r["title"][:60] for r in rs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("lxpy / LXC, ratio of medians (log; black tick = goal; green met, red "
                  "missed; gray: no goal against LXC)")
    ax.set_title("lxpy vs LXC on this machine")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------- machine, deps

def machine() -> dict:
    def read(p: str) -> str:
        try:
            return Path(p).read_text()
        except OSError:
            return ""
    model = next((ln.split(":", 1)[1].strip() for ln in read("/proc/cpuinfo").splitlines()
                  if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in read("/proc/meminfo").splitlines()
                if ln.startswith("MemTotal")), "0")
    v1, v2 = [], []
    for ln in read("/proc/self/mounts").splitlines():
        f = ln.split()
        if f[2] == "cgroup":
            v1.append(f[1].rsplit("/", 1)[-1])
        elif f[2] == "cgroup2":
            ctl = read(f"{f[1]}/cgroup.controllers").split()
            v2.append(f"{f[1]} (controllers: {' '.join(ctl) or 'none'})")
    layout = ("hybrid" if v1 and v2 else "v1" if v1 else "unified (v2)" if v2 else "?")
    init = read("/proc/1/comm").strip()

    def cmd(*c: str) -> str:
        try:
            return subprocess.run(c, capture_output=True, text=True, timeout=20,
                                  cwd=REPO).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gb": round(int(mem) / 2**20, 1),
            "kernel": platform.release(), "os": "Debian " + read("/etc/debian_version").strip(),
            "cgroup_layout": layout, "cgroup_v1": v1, "cgroup_v2": v2, "pid1": init,
            "python": platform.python_version(),
            "lxc_version": cmd("lxc-start", "--version") or None,
            "nspawn_version": (cmd("systemd-nspawn", "--version").splitlines() or [None])[0],
            "lxpy_commit": cmd("git", "rev-parse", "--short", "HEAD"),
            "loadavg_start": read("/proc/loadavg").split()[:3]}


def ensure_deps(install: bool, want_nspawn: bool) -> list[str]:
    """Install LXC (+ templates, debootstrap, rsync), systemd-container and matplotlib when
    missing. Returns notes about what is still missing."""
    notes: list[str] = []
    pkgs = []
    if not shutil.which("lxc-create") or not Path("/usr/share/lxc/templates/lxc-debian").exists():
        pkgs += APT_LXC
    if want_nspawn and not shutil.which("systemd-nspawn"):
        pkgs += APT_NSPAWN
    if pkgs and install:
        print(f"installing {' '.join(pkgs)} (apt)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if p.returncode:
                notes.append(f"apt-get install {' '.join(pkgs)} failed: "
                             f"{p.stderr.strip().splitlines()[-1:]}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if install:
            print("installing matplotlib (pip, into this venv)", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"],
                           capture_output=True)
    # LXC's own bridge stays off: the bench's containers have no network at all.
    default = Path("/etc/default/lxc-net")
    if install and default.exists() and 'USE_LXC_BRIDGE="true"' in default.read_text():
        default.write_text(default.read_text().replace('USE_LXC_BRIDGE="true"',
                                                       'USE_LXC_BRIDGE="false"'))
        notes.append("set USE_LXC_BRIDGE=false in /etc/default/lxc-net")
    if not shutil.which("lxc-create"):
        notes.append("LXC is not installed: lxpy-only rows")
    return notes


# --------------------------------------------------------------------------- lxpy itself

def _checkout_files() -> list[str]:
    r = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], capture_output=True)
    if r.returncode == 0:
        return [f for f in r.stdout.decode().split("\0") if f]
    skip = {".venv", ".git", "build", "dist", "results"}
    return [str(p.relative_to(REPO)) for p in REPO.rglob("*")
            if (p.is_file() or p.is_symlink()) and not skip & set(p.relative_to(REPO).parts)]


def install_lxpy(bdir: Path) -> tuple[Path, str]:
    """lxpy as an admin has it: installed by pip, non-editable, into the bench's own venv
    DIR/venv, from this checkout (as it is, uncommitted changes included), its commands the
    console scripts pip writes. The venv and its dependencies stay for the next run; lxpy
    itself is reinstalled every time (~3 s; ~12 s the first time)."""
    t0 = time.monotonic()
    venv = bdir / "venv"
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
           "--no-build-isolation"]
    src = bdir / "src"    # a clean copy: no stale build/ of the checkout gets into the wheel
    shutil.rmtree(src, ignore_errors=True)
    for f in _checkout_files():
        p = REPO / f
        if p.is_file() and not p.is_symlink():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src / f)
        elif p.is_symlink():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(p), src / f)

    def run(cmd: list[str]) -> None:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            err = [ln for ln in (r.stderr or r.stdout).splitlines()
                   if ln.strip() and "WARNING: Location" not in ln]
            raise BenchError(f"installing lxpy into {venv}: {' '.join(cmd[:3])} failed: "
                             f"{err[-1] if err else r.returncode}")
    try:
        first = not (venv / "bin" / "lxpy-ls").exists()
        if first:
            shutil.rmtree(venv, ignore_errors=True)
            run([BASE_PYTHON, "-m", "venv", str(venv)])
            run(pip[:-1] + ["wheel"])       # bdist_wheel, for --no-build-isolation
            run(pip + [str(src)])
        else:
            run(pip + ["--no-deps", "--force-reinstall", str(src)])
    finally:
        shutil.rmtree(src, ignore_errors=True)
    r = subprocess.run([str(venv / "bin" / "python"), "-I", "-c",
                        "import lxpy; print(lxpy.__file__)"], capture_output=True, text=True,
                       cwd="/")
    where = r.stdout.strip()
    if r.returncode or not where.startswith(str(venv)):
        raise BenchError(f"lxpy in {venv} is not the installed copy ({where or r.stderr})")
    return venv / "bin", (f"lxpy installed non-editable into {venv} "
                          f"({time.monotonic() - t0:.1f} s{', new venv' if first else ''})")


# --------------------------------------------------------------------------- cleanup

def leftover_mounts(under: Path) -> list[str]:
    out = []
    for ln in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = ln.split()[4].replace("\\040", " ")
        if mp == str(under) or mp.startswith(str(under) + "/"):
            out.append(mp)
    return out


def cleanup(bench: Bench | None, bdir: Path, keep_dir: bool) -> list[str]:
    problems: list[str] = []
    if bench:
        for t in bench.tools:
            try:
                problems += t.destroy_all()
            except (BenchError, OSError) as e:
                problems.append(f"{t.label}: {e}")
    mounts = leftover_mounts(bdir)
    for mp in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    if mounts:
        problems.append(f"unmounted leftovers: {mounts}")
    # Empty cgroups left by the runs: lxpy's bench parent (when the bench chose it) and
    # LXC's lxc.pivot (LXC 5 leaves it on v1 hierarchies). rmdir only removes empty ones.
    names = ["lxc.pivot"] + (["lxpy-bench"] if "LXPY_CGROUP_PARENT" not in os.environ else [])
    for name in names:
        for cg in Path("/sys/fs/cgroup").glob(f"*/{name}"):
            for sub in sorted(cg.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                try:
                    sub.rmdir()
                except OSError:
                    pass
    if not keep_dir and not leftover_mounts(bdir):
        for sub in ("lxpy", "lxc", "nspawn-bb", "lxpy-cold-cache"):
            shutil.rmtree(bdir / sub, ignore_errors=True)
    return problems


# --------------------------------------------------------------------------- main

def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: 1 iteration of the cheap busybox rows")
    p.add_argument("--full", action="store_true",
                   help="also the cold Debian create (bootstrap: minutes, 1 iteration)")
    p.add_argument("--rows", help="comma-separated row ids (see --list)")
    p.add_argument("--iterations", "-n", type=int, default=5)
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"bench dir ({DEFAULT_DIR})")
    p.add_argument("--json", type=Path, default=RESULTS / "last.json")
    p.add_argument("--plot", type=Path, default=RESULTS / "last.png")
    p.add_argument("--no-install", action="store_true", help="install nothing (apt, pip)")
    p.add_argument("--no-lxc", action="store_true", help="lxpy rows only")
    p.add_argument("--dev", action="store_true",
                   help="measure the checkout's editable .venv instead of installing lxpy "
                   "into DIR/venv (not what an admin runs)")
    p.add_argument("--readme", action="store_true",
                   help="write this run's table into bench/README.md")
    p.add_argument("--readme-from", type=Path, metavar="JSON",
                   help="write the table of a saved run (its JSON) into bench/README.md, "
                        "run nothing")
    p.add_argument("--max-minutes", type=float, default=0,
                   help="skip the remaining groups after this long")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    a = p.parse_args(argv)
    if a.list:
        for r in ROWS:
            print(f"{r.id:22} {r.goal:30} {r.title}")
        raise SystemExit(0)
    if a.rows:
        sel = [x.strip() for x in a.rows.split(",") if x.strip()]
        bad = [x for x in sel if x not in ROW]
        if bad:
            p.error(f"unknown row(s) {', '.join(bad)}: bench/run --list shows them")
    elif a.quick:
        sel = [r.id for r in ROWS if r.quick]
    else:
        sel = [r.id for r in ROWS if a.full or not r.full_only]
    if any(ROW[x].py_max for x in sel):
        sel.append("python_start")       # their goal's baseline, measured in the same run
    a.selected = [r.id for r in ROWS if r.id in sel]
    if a.quick:
        a.iterations = 1
    if a.iterations < 1:
        p.error("--iterations must be at least 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.readme_from:
        try:
            write_readme(json.loads(args.readme_from.read_text()))
        except (OSError, ValueError, KeyError) as e:
            print(f"bench/run: cannot use {args.readme_from}: {e}", file=sys.stderr)
            return 1
        print(f"table of {args.readme_from} written into {README}")
        return 0
    if os.geteuid() != 0:
        print("bench/run: needs root (sudo bench/run)", file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.UTC)
    deps_notes = ensure_deps(not args.no_install,
                             "execute_true" in args.selected and not args.no_lxc)
    args.dir.mkdir(parents=True, exist_ok=True)
    lock = (args.dir / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"bench/run: another bench runs in {args.dir} (use --dir)", file=sys.stderr)
        return 1
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    bench: Bench | None = None
    interrupted = None
    rc = 0
    lxpy_bin, lxpy_note = VENV_BIN, "lxpy from the checkout's editable .venv (--dev)"
    if not args.dev:
        print("installing lxpy from this checkout into the bench's venv", flush=True)
        try:
            lxpy_bin, lxpy_note = install_lxpy(args.dir)
        except (BenchError, OSError) as e:
            print(f"bench/run: {e}", file=sys.stderr)
            return 1
    deps_notes.append(lxpy_note)
    try:
        bench = Bench(args, lxpy_bin)
        if args.no_lxc:
            bench.tools = [bench.lxpy]
            bench.lxc = None
        bench.notes += deps_notes
        bench.t_start = time.monotonic()
        m = machine()
        print(f"lxpy bench: {len(args.selected)} rows, {args.iterations} iteration(s), "
              f"dir {args.dir}; {m['cpus']} CPUs, kernel {m['kernel']}, "
              f"cgroups {m['cgroup_layout']}; LXC {m['lxc_version'] or 'absent'}", flush=True)
        for n in deps_notes:
            print(f"note: {n}", flush=True)
        bench.run_groups()
    except Interrupted as e:
        interrupted = str(e)
        rc = 130
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        print("cleaning up", flush=True)
        problems = cleanup(bench, args.dir, keep_dir=False)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
    if interrupted:
        print(f"interrupted ({interrupted}); cleaned up{': ' + str(problems) if problems else ''}",
              file=sys.stderr)
        return rc
    rows = bench.finish_rows()
    m["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    doc = {"version": 1, "started": started.isoformat(timespec="seconds"),
           "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "mode": "quick" if args.quick else "full" if args.full else "default",
           "iterations": args.iterations, "machine": m, "notes": bench.notes,
           "cleanup_problems": problems, "rows": rows,
           "summary": {
               "met": [r["id"] for r in rows if r["meets_goal"] is True],
               "missed": [r["id"] for r in rows if r["meets_goal"] is False],
               "no_goal": [r["id"] for r in rows if r["meets_goal"] is None
                           and r["status"] == "ok"],
               "not_run": [r["id"] for r in rows if r["status"] != "ok"]}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.rename(args.json)
    plot_note = plot(rows, args.plot)
    print()
    print(text_table(rows))
    print()
    s = doc["summary"]
    print(f"goals met ({len(s['met'])}): {', '.join(s['met']) or 'none'}")
    print(f"goals missed ({len(s['missed'])}): {', '.join(s['missed']) or 'none'}")
    if s["not_run"]:
        print(f"not run ({len(s['not_run'])}): " + "; ".join(
            f"{r['id']}: {(r['notes'] or ['?'])[-1]}" for r in rows if r["status"] != "ok"))
    for r in rows:
        for n in r["notes"]:
            print(f"  {r['id']}: {n}")
    for n in bench.notes + problems:
        print(f"note: {n}")
    print(f"json: {args.json}" + (f"; plot: {args.plot}" if not plot_note else f"; {plot_note}"))
    if args.readme:
        write_readme(doc)
        print(f"table written into {README}")
    return 1 if problems else 0


def write_readme(doc: dict) -> None:
    m = doc["machine"]
    block = "\n".join([
        "<!-- results:begin (written by bench/run --readme) -->",
        f"Run {doc['started']} → {doc['finished']} ({doc['mode']} mode, "
        f"{doc['iterations']} iterations, lxpy {m['lxpy_commit']}, LXC {m['lxc_version']}, "
        f"{m['nspawn_version'] or 'no nspawn'}).",
        "",
        f"Machine: {m['cpus']} × {m['cpu_model']}, {m['mem_gb']} GB RAM, {m['os']}, kernel "
        f"{m['kernel']}, PID 1 `{m['pid1']}`; cgroups {m['cgroup_layout']}: v1 "
        f"{', '.join(m['cgroup_v1']) or 'none'}; v2 {'; '.join(m['cgroup_v2']) or 'none'}. "
        f"Load average {' '.join(m['loadavg_start'])} at the start, "
        f"{' '.join(m['loadavg_end'])} at the end (other engineers' tests share the machine).",
        "",
        md_table(doc["rows"]),
        "",
        f"Goals met: {', '.join(doc['summary']['met']) or 'none'}.  ",
        f"Goals missed: {', '.join(doc['summary']['missed']) or 'none'}.  ",
        f"Not run: {', '.join(doc['summary']['not_run']) or 'none'}.",
        "",
        "Notes from the run:",
        "",
        *[f"- `{r['id']}`: {n}" for r in doc["rows"] for n in r["notes"]
          if not re.match(r".*#\d+: (running|degraded)$", n)],
        *[f"- {n}" for n in doc["notes"]],
        "<!-- results:end -->",
    ])
    text = README.read_text() if README.exists() else ""
    pat = re.compile(r"<!-- results:begin.*?<!-- results:end -->", re.S)
    text = pat.sub(lambda _m: block, text) if pat.search(text) else text + "\n" + block + "\n"
    tmp = README.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(README)


if __name__ == "__main__":
    sys.exit(main())

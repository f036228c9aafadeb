"""systemd integration: the shipped units pass `systemd-analyze verify` (and a broken one does
not), tmpfiles makes /run/lxpy, and `lxpy-start -F` speaks sd_notify to a socket made here:
READY only once the container's init runs, STOPPING at stop, exit 0 after a stop by hand.

systemd is not PID 1 on these machines: the units are verified in a temporary root that holds
a copy of the system's own units and the real lxpy entry points at /usr/bin."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, wait_for

UNITS = REPO / "packaging" / "systemd"
UNIT_FILES = ["lxpy.service", "lxpy-net.service", "lxpy@.service"]
SYSTEM_UNITS = Path("/lib/systemd/system")

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze missing (apt-get install systemd)")


def unit_commands(text: str) -> list[str]:
    """The programs the Exec*= lines of a unit run (prefixes like '-' stripped)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^Exec\w+=\s*[-@:+!]*(\S+)", line)
        if m:
            out.append(m.group(1))
    return out


def unit_values(text: str) -> dict[str, str]:
    vals = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            vals[k.strip()] = v.strip()
    return vals


def make_root(tmp_path: Path, units: dict[str, str]) -> Path:
    """A root with the system's units, the given lxpy units and the real entry points."""
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name, text in units.items():
        (etc / name).write_text(text)
    bindir = root / "usr/bin"
    bindir.mkdir(parents=True)
    from lxpy.cli import COMMANDS
    for verb in COMMANDS:
        # the same console-script pip writes: the real command, not a stub
        p = bindir / f"lxpy-{verb}"
        p.write_text(f"#!{sys.executable}\nimport sys\nfrom lxpy.cli import scripts\n"
                     f"sys.exit(scripts.{verb}())\n")
        p.chmod(0o755)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", *units],
                          capture_output=True, text=True, timeout=60, cwd=root)


def shipped() -> dict[str, str]:
    return {n: (UNITS / n).read_text() for n in UNIT_FILES}


@needs_analyze
def test_shipped_units_verify_clean(tmp_path):
    root = make_root(tmp_path, shipped())
    r = verify(root, "lxpy.service", "lxpy-net.service", "lxpy@web1.service")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "" and r.stdout.strip() == "", r.stderr


@needs_analyze
@pytest.mark.parametrize("unit,instance", [("lxpy@.service", "lxpy@web1.service"),
                                           ("lxpy.service", "lxpy.service"),
                                           ("lxpy-net.service", "lxpy-net.service")])
def test_broken_exec_start_is_caught(tmp_path, unit, instance):
    units = shipped()
    units[unit] = re.sub(r"^ExecStart=\S+", "ExecStart=/usr/bin/lxpy-no-such-command",
                         units[unit], flags=re.M)
    root = make_root(tmp_path, units)
    r = verify(root, instance)
    assert r.returncode != 0
    assert "/usr/bin/lxpy-no-such-command" in r.stderr


@needs_analyze
def test_unknown_directive_is_reported(tmp_path):
    units = shipped()
    units["lxpy@.service"] = units["lxpy@.service"].replace("[Service]",
                                                            "[Service]\nTyep=notify")
    r = verify(make_root(tmp_path, units), "lxpy@web1.service")
    assert "Tyep" in r.stderr


def test_units_run_commands_the_package_ships():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for name in UNIT_FILES:
        for cmd in unit_commands((UNITS / name).read_text()):
            assert cmd.startswith("/usr/bin/"), (name, cmd)
            assert Path(cmd).name in scripts, f"{name} runs {cmd}, which pyproject.toml lacks"


def test_template_unit_settings():
    v = unit_values((UNITS / "lxpy@.service").read_text())
    assert v["Type"] == "notify"
    assert v["ExecStart"] == "/usr/bin/lxpy-start -F -n %i"
    assert v["ExecStop"].lstrip("-") == "/usr/bin/lxpy-stop -n %i"
    assert v["Delegate"] == "yes" and v["KillMode"] == "mixed"
    from lxpy.config.schema import BY_KEY
    stop_default = BY_KEY["init.stop_timeout"].default
    assert int(v["TimeoutStopSec"].rstrip("s")) >= stop_default + 30
    auto = unit_values((UNITS / "lxpy.service").read_text())
    assert auto["Type"] == "oneshot" and auto["RemainAfterExit"] == "yes"
    assert "lxpy-net.service" in auto["After"]


def test_tmpfiles_makes_run_dir(tmp_path):
    if shutil.which("systemd-tmpfiles") is None:
        pytest.skip("systemd-tmpfiles missing (apt-get install systemd)")
    root = tmp_path / "root"
    root.mkdir()
    conf = UNITS / "tmpfiles.d" / "lxpy.conf"
    r = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    st = (root / "run/lxpy").stat()
    assert oct(st.st_mode & 0o7777) == "0o755"


# -- lxpy-start -F under a notify socket -----------------------------------------------

class NotifySocket:
    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, timeout: float = 60, proc=None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if key in m:
                    return m
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"lxpy-start -F exited {proc.returncode} before {key}; "
                                     f"got {self.messages}")
            self.sock.settimeout(min(0.5, max(0.1, deadline - time.monotonic())))
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()
                                      if "=" in line))
        raise AssertionError(f"no {key} in {timeout} s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


def info(lxpy, name: str) -> dict:
    return json.loads(lxpy("info", "-n", name, "--json").stdout)


@pytest.fixture
def bb(lxpy, unique):
    lxpy("create", "-n", unique, "-t", "busybox")
    return unique


def unit_argv(key: str, name: str, lxpath: Path) -> list[str]:
    """lxpy@NAME.service's Exec line as systemd would run it, on our lxpath and binaries."""
    line = unit_values((UNITS / "lxpy@.service").read_text())[key].lstrip("-@:+!")
    argv = line.replace("%i", name).split()
    assert argv[0].startswith("/usr/bin/lxpy-")
    return [str(BIN / Path(argv[0]).name), "-P", str(lxpath), *argv[1:]]


def test_start_foreground_notifies_ready_after_init_and_stopping(lxpy, lxpath, bb, tmp_path):
    ns = NotifySocket(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(ns.path)}
    err = open(tmp_path / "stderr", "w+")
    # the unit's own ExecStart (lxpy-start -F -n %i)
    proc = subprocess.Popen(unit_argv("ExecStart", bb, lxpath),
                            env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        ready = ns.wait_for("READY", proc=proc)
        # READY came once init runs: the state says so and the pid is the container's init
        # (no longer the Python that set the namespaces up)
        i = info(lxpy, bb)
        assert i["state"] == "RUNNING" and i["pid"]
        cmdline = Path(f"/proc/{i['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"python" not in cmdline[0] and cmdline[0].endswith(b"init"), cmdline
        assert ready["READY"] == "1"
        assert not any("STOPPING" in m for m in ns.messages)
        assert proc.poll() is None
        # the container started by the unit is a container like any other
        assert bb in lxpy("ls", "--running", "-1").stdout.split()
        # a stop by hand: STOPPING is sent and lxpy-start -F exits 0 (the unit: inactive)
        lxpy("stop", "-n", bb, "-t", "20")
        ns.wait_for("STOPPING", proc=None)
        assert proc.wait(timeout=60) == 0, (tmp_path / "stderr").read_text()
        assert info(lxpy, bb)["state"] == "STOPPED"
        # systemd then runs ExecStop on the stopped container: "not running" (2), which the
        # unit's "-" prefix accepts
        r = subprocess.run(unit_argv("ExecStop", bb, lxpath), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr
    finally:
        if proc.poll() is None:
            lxpy("stop", "-n", bb, "-k", check=False)
            proc.wait(timeout=60)
        ns.close()
        err.close()


def test_start_foreground_refuses_a_container_started_by_hand(lxpy, bb, tmp_path):
    lxpy("start", "-n", bb)
    try:
        pid = info(lxpy, bb)["pid"]
        ns = NotifySocket(tmp_path / "notify")
        try:
            r = subprocess.run([str(BIN / "lxpy-start"), "-P", str(lxpy.lxpath), "-F", "-n", bb],
                               env={**os.environ, "NOTIFY_SOCKET": str(ns.path)},
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 1
            assert "already running" in r.stderr and "Traceback" not in r.stderr
            ns.sock.settimeout(0.2)
            with pytest.raises(TimeoutError):     # no READY for a start that did not happen
                ns.sock.recv(4096)
        finally:
            ns.close()
        assert info(lxpy, bb)["pid"] == pid      # the running one is left alone
    finally:
        lxpy("stop", "-n", bb, "-k", check=False)


def test_no_notify_socket_no_notification(lxpy, lxpath, bb):
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    proc = subprocess.Popen([str(BIN / "lxpy-start"), "-P", str(lxpath), "-F", "-n", bb],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is not None or info(lxpy, bb)["state"] == "RUNNING",
                 60, f"{bb} running")
        assert proc.poll() is None
        lxpy("stop", "-n", bb, "-t", "20")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            lxpy("stop", "-n", bb, "-k", check=False)
            proc.wait(timeout=60)


def test_sigterm_to_the_main_process_is_a_clean_stop(lxpy, lxpath, bb, tmp_path):
    """KillMode=mixed: after ExecStop (or at shutdown) systemd SIGTERMs the main process."""
    ns = NotifySocket(tmp_path / "notify")
    proc = subprocess.Popen(unit_argv("ExecStart", bb, lxpath),
                            env={**os.environ, "NOTIFY_SOCKET": str(ns.path)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        ns.wait_for("READY", proc=proc)
        proc.terminate()
        ns.wait_for("STOPPING")
        assert proc.wait(timeout=60) == 0
        assert info(lxpy, bb)["state"] == "STOPPED"
    finally:
        if proc.poll() is None:
            lxpy("stop", "-n", bb, "-k", check=False)
            proc.wait(timeout=60)
        ns.close()

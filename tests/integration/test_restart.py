"""autostart.restart against the real kernel: the monitor brings back a container whose init
died (kill -9, a failing exit), not one powered off from inside or stopped with lxpy-stop,
backs off, gives up after autostart.restart_limit, and writes why in lxpy.log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lxpy.paths import run_dir
from lxpy.runtime import proto
from tests.integration.test_runtime import (assert_nothing_left, in_ct, info_state,
                                            make_busybox, state_file)


class Events:
    """The monitor's state messages (subscribe): each transition as it happens, EOF when the
    monitor exits."""

    def __init__(self, lxpath: Path, name: str):
        self.conn, first = proto.request(str(run_dir(lxpath, name) / "monitor.sock"),
                                         "subscribe", io_timeout=60)
        self.seen = [first[1]]
        self.queue = list(self.conn.reader.pending)

    def next(self) -> dict[str, str] | None:
        """The next state message; None once the monitor exited."""
        while not self.queue:
            data = self.conn.recv()
            if not data:
                return None
            self.queue += self.conn.reader.feed(data)
        kind, msg = self.queue.pop(0)
        self.seen.append(msg)
        return msg

    def until(self, pred, what: str) -> dict[str, str] | None:
        while True:
            msg = self.next()
            if msg is None or pred(msg):
                return msg
            assert msg.get("state") in ("RUNNING", "STOPPING", "STARTING"), \
                f"unexpected state waiting for {what}: {self.seen}"

    def close(self) -> None:
        self.conn.close()


def history(lxpath: Path, name: str) -> list[str]:
    log = lxpath / name / "log" / "lxpy.log"
    return [line.split(" ", 2)[2] for line in log.read_text().splitlines()]


def started(lxpy, lxpath: Path, name: str, autostart: str) -> tuple[str, Events]:
    """A busybox container with these [autostart] settings, started: its init's pid, and its
    monitor's events from then on."""
    make_busybox(lxpath, name, f"[autostart]\n{autostart}")
    lxpy("start", "-n", name)
    return state_file(lxpath, name)["pid"], Events(lxpath, name)


def restarted(ev: Events, old_pid: str) -> dict[str, str]:
    msg = ev.until(lambda m: m.get("state") == "RUNNING" and m.get("pid") not in ("", old_pid),
                   "a new init")
    assert msg is not None, f"the monitor exited instead of restarting: {ev.seen}"
    return msg


def test_kill9_restarts_then_lxpy_stop_stays_stopped(lxpy, lxpath, unique):
    pid, ev = started(lxpy, lxpath, unique, 'restart = "on-failure"\nrestart_delay = 0\n')
    try:
        os.kill(int(pid), signal.SIGKILL)
        new = restarted(ev, pid)["pid"]
    finally:
        ev.close()
    # the container is back and works: a new boot of its init
    r = in_ct(lxpath, unique, "echo alive; cat /proc/1/comm")
    assert r.stdout.split() == ["alive", "init"], r
    events = history(lxpath, unique)
    assert f"init (pid {pid}) was killed by SIGKILL" in events
    assert ("restarting in 0 s (autostart.restart = on-failure: init was killed by SIGKILL; "
            "restart 1 of at most 5 within 300 s)") in events, events
    assert events[-1] == f"restarted: init pid {new}", events
    info = lxpy("info", "-n", unique, "--no-size").stdout.splitlines()
    assert [line.split(":", 1)[1].strip() for line in info if line.startswith("Restarts:")] \
        == ["1 (autostart.restart = on-failure; last: init was killed by SIGKILL)"], info
    # lxpy-stop: stopped for good, whatever the policy
    lxpy("stop", "-n", unique, "-t", "10")
    assert info_state(lxpy, unique) == "STOPPED"
    events = history(lxpath, unique)
    assert events[-1] == "stopped" and not any(e.startswith("restart") for e in
                                               events[events.index(f"restarted: init pid {new}")
                                                      + 1:]), events
    assert_nothing_left(lxpath, unique)


def test_poweroff_inside_stays_stopped(lxpy, lxpath, unique):
    pid, ev = started(lxpy, lxpath, unique, 'restart = "on-failure"\nrestart_delay = 0\n')
    try:
        # busybox: SIGUSR2 to its init, whose shutdown may SIGTERM this shell before it
        # exits (its status tells nothing; the history below does)
        in_ct(lxpath, unique, "poweroff")
        while ev.next() is not None:                # the monitor exits: EOF
            pass
    finally:
        ev.close()
    assert info_state(lxpy, unique) == "STOPPED"
    events = history(lxpath, unique)
    assert events[-3:] == [
        f"init (pid {pid}) powered off (reboot(2) in its pid namespace)",
        "not restarted: autostart.restart = on-failure and init powered off, which is no "
        "failure", "stopped"], events
    assert_nothing_left(lxpath, unique)


@pytest.mark.parametrize("policy,code,comes_back", [
    ("on-failure", 3, True), ("on-failure", 0, False), ("always", 0, True)])
def test_init_exit_status_and_policy(lxpy, lxpath, unique, policy, code, comes_back):
    """Init exits once with code (its first boot, when the test says go), then runs on: back
    only when the policy says so (a non-zero exit is a failure; always: any exit but
    lxpy-stop's)."""
    d = make_busybox(lxpath, unique, f'[autostart]\nrestart = "{policy}"\nrestart_delay = 0\n',
                     init='["/bin/sh", "-c", "test -e /root/booted || { touch /root/booted; '
                          f'read x < /root/go; exit {code}; }}; exec /sbin/init"]')
    go = d / "rootfs/root/go"
    os.mkfifo(go, 0o666)
    lxpy("start", "-n", unique)
    ev = Events(lxpath, unique)
    try:
        pid = ev.seen[0]["pid"]
        with open(go, "w") as f:
            f.write("go\n")
        if comes_back:
            restarted(ev, pid)
        else:
            while ev.next() is not None:
                pass
    finally:
        ev.close()
    events = history(lxpath, unique)
    how = f"exited with status {code}"
    assert f"init (pid {pid}) {how}" in events, events
    if comes_back:
        assert info_state(lxpy, unique) == "RUNNING"
        assert events[-2].startswith(f"restarting in 0 s (autostart.restart = {policy}: init "
                                     f"{how}; restart 1 of"), events
        assert events[-1].startswith("restarted: init pid"), events
        lxpy("stop", "-n", unique, "-k")
    else:
        assert info_state(lxpy, unique) == "STOPPED"
        assert events[-2:] == [f"not restarted: autostart.restart = {policy} and init {how}, "
                               "which is no failure", "stopped"], events
    assert_nothing_left(lxpath, unique)


def test_backs_off_and_gives_up_at_the_limit(lxpy, lxpath, unique):
    pid, ev = started(lxpy, lxpath, unique, 'restart = "on-failure"\nrestart_delay = 1\n'
                      'restart_limit = "2/60s"\n')
    waited = []
    try:
        for _ in range(2):
            t0 = time.monotonic()
            os.kill(int(pid), signal.SIGKILL)
            pid = restarted(ev, pid)["pid"]
            waited.append(time.monotonic() - t0)
        os.kill(int(pid), signal.SIGKILL)           # the 3rd death within 60 s: too many
        while ev.next() is not None:
            pass
    finally:
        ev.close()
    # back-off: 1 s, then 2 s (doubled); not much more
    assert 1 <= waited[0] < 1.9 and 2 <= waited[1] < 2.9, waited
    assert info_state(lxpy, unique) == "STOPPED"
    events = history(lxpath, unique)
    assert [e.split(" (")[0] for e in events if e.startswith("restarting")] == \
        ["restarting in 1 s", "restarting in 2 s"], events
    assert events[-2:] == ['gave up restarting: init died 3 times within 60 s '
                           '(autostart.restart_limit = "2/60s"); the container stays stopped',
                           "stopped"], events
    assert_nothing_left(lxpath, unique)
    # a new lxpy-start begins a new count
    lxpy("start", "-n", unique)
    assert info_state(lxpy, unique) == "RUNNING"
    lxpy("stop", "-n", unique, "-k")
    assert_nothing_left(lxpath, unique)


def test_lxpy_stop_during_the_back_off_cancels_the_restart(lxpy, lxpath, unique):
    pid, ev = started(lxpy, lxpath, unique, 'restart = "always"\nrestart_delay = 30\n')
    try:
        os.kill(int(pid), signal.SIGKILL)
        assert ev.until(lambda m: m.get("state") == "STARTING", "the back-off") is not None
        t0 = time.monotonic()
        lxpy("stop", "-n", unique)
        assert time.monotonic() - t0 < 10     # not after the 30 s back-off
    finally:
        ev.close()
    assert info_state(lxpy, unique) == "STOPPED"
    events = history(lxpath, unique)
    assert events[-2:] == ["restart cancelled: stop requested", "stopped"], events
    assert_nothing_left(lxpath, unique)


def test_bad_restart_settings_are_refused(lxpy, lxpath, unique):
    make_busybox(lxpath, unique)
    for key, value, says in (("autostart.restart", "sometimes", "is not one of: no, on-failure"),
                             ("autostart.restart_limit", "5", "is not a restart limit"),
                             ("autostart.restart_delay", "-1", "out of range")):
        r = lxpy("config", "-n", unique, "set", key, value, check=False)
        assert r.returncode == 1 and says in r.stderr and len(r.stderr.splitlines()) <= 2, r
        assert "Traceback" not in r.stderr
    assert "restart" not in (lxpath / unique / "config.toml").read_text()


def test_under_lxpy_at_service_the_monitor_restarts_and_systemd_does_not(lxpy, lxpath, unique,
                                                                          tmp_path):
    """lxpy@.service has Restart=no: the monitor (the unit's main process) restarts the
    container itself, so the unit stays active across a restart (a new READY=1), and when it
    gives up it exits 1: the unit is failed, with the reason in the journal (its stderr)."""
    from tests.integration.test_systemd import UNITS, NotifySocket, unit_argv, unit_values
    assert unit_values((UNITS / "lxpy@.service").read_text())["Restart"] == "no"
    make_busybox(lxpath, unique, '[autostart]\nrestart = "on-failure"\nrestart_delay = 0\n'
                 'restart_limit = "1/60s"\n')
    with contextlib.ExitStack() as stack:
        ns = NotifySocket(tmp_path / "notify")
        stack.callback(ns.close)
        err = stack.enter_context(open(tmp_path / "stderr", "w+"))
        proc = subprocess.Popen(unit_argv("ExecStart", unique, lxpath),
                                env={**os.environ, "NOTIFY_SOCKET": str(ns.path)},
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        stack.callback(lambda: proc.poll() is None and (
            lxpy("stop", "-n", unique, "-k", check=False), proc.wait(timeout=60)))
        ns.wait_for("READY", proc=proc)
        ns.messages.clear()
        pid = state_file(lxpath, unique)["pid"]
        os.kill(int(pid), signal.SIGKILL)
        ns.wait_for("READY", proc=proc)             # the same main process: back again
        new = state_file(lxpath, unique)["pid"]
        assert new != pid and proc.poll() is None
        os.kill(int(new), signal.SIGKILL)           # the 2nd death within 60 s: gives up
        assert proc.wait(timeout=60) == 1
        journal = (tmp_path / "stderr").read_text()
    assert "restarting in 0 s (autostart.restart = on-failure" in journal, journal
    assert "gave up restarting: init died 2 times within 60 s" in journal, journal
    assert "Traceback" not in journal
    assert info_state(lxpy, unique) == "STOPPED"
    assert_nothing_left(lxpath, unique)

"""The guest's readiness (runtime/notify.py): only a systemd init is given the notify
socket; any other init sees no change, and waiting for READY on it fails at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_runtime import make_busybox, state_file

pytestmark = pytest.mark.root


def test_busybox_init_gets_no_notify_socket(lxpy, lxpath, unique):
    make_busybox(lxpath, unique)
    try:
        lxpy("start", "-n", unique)
        st = state_file(lxpath, unique)
        assert st["notify"] == "0" and st["ready"] == "0"
        environ = Path(f"/proc/{st['pid']}/environ").read_bytes().split(b"\0")
        assert not [e for e in environ if e.startswith(b"NOTIFY_SOCKET=")]
        mounts = lxpy("attach", "-n", unique, "--", "cat", "/proc/mounts").stdout
        assert " /run " not in mounts
        r = lxpy("wait", "-n", unique, "-s", "READY", "-t", "60", check=False, timeout=30)
        assert r.returncode == 1 and "does not report readiness" in r.stderr, r.stderr
        assert "Ready:" not in lxpy("info", "-n", unique, "--no-size").stdout
        # lxpy-start -w on such an init returns once it runs
        lxpy("stop", "-n", unique, "-k")
        r = lxpy("start", "-t", "60", unique, check=False, timeout=30)
        assert r.returncode == 2 and "-t goes with -w" in r.stderr, r.stderr
        assert state_file(lxpath, unique).get("state", "STOPPED") == "STOPPED"   # not started
        lxpy("start", "-w", "-t", "60", unique, timeout=30)      # the README's form: -w NAME
        assert state_file(lxpath, unique)["state"] == "RUNNING"
        # READY|STOPPED is a wait that can end: it does, when the container stops
        lxpy("stop", "-n", unique, "-k")
        lxpy("wait", "-n", unique, "-s", "READY|STOPPED", "-t", "30")
    finally:
        lxpy("stop", "-n", unique, "-k", check=False)

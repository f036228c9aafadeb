"""lxpy-attach into a Debian container that boots systemd: systemctl through attach, and an
interactive login shell (bash, readline) on a pty, Ctrl-C included."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
import time

import pytest

from tests.conftest import BIN
from tests.ptyio import Reader

pytestmark = [pytest.mark.slow, pytest.mark.debian]


@pytest.fixture
def deb(lxpy, lxpath, debian_cache, tmp_path, unique):
    empty = tmp_path / "empty-net.toml"
    empty.write_text('[[net]]\ntype = "empty"\n')
    lxpy("create", "-n", unique, "-t", "debian", "-B", "overlay", "-f", str(empty))
    lxpy("start", "-n", unique, timeout=120)
    try:
        yield unique
    finally:
        lxpy("stop", "-n", unique, "-k", check=False, timeout=120)


def test_systemd_and_an_interactive_shell(lxpy, deb):
    lxpy("wait", "-n", deb, "-s", "READY", "-t", "180", timeout=200)   # systemd: READY=1
    r = lxpy("attach", "-n", deb, "--", "systemctl", "is-system-running", check=False)
    assert r.stdout.strip() in ("running", "degraded"), (r.stdout, r.stderr)
    # the attached shell is a process systemd in the container can see
    assert lxpy("attach", "-n", deb, "--", "systemctl", "is-active", "systemd-journald"
                ).stdout.strip() == "active"

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = dict(os.environ, TERM="xterm-256color")
    p = subprocess.Popen([str(BIN / "lxpy-attach"), "-P", str(lxpy.lxpath), "-n", deb],
                         stdin=slave, stdout=slave, stderr=slave, env=env,
                         start_new_session=True)
    pty = Reader(master)
    try:
        pty.expect(b"# ")                       # root's login shell: bash
        os.write(master, b"echo $0 $TERM; stty size; tty\n")
        out = pty.expect(b"/dev/pts/")
        assert b"bash xterm-256color" in out and b"40 100" in out
        pty.expect(b"# ")
        os.write(master, b"sleep 1234; echo after-$((1+1))-sleep\n")
        # Ctrl-C once the sleep runs (bash has handed it the terminal before its exec; a
        # Ctrl-C while readline still holds the line would only discard the line)
        deadline = time.monotonic() + 60
        while lxpy("attach", "-n", deb, "--", "pgrep", "-x", "-f", "sleep 1234",
                   check=False).returncode != 0:
            assert time.monotonic() < deadline, "the sleep never started"
        os.write(master, b"\x03")                        # reaches the sleep only
        out = pty.expect(b"# ")
        # the sleep died of SIGINT, so bash dropped the rest of the line, as on a terminal
        assert b"after-2-sleep" not in out
        os.write(master, b"echo still-$((6*7))\n")        # and the shell is still there
        pty.expect(b"still-42")
        pty.expect(b"# ")
        os.write(master, b"exit 3\n")
        assert p.wait(timeout=60) == 3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)

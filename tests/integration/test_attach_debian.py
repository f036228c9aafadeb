"""lxpy-attach into a Debian container that boots systemd: systemctl through attach, and an
interactive login shell (bash, readline) on a pty, Ctrl-C included."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time

import pytest

from tests.conftest import BIN

pytestmark = [pytest.mark.slow, pytest.mark.debian]


def _read_until(fd: int, text: bytes, timeout: float = 60) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while text not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"never saw {text!r}; got {buf[-300:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {text!r}; got {buf[-300:]!r}")
            buf += chunk
    return buf


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
    deadline = time.monotonic() + 180
    while True:  # until systemd's bus is up (retried on that event, bounded)
        r = lxpy("attach", "-n", deb, "--", "systemctl", "is-system-running", "--wait",
                 check=False, timeout=180)
        if "Failed to connect to bus" not in r.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.2)
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
    try:
        _read_until(master, b"# ")                       # root's login shell: bash
        os.write(master, b"echo $0 $TERM; stty size; tty\n")
        out = _read_until(master, b"/dev/pts/")
        assert b"bash xterm-256color" in out and b"40 100" in out
        _read_until(master, b"# ")
        os.write(master, b"sleep 1000; echo after-sleep\n")
        _read_until(master, b"sleep 1000")
        os.write(master, b"\x03")                        # Ctrl-C reaches the sleep only
        _read_until(master, b"# ")
        os.write(master, b"exit 3\n")
        assert p.wait(timeout=60) == 3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)

"""lxpy-attach against a real running busybox container (lxpy-start): output, exit codes,
stdio, environment, users, cwd, pty, signals, policy, cgroup, and its errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import termios
from pathlib import Path

import pytest

from tests.conftest import BIN, Runner
from tests.ptyio import read_until as _read_until

# Capabilities the default policy drops (security.cap_drop's default).
DEFAULT_DROPPED = {"sys_module": 16, "sys_rawio": 17, "sys_time": 25, "mac_override": 32,
                   "mac_admin": 33}


def make_busybox(lxpath: Path, name: str, extra: str = "") -> Path:
    """A busybox container by hand (no template, no cache): fast and self-contained."""
    d = lxpath / name
    r = d / "rootfs"
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home/alice"):
        (r / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", r / "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet not in ("busybox", "init"):
            os.symlink("busybox", r / "bin" / applet)
    os.symlink("/bin/busybox", r / "sbin/init")
    (r / "etc/inittab").write_text("::respawn:/bin/sleep 100000\n")
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                  "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
                                  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (r / "etc/group").write_text("root:x:0:\nalice:x:1000:\nwheel:x:10:alice\n"
                                 "nogroup:x:65534:\n")
    os.chown(r / "home/alice", 1000, 1000)
    (r / "etc/notexec").write_text("#!/bin/sh\necho no\n")
    (d / "config.toml").write_text(
        f'hostname = "{name}-host"\n'
        f"{extra}\n"
        "[environment]\n"
        'GREETING = "hello from config"\n'
        "[init]\n"
        'cmd = ["/sbin/init"]\n'
        'halt_signal = "SIGUSR2"\n'
        "stop_timeout = 10\n"
        "[[net]]\n"
        'type = "empty"\n')
    return d


@pytest.fixture(scope="module")
def ct(tmp_path_factory, lxpy_env):
    """One running container for the module: (runner, name)."""
    lxpath = tmp_path_factory.mktemp("attach") / "lxpath"
    lxpath.mkdir()
    run = Runner(lxpath)
    name = "att" + os.urandom(3).hex()
    make_busybox(lxpath, name)
    try:
        run("start", "-n", name, timeout=60)
        run("wait", "-n", name, "-s", "RUNNING", "-t", "30")
        yield run, name
    finally:
        run("stop", "-n", name, "-k", check=False, timeout=60)
        shutil.rmtree(lxpath, ignore_errors=True)


def attach(ct, *args: str, input: str | bytes | None = None, check: bool = False,
           text: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    run, name = ct
    cmd = [str(BIN / "lxpy-attach"), "-P", str(run.lxpath), "-n", name, *args]
    return subprocess.run(cmd, capture_output=True, text=text, input=input, timeout=timeout,
                          stdin=subprocess.DEVNULL if input is None else None, check=check)


def one_line_error(r, status: int, contains: str) -> None:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert contains in lines[0], lines[0]


# -- output, exit status, namespaces ---------------------------------------------------

def test_runs_inside_the_container(ct):
    _, name = ct
    r = attach(ct, "--", "sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' ';"
               " echo; ls /sys/class/net")
    assert r.returncode == 0, r.stderr
    host, pid, init, nets = r.stdout.splitlines()[:4]
    assert host == f"{name}-host"
    assert int(pid) < 100                    # its own pid namespace
    assert "init" in init                    # PID 1 is the container's init
    assert nets.split() == ["lo"]            # its own (empty) network namespace
    assert r.stderr == ""


@pytest.mark.parametrize("script, status", [("exit 7", 7), ("exit 0", 0), ("kill -9 $$", 137),
                                            ("kill -TERM $$", 143)])
def test_exit_status_passes_through(ct, script, status):
    assert attach(ct, "--", "sh", "-c", script).returncode == status


def test_hundred_consecutive_attaches(ct):
    run, name = ct
    for i in range(100):
        r = subprocess.run([str(BIN / "lxpy-attach"), "-P", str(run.lxpath), name, "--",
                            "echo", f"n{i}"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"n{i}\n", ""), i


# -- stdio -------------------------------------------------------------------------------

def test_stdin_pipe_to_a_shell(ct):
    _, name = ct
    r = attach(ct, "--", "sh", input="hostname\necho second line\n")
    assert r.returncode == 0
    assert r.stdout == f"{name}-host\nsecond line\n"


def test_stdout_and_stderr_stay_separate(ct):
    r = attach(ct, "--", "sh", "-c", "echo to-out; echo to-err >&2; echo more-out")
    assert r.stdout == "to-out\nmore-out\n"
    assert r.stderr == "to-err\n"


def test_binary_data_through_stdin_and_stdout(ct):
    data = os.urandom(1 << 20)
    r = attach(ct, "--", "cat", input=data, text=False)
    assert r.returncode == 0
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_redirections_to_files(ct, tmp_path):
    run, name = ct
    (tmp_path / "in").write_text("line1\nline2\n")
    with open(tmp_path / "in") as i, open(tmp_path / "out", "w") as o, \
            open(tmp_path / "err", "w") as e:
        rc = subprocess.run([str(BIN / "lxpy-attach"), "-P", str(run.lxpath), name, "--",
                             "sh", "-c", "wc -l; echo oops >&2"], stdin=i, stdout=o, stderr=e,
                            timeout=30).returncode
    assert rc == 0
    assert (tmp_path / "out").read_text().strip() == "2"
    assert (tmp_path / "err").read_text() == "oops\n"


# -- environment, user, cwd ---------------------------------------------------------------

def test_clear_env_by_default(ct):
    r = attach(ct, "--", "env")
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert env["container"] == "lxpy"
    assert env["HOME"] == "/root"
    assert env["PATH"].startswith("/usr/local/sbin")
    assert env["GREETING"] == "hello from config"      # the container's [environment]
    assert "LXPY_CACHE" not in env                     # nothing of ours leaks in


def test_set_var_keep_var_keep_env(ct):
    r = attach(ct, "-v", "A=1", "-v", "B=two words", "--", "sh", "-c", 'echo "$A|$B"')
    assert r.stdout == "1|two words\n"
    os.environ["LXPY_TEST_KEEP"] = "kept"
    try:
        r = attach(ct, "--keep-var", "LXPY_TEST_KEEP", "--", "sh", "-c",
                   'echo "$LXPY_TEST_KEEP|$LXPY_CACHE"')
        assert r.stdout == "kept|\n", r.stderr
        r = attach(ct, "--keep-env", "--", "sh", "-c", 'echo "$LXPY_TEST_KEEP|$container"')
        assert r.stdout == "kept|lxpy\n"
    finally:
        del os.environ["LXPY_TEST_KEEP"]
    one_line_error(attach(ct, "-v", "no-equals", "--", "true"), 2, "VAR=VALUE")


def test_cwd(ct):
    assert attach(ct, "--", "pwd").stdout == "/root\n"
    assert attach(ct, "--cwd", "/tmp", "--", "pwd").stdout == "/tmp\n"
    one_line_error(attach(ct, "--cwd", "/no/such/dir", "--", "pwd"), 1, "/no/such/dir")


def test_users_and_groups(ct):
    r = attach(ct, "-u", "alice", "--", "sh", "-c", "id -u; id -g; id -G; pwd; echo $HOME")
    assert r.returncode == 0, r.stderr
    uid, gid, groups, cwd, home = r.stdout.split("\n")[:5]
    assert (uid, gid, cwd, home) == ("1000", "1000", "/home/alice", "/home/alice")
    assert set(groups.split()) == {"1000", "10"}
    r = attach(ct, "-u", "4321", "-g", "wheel", "--", "sh", "-c", "id -u; id -g; pwd")
    assert r.stdout.split() == ["4321", "10", "/"]
    one_line_error(attach(ct, "-u", "mallory", "--", "true"), 1, "mallory")
    one_line_error(attach(ct, "-g", "nosuchgroup", "--", "true"), 1, "nosuchgroup")
    # a non-root user has no capabilities left at all
    r = attach(ct, "-u", "alice", "--", "grep", "CapEff", "/proc/self/status")
    assert int(r.stdout.split()[1], 16) == 0


def test_default_command_is_roots_shell(ct):
    _, name = ct
    r = attach(ct, input="echo $0; hostname\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"{name}-host"
    assert "sh" in r.stdout.splitlines()[0]


# -- errors ------------------------------------------------------------------------------

def test_command_not_found_and_not_executable(ct):
    r = attach(ct, "--", "no-such-command", "arg")
    one_line_error(r, 127, "no-such-command")
    assert "not found" in r.stderr
    one_line_error(attach(ct, "--", "/etc/notexec"), 126, "/etc/notexec")


def test_stopped_and_missing_containers(lxpy, lxpath, unique):
    make_busybox(lxpath, unique)
    r = lxpy("attach", "-n", unique, "--", "true", check=False)
    one_line_error(r, 1, "not running")
    r = lxpy("attach", "-n", "nosuch", "--", "true", check=False)
    one_line_error(r, 1, "does not exist")
    r = lxpy("attach", "-n", "../x", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr


# -- policy, cgroup ---------------------------------------------------------------------------

def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_policy_applies_to_attached_commands(ct):
    st = _status(attach(ct, "--", "cat", "/proc/self/status").stdout)
    bnd = int(st["CapBnd"], 16)
    for cap, bit in DEFAULT_DROPPED.items():
        assert not bnd >> bit & 1, cap
    assert bnd >> 21 & 1                       # sys_admin stays (systemd needs it)
    assert int(st["CapEff"], 16) & (1 << 16) == 0
    assert st["Seccomp"].strip() == "2"        # the default filter is loaded
    assert st["NoNewPrivs"].strip() == "0"


def test_attached_processes_join_the_container_cgroup(ct):
    # Inside its cgroup namespace a member of the container's cgroup sees "/..." paths;
    # a process left outside would see "/../..".
    r = attach(ct, "--", "cat", "/proc/self/cgroup")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines
    for line in lines:
        path = line.split(":", 2)[2]
        assert path.startswith("/") and ".." not in path, line


def test_keep_only_and_no_new_privs(lxpy, lxpath, unique):
    make_busybox(lxpath, unique, extra='[security]\ncap_keep = ["chown", "kill", "setuid", '
                 '"setgid", "sys_admin"]\nno_new_privs = true\nseccomp = "none"\n')
    lxpy("start", "-n", unique, timeout=60)
    try:
        r = lxpy("attach", "-n", unique, "--", "cat", "/proc/self/status")
        st = _status(r.stdout)
        assert int(st["CapBnd"], 16) == (1 << 0) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 21)
        assert st["NoNewPrivs"].strip() == "1"
        assert st["Seccomp"].strip() == "0"
    finally:
        lxpy("stop", "-n", unique, "-k", check=False)


# -- signals and terminals -------------------------------------------------------------

def test_sigterm_is_forwarded(ct):
    run, name = ct
    p = subprocess.Popen([str(BIN / "lxpy-attach"), "-P", str(run.lxpath), name, "--", "sh",
                          "-c", 'trap "echo got-TERM; exit 9" TERM; echo ready; '
                          "while true; do sleep 0.2; done"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        _read_until(p.stdout.fileno(), b"ready")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 9
        assert b"got-TERM" in p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def test_pty_when_stdin_is_a_terminal(ct):
    run, name = ct
    master, slave = os.openpty()
    import fcntl
    import struct
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([str(BIN / "lxpy-attach"), "-P", str(run.lxpath), name, "--", "sh",
                          "-c", "tty; stty size; echo done-$((3+4)); exit 4"],
                         stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    try:
        out = _read_until(master, b"done-7")
        assert p.wait(timeout=30) == 4
        assert b"/dev/pts/" in out                 # a terminal, from the container's devpts
        assert b"33 77" in out                     # our window size was passed on
        assert termios.tcgetattr(slave) == before  # our terminal is restored
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)


def test_no_pty_without_a_terminal(ct):
    r = attach(ct, "--", "sh", "-c", "tty; true")
    assert "not a tty" in r.stdout


def test_only_some_namespaces(ct):
    _, name = ct
    # -s uts: the container's hostname, but our own pid namespace and filesystem
    r = attach(ct, "-s", "uts", "--", "sh", "-c",
               "hostname; readlink /proc/self/ns/pid; readlink /proc/self/ns/uts")
    assert r.returncode == 0, r.stderr
    host, pidns, utsns = r.stdout.split()
    assert host == f"{name}-host"
    assert pidns == os.readlink("/proc/self/ns/pid")
    assert utsns != os.readlink("/proc/self/ns/uts")
    one_line_error(attach(ct, "-s", "mnt|bogus", "--", "true"), 2, "bogus")


def test_terminal_output_with_piped_input(ct):
    """stdout on a terminal, stdin a pipe: no pty (stdin decides), and EOF gets through."""
    run, name = ct
    master, slave = os.openpty()
    p = subprocess.Popen([str(BIN / "lxpy-attach"), "-P", str(run.lxpath), name, "--", "sh",
                          "-c", "cat >/dev/null; echo cat-ended"],
                         stdin=subprocess.PIPE, stdout=slave, stderr=slave,
                         start_new_session=True)
    try:
        p.stdin.close()  # stdin is not a terminal: no pty; plain EOF
        out = _read_until(master, b"cat-ended")
        assert p.wait(timeout=30) == 0
        assert b"cat-ended" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)


def test_no_controlling_terminal_without_a_pty(ct):
    """Our terminal on stdout is an output only: no /dev/tty, no ctty to inject into."""
    run, name = ct
    master, slave = os.openpty()
    p = subprocess.Popen([str(BIN / "lxpy-attach"), "-P", str(run.lxpath), name, "--", "sh",
                          "-c", "echo tty_nr=$(cut -d' ' -f7 /proc/self/stat); "
                          "(: < /dev/tty) 2>/dev/null && echo has-tty || echo no-tty"],
                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    try:
        out = _read_until(master, b"-tty")
        assert p.wait(timeout=30) == 0
        assert b"tty_nr=0" in out and b"no-tty" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)


def test_frozen_container_is_refused(ct):
    run, name = ct
    run("freeze", "-n", name)
    try:
        one_line_error(attach(ct, "--", "true", timeout=30), 1, "frozen")
    finally:
        run("unfreeze", "-n", name)
    assert attach(ct, "--", "true").returncode == 0


def test_help_goes_the_usual_way(ct):
    r = subprocess.run([str(BIN / "lxpy-attach"), "-h"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "--keep-env" in r.stdout and "--cwd" in r.stdout


def test_library_call_leaves_the_caller_as_it_was(ct, tmp_path):
    """attach() from Python: the exit status comes back, and the caller's own children are
    not forked into the container's pid namespace afterwards."""
    from lxpy.container import Container
    from lxpy.runtime import attach as lib
    run, name = ct
    before = os.readlink("/proc/self/ns/pid_for_children")
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    saved = os.dup(1)
    try:
        os.dup2(fd, 1)
        rc = lib.attach(lib.find(Container(name, run.lxpath)),
                        lib.Options(["sh", "-c", "hostname; exit 3"], pty=False))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)
    assert rc == 3
    assert out.read_text() == f"{name}-host\n"
    assert os.readlink("/proc/self/ns/pid_for_children") == before


def test_sigterm_is_forwarded_with_a_pty(ct):
    run, name = ct
    master, slave = os.openpty()
    p = subprocess.Popen([str(BIN / "lxpy-attach"), "-P", str(run.lxpath), name, "--", "sh",
                          "-c", 'trap "echo got-TERM; exit 9" TERM; echo ready; '
                          "while true; do sleep 0.2; done"],
                         stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    try:
        _read_until(master, b"ready")
        p.send_signal(signal.SIGTERM)
        _read_until(master, b"got-TERM")
        assert p.wait(timeout=30) == 9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)

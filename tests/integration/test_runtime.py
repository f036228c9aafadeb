"""The runtime against the real kernel: start, stop, isolation, execute, wait, console log,
monitor loss, concurrency, failed starts, and many start/stop cycles leaving nothing."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lxpy import paths
from tests.conftest import wait_for
from tests.ptyio import read_until as _read_until

BIN = Path(sys.executable).parent


# -- helpers ------------------------------------------------------------------------------

def make_busybox(lxpath: Path, name: str, extra: str = "", init: str | None = None) -> Path:
    """A busybox container made by hand (no template, no cache): fast and self-contained."""
    d = lxpath / name
    r = d / "rootfs"
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (r / sub).mkdir(parents=True, exist_ok=True)
    os.link("/bin/busybox", r / "bin/busybox") if _same_fs("/bin/busybox", r) else \
        _copy("/bin/busybox", r / "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet not in ("busybox", "init"):
            os.symlink("busybox", r / "bin" / applet)
    os.symlink("/bin/busybox", r / "sbin/init")
    (r / "etc/inittab").write_text("::sysinit:/bin/echo lxpy-boot-ok\n"
                                   "::respawn:/bin/sleep 100000\n")
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (r / "etc/group").write_text("root:x:0:\n")
    cmd = init or '["/sbin/init"]'
    (d / "config.toml").write_text(
        f'hostname = "{name}-host"\n'
        f"{extra}\n"
        "[init]\n"
        f"cmd = {cmd}\n"
        'halt_signal = "SIGUSR2"\n'
        'reboot_signal = "SIGTERM"\n'
        "stop_timeout = 20\n"
        "[[net]]\n"
        'type = "empty"\n')
    return d


def _same_fs(a: str, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def _copy(a: str, b: Path) -> None:
    import shutil
    shutil.copy2(a, b)


def state_file(lxpath: Path, name: str) -> dict[str, str]:
    from lxpy.paths import run_dir
    p = run_dir(lxpath, name) / "state"
    try:
        return dict(line.split("=", 1) for line in p.read_text().splitlines() if "=" in line)
    except FileNotFoundError:
        return {}


def info_state(lxpy, name: str) -> str:
    from lxpy.container import Container
    from lxpy.runtime.state import query
    return query(Container(name, lxpy.lxpath)).state


def in_ct(lxpath: Path, name: str, script: str) -> subprocess.CompletedProcess:
    """Run a shell script inside the running container (nsenter: independent of attach)."""
    pid = state_file(lxpath, name)["pid"]
    return subprocess.run(["nsenter", "-t", pid, "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                           "/bin/sh", "-c", script], capture_output=True, text=True, timeout=30)


def assert_nothing_left(lxpath: Path, name: str) -> None:
    from lxpy.paths import run_dir, system_config
    rd = run_dir(lxpath, name)
    assert not rd.exists(), f"run dir left behind: {list(rd.iterdir())}"
    parent = system_config().cgroup_parent
    for h in Path("/sys/fs/cgroup").iterdir():
        for cg in (h / parent / name, h / parent / f"lxpy.monitor.{name}"):
            assert not cg.exists(), f"cgroup left behind: {cg}"
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    assert str(lxpath) not in mounts, "a mount under the lxpath is left on the host"
    assert str(rd) not in mounts
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            assert str(rd) not in cmdline, f"a monitor process is left: {p.name} {cmdline}"


def wait_for_file_text(path: Path, text: str, timeout: float = 30) -> str:
    """Wait (inotify, no sleeps) until path contains text."""
    from lxpy.linux import proc
    deadline = time.monotonic() + timeout
    fd = proc.inotify_init(proc.IN_CLOEXEC | proc.IN_NONBLOCK)
    try:
        proc.inotify_add_watch(fd, path.parent, proc.IN_MODIFY | proc.IN_CREATE |
                               proc.IN_CLOSE_WRITE)
        while True:
            try:
                data = path.read_text(errors="replace")
            except FileNotFoundError:       # not yet, or between a rotation's rename and open
                data = ""
            if text in data:
                return data
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{path} never contained {text!r}; it has {data!r}")
            p = select.poll()
            p.register(fd, select.POLLIN)
            if p.poll(int(left * 1000)):
                try:
                    proc.inotify_read(fd)
                except BlockingIOError:
                    pass
    finally:
        os.close(fd)


@pytest.fixture
def bb(lxpy, lxpath, unique):
    make_busybox(lxpath, unique)
    yield unique
    lxpy("stop", "-n", unique, "-k", check=False)


# -- tests --------------------------------------------------------------------------------

def test_start_stop(lxpy, lxpath, bb):
    lxpy("start", "-n", bb)
    assert info_state(lxpy, bb) == "RUNNING"
    r = lxpy("start", "-n", bb, check=False)
    assert r.returncode == 1 and "already running" in r.stderr
    lxpy("wait", "-n", bb, "-s", "RUNNING", "-t", "10")
    lxpy("stop", "-n", bb)
    assert info_state(lxpy, bb) == "STOPPED"
    r = lxpy("stop", "-n", bb, check=False)
    assert r.returncode == 2 and "not running" in r.stderr
    assert_nothing_left(lxpath, bb)


def test_isolation(lxpy, lxpath, bb):
    lxpy("start", "-n", bb)
    r = in_ct(lxpath, bb, "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; ls /sys/class/net;"
              "cat /proc/mounts")
    lines = r.stdout.splitlines()
    assert lines[0].strip() in ("init", "/sbin/init")     # busybox rewrites its argv
    assert lines[1] == f"{bb}-host"
    assert lines[2] == "lo"
    mounts = "\n".join(lines[3:])
    assert str(lxpath) not in mounts and "/sys/fs/cgroup/memory cgroup" in mounts
    assert " /run/lxpy" not in mounts and " /var/tmp" not in mounts
    r = in_ct(lxpath, bb, "echo h > /proc/sysrq-trigger")
    assert r.returncode != 0
    r = in_ct(lxpath, bb, "touch /sys/kernel/x; echo 1 > /proc/sys/kernel/domainname")
    assert r.returncode != 0 and "Read-only" in r.stderr
    env = Path(f"/proc/{state_file(lxpath, bb)['pid']}/environ").read_bytes().split(b"\0")
    assert b"container=lxpy" in env
    # sys_module (16) and sys_rawio (17) are dropped from init's bounding set
    bnd = int(Path(f"/proc/{state_file(lxpath, bb)['pid']}/status").read_text()
              .split("CapBnd:")[1].split()[0], 16)
    assert not bnd & (1 << 16) and not bnd & (1 << 17)
    lxpy("stop", "-n", bb, "-k")


def test_each_boot_has_its_own_boot_id(lxpy, lxpath, bb):
    """As under LXC and systemd-nspawn: journald tells the guest's boots apart by it."""
    host = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    ids = []
    for _ in range(2):
        lxpy("start", "-n", bb)
        r = in_ct(lxpath, bb, "cat /proc/sys/kernel/random/boot_id; "
                  "echo x > /proc/sys/kernel/random/boot_id; ls -a /dev")
        lines = r.stdout.splitlines()
        assert len(lines[0]) == 36 and lines[0] != host, r.stdout
        assert "Read-only" in r.stderr                      # the guest cannot change it
        assert ".lxpy-boot-id" not in lines[1:]             # no trace of how it came
        ids.append(lines[0])
        lxpy("stop", "-n", bb, "-k")
    assert ids[0] != ids[1]
    assert_nothing_left(lxpath, bb)


def test_stop_kill_and_timeout(lxpy, lxpath, unique):
    # An init that ignores its halt signal: -t gives up and kills.
    make_busybox(lxpath, unique, init='["/bin/sh", "-c", "trap \\"\\" USR2; while :; do '
                 'sleep 1000 & wait; done"]')
    lxpy("start", "-n", unique)
    lxpy("stop", "-n", unique, "-t", "1")      # init ignores the halt signal: only a kill ends it
    assert info_state(lxpy, unique) == "STOPPED"
    lxpy("start", "-n", unique)
    lxpy("stop", "-n", unique, "-k")
    assert info_state(lxpy, unique) == "STOPPED"
    assert_nothing_left(lxpath, unique)


def test_lxpy_log_tells_the_container_history(lxpy, lxpath, unique):
    """lxpy.log: one timestamped line per event, as LXC's <name>.log; in <lxpath>/<name>/log/
    for a container of another lxpath than the system's, as LXC's <lxcpath>/<name>/."""
    make_busybox(lxpath, unique, init='["/bin/sh", "-c", "trap \\"\\" USR2; while :; do '
                 'sleep 1000 & wait; done"]')
    log = lxpath / unique / "log" / "lxpy.log"
    lxpy("start", "-n", unique)
    pid = state_file(lxpath, unique)["pid"]
    lxpy("stop", "-n", unique, "-t", "1")
    assert lxpy("execute", "-n", unique, "--", "/bin/sh", "-c", "exit 3",
                check=False).returncode == 3
    assert lxpy("execute", "-n", unique, "--", "/no/such", check=False).returncode == 127
    events = [line.split(" ", 2)[2] for line in log.read_text().splitlines()]
    assert all(line.split(" ", 2)[1] == f"{unique}:" for line in log.read_text().splitlines())
    assert events[:5] == [f"started: init pid {pid}",
                          "stop requested: 1 s to shut down, then kill",
                          "still running at the stop timeout: killing it",
                          f"init (pid {pid}) was killed by SIGKILL", "stopped"], events
    assert events[5].startswith("started: ") and events[5].endswith("(application container)")
    assert events[6].endswith("exited with status 3") and events[7] == "stopped"
    assert events[8] == "start failed: exec /no/such: No such file or directory", events
    assert len(events) == 9, events
    # not in the system's log dir, where the same name in another lxpath would write too
    assert not (Path(os.environ["LXPY_LOG_DIR"]) / unique).exists()
    # a copy starts a history of its own; destroy takes the logs with the container
    lxpy("copy", "-n", unique, "-N", f"{unique}c")
    assert not (lxpath / f"{unique}c" / "log").exists()
    lxpy("destroy", "-n", unique)
    assert not log.exists()


def test_stop_nowait_then_wait(lxpy, lxpath, bb):
    lxpy("start", "-n", bb)
    lxpy("stop", "-n", bb, "-W")
    lxpy("wait", "-n", bb, "-s", "STOPPED", "-t", "30")
    assert info_state(lxpy, bb) == "STOPPED"


def test_wait_times_out_and_sees_start(lxpy, lxpath, bb):
    r = lxpy("wait", "-n", bb, "-s", "RUNNING", "-t", "0.2", check=False)
    assert r.returncode == 1
    r = lxpy("wait", "-n", bb, "-s", "BOGUS", check=False)
    assert r.returncode == 2
    w = subprocess.Popen([str(BIN / "lxpy-wait"), "-P", str(lxpath), "-n", bb, "-s",
                          "RUNNING", "-t", "60"])
    try:
        lxpy("start", "-n", bb)
        assert w.wait(timeout=60) == 0
    finally:
        if w.poll() is None:
            w.kill()
    lxpy("stop", "-n", bb, "-k")


def test_execute_passes_exit_status(lxpy, lxpath, bb):
    r = lxpy("execute", "-n", bb, "--", "/bin/sh", "-c", "echo out; echo err >&2; hostname; "
             "exit 3", check=False)
    assert r.returncode == 3
    assert r.stdout.split() == ["out", f"{bb}-host"]
    assert r.stderr.strip() == "err"
    r = lxpy("execute", "-n", bb, "--", "/bin/sh", "-c", "cat /proc/1/comm; kill -9 $$",
             check=False)
    assert r.returncode == 137
    r = lxpy("execute", "-n", bb, "--", "cat", input="from stdin\n")
    assert r.stdout == "from stdin\n"
    # lxpy-stop of an application container: SIGTERM to the command, leftovers killed
    p = subprocess.Popen([str(BIN / "lxpy-execute"), "-P", str(lxpath), "-n", bb, "--", "/bin/sh",
                          "-c", "trap 'exit 7' TERM; sleep 1000 & echo up; wait"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "up\n"
        lxpy("stop", "-n", bb, "-t", "30")
        assert p.wait(timeout=60) == 7
    finally:
        if p.poll() is None:
            p.kill()
    r = lxpy("execute", "-n", bb, "--", "/no/such", check=False)
    assert r.returncode == 127 and "/no/such" in r.stderr and len(r.stderr.splitlines()) == 1
    assert_nothing_left(lxpath, bb)


def test_console_log(lxpy, lxpath, bb):
    lxpy("start", "-n", bb)
    log = Path(state_file(lxpath, bb)["console_log"])
    wait_for_file_text(log, "lxpy-boot-ok")
    lxpy("stop", "-n", bb, "-k")


def test_reboot(lxpy, lxpath, bb):
    lxpy("start", "-n", bb)
    pid = state_file(lxpath, bb)["pid"]
    lxpy("stop", "-n", bb, "-r")
    # the same monitor brings up a new init
    deadline = time.monotonic() + 30
    while True:
        st = state_file(lxpath, bb)
        if st.get("state") == "RUNNING" and st.get("pid") not in (pid, ""):
            break
        assert time.monotonic() < deadline, f"no new init after reboot: {st}"
        lxpy("wait", "-n", bb, "-s", "RUNNING", "-t", "1", check=False)
    lxpy("stop", "-n", bb, "-k")
    assert_nothing_left(lxpath, bb)
    log = (lxpath / bb / "log" / "lxpy.log").read_text()
    assert f"init (pid {pid}) asked for a reboot" in log and f"rebooted: init pid {st['pid']}" \
        in log, log


def test_monitor_sigkill_recovery(lxpy, lxpath, bb):
    lxpy("start", "-n", bb)
    st = state_file(lxpath, bb)
    os.kill(int(st["monitor_pid"]), signal.SIGKILL)
    assert info_state(lxpy, bb) == "RUNNING"
    r = lxpy("ls", "--fancy", check=False)
    assert "RUNNING" in r.stdout
    lxpy("stop", "-n", bb, "-t", "10")
    assert info_state(lxpy, bb) == "STOPPED"
    assert_nothing_left(lxpath, bb)
    # ... and after a monitor loss with init also gone, a start just works
    lxpy("start", "-n", bb)
    st = state_file(lxpath, bb)
    os.kill(int(st["monitor_pid"]), signal.SIGKILL)
    os.kill(int(st["pid"]), signal.SIGKILL)
    lxpy("start", "-n", bb)
    assert info_state(lxpy, bb) == "RUNNING"
    lxpy("stop", "-n", bb, "-k")
    assert_nothing_left(lxpath, bb)
    # both killed, then stop -k: nothing of the lxpath is left under /run either
    lxpy("start", "-n", bb)
    st = state_file(lxpath, bb)
    os.kill(int(st["monitor_pid"]), signal.SIGKILL)
    os.kill(int(st["pid"]), signal.SIGKILL)
    wait_for(lambda: info_state(lxpy, bb) == "STOPPED", what="init and monitor gone")
    lxpy("stop", "-n", bb, "-k", check=False)
    assert not paths.run_dir(lxpath, bb).parent.exists()


def test_concurrent_starts(lxpy, lxpath, bb):
    procs = [subprocess.Popen([str(BIN / "lxpy-start"), "-P", str(lxpath), "-n", bb],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(10)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    ok = [r for r in results if r[0] == 0]
    assert len(ok) == 1, results
    for code, err in results:
        if code != 0:
            assert code == 1 and "already" in err and len(err.splitlines()) == 1, err
    lxpy("stop", "-n", bb, "-k")
    assert_nothing_left(lxpath, bb)


def test_bad_init_fails_cleanly(lxpy, lxpath, unique):
    make_busybox(lxpath, unique, init='["/sbin/nope"]')
    r = lxpy("start", "-n", unique, check=False)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "/sbin/nope" in r.stderr and "No such file" in r.stderr
    assert "Traceback" not in r.stderr
    assert info_state(lxpy, unique) == "STOPPED"
    assert_nothing_left(lxpath, unique)


def test_config_mounts(lxpy, lxpath, unique, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "hello").write_text("from the host\n")
    extra = (f'[[mount]]\nsource = "{src}"\ntarget = "/srv/data"\n'
             'options = ["bind", "ro", "create=dir"]\n'
             '[[mount]]\nsource = "tmpfs"\ntarget = "/escape/run"\ntype = "tmpfs"\n'
             'options = ["create=dir", "size=1M"]\n'
             '[[mount]]\nsource = "/nonexistent-lxpy"\ntarget = "/opt/x"\n'
             'options = ["bind", "optional", "create=dir"]\n')
    d = make_busybox(lxpath, unique, extra=extra)
    # a symlink in the rootfs that points at a host path: the mount stays inside
    os.symlink("/tmp/lxpy-escape-target", d / "rootfs/escape")
    lxpy("start", "-n", unique)
    try:
        r = in_ct(lxpath, unique, "cat /srv/data/hello; touch /srv/data/x; "
                  "grep ' /tmp/lxpy-escape-target/run ' /proc/mounts")
        assert "from the host" in r.stdout
        assert "Read-only" in r.stderr
        assert "tmpfs" in r.stdout
        assert not Path("/tmp/lxpy-escape-target").exists()
        assert (d / "rootfs/tmp/lxpy-escape-target/run").is_dir()
    finally:
        lxpy("stop", "-n", unique, "-k")
    assert_nothing_left(lxpath, unique)


def test_many_start_stop_cycles_leave_nothing(lxpy, lxpath, bb):
    n = int(os.environ.get("LXPY_TEST_CYCLES", "100"))
    from lxpy.container import Container
    from lxpy.runtime.start import start
    from lxpy.runtime.stop import stop
    c = Container(bb, lxpath)
    # In-process calls of the same code the commands run (the CLI start-up is tested above).
    for _ in range(n):
        start(c)
        stop(c, kill=True)
    assert_nothing_left(lxpath, bb)
    # the ptys (console, ttys) went with the monitor: no process of ours holds one
    lxpy("start", "-n", bb)
    mon = state_file(lxpath, bb)["monitor_pid"]
    held = []
    for fd in os.listdir(f"/proc/{mon}/fd"):
        try:    # (the monitor may close a short-lived fd meanwhile: joining its cgroup)
            held.append(os.readlink(f"/proc/{mon}/fd/{fd}"))
        except FileNotFoundError:
            pass
    assert sum(1 for h in held if h.startswith("/dev/pts/")) == 1 + 4   # console + tty.max
    lxpy("stop", "-n", bb)
    assert_nothing_left(lxpath, bb)


def test_console_attach_one_holder_and_detach(lxpy, lxpath, bb):
    (lxpath / bb / "rootfs/etc/inittab").write_text("::respawn:/bin/sh\n")
    lxpy("start", "-n", bb)
    master, slave = os.openpty()
    con = subprocess.Popen([str(BIN / "lxpy-console"), "-P", str(lxpath), "-n", bb],
                           stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        _read_until(master, b"Ctrl+a q")
        os.write(master, b"echo con$((40+2))sole\r")
        _read_until(master, b"con42sole")
        # one holder at a time
        r = lxpy("console", "-n", bb, check=False, input="")
        assert r.returncode == 1 and "in use" in r.stderr
        os.write(master, b"\x01q")
        assert con.wait(timeout=30) == 0
    finally:
        if con.poll() is None:
            con.kill()
        os.close(master)
    # the console is free again once the first one detached
    master, slave = os.openpty()
    con = subprocess.Popen([str(BIN / "lxpy-console"), "-P", str(lxpath), "-n", bb, "-t", "0"],
                           stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        _read_until(master, b"Ctrl+a q")
        os.write(master, b"\x01q")
        assert con.wait(timeout=30) == 0
    finally:
        if con.poll() is None:
            con.kill()
        os.close(master)
    r = lxpy("console", "-n", bb, "-t", "9", check=False, input="")
    assert r.returncode == 1 and "no tty 9" in r.stderr
    lxpy("stop", "-n", bb, "-k")


def test_veth_network_and_hooks(lxpy, lxpath, unique, tmp_path):
    br = f"rt{unique[1:9]}"
    subprocess.run(["ip", "link", "add", br, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.98.7.1/24", "dev", br], check=True)
        subprocess.run(["ip", "link", "set", br, "up"], check=True)
        out = tmp_path / "hooks.log"
        hooks = (f'[hooks]\npre_start = ["echo pre $LXPY_NAME >> {out}"]\n'
                 'start = ["echo in-container $container > /tmp/start-hook"]\n'
                 f'stop = ["echo stop $LXPY_NAME >> {out}"]\n'
                 f'post_stop = ["echo post $LXPY_NAME >> {out}"]\n')
        d = make_busybox(lxpath, unique, extra=hooks)
        cfg = (d / "config.toml").read_text().replace(
            'type = "empty"', f'type = "veth"\nlink = "{br}"\nipv4 = ["10.98.7.2/24"]')
        (d / "config.toml").write_text(cfg)
        lxpy("start", "-n", unique)
        assert in_ct(lxpath, unique, "cat /tmp/start-hook").stdout == "in-container lxpy\n"
        r = in_ct(lxpath, unique, "ip -4 addr show eth0; ping -c1 -W5 10.98.7.1")
        assert "10.98.7.2/24" in r.stdout and r.returncode == 0, r.stdout + r.stderr
        host_ends = subprocess.run(["ip", "-o", "link", "show", "master", br],
                                   capture_output=True, text=True).stdout
        assert host_ends.strip()
        lxpy("stop", "-n", unique, "-k")
        assert not subprocess.run(["ip", "-o", "link", "show", "master", br],
                                  capture_output=True, text=True).stdout.strip()
        assert out.read_text().split("\n")[:3] == [f"pre {unique}", f"stop {unique}",
                                                   f"post {unique}"]
        assert_nothing_left(lxpath, unique)
    finally:
        subprocess.run(["ip", "link", "del", br], capture_output=True)


def test_share_namespace_with_another_container(lxpy, lxpath, unique):
    a, b = f"{unique}a", f"{unique}b"
    make_busybox(lxpath, a)
    make_busybox(lxpath, b, extra=f'[namespaces]\nshare = {{ net = "{a}", uts = "{a}" }}')
    r = lxpy("start", "-n", b, check=False)
    assert r.returncode == 1 and "not running" in r.stderr
    lxpy("start", "-n", a)
    try:
        lxpy("start", "-n", b)
        pa, pb = state_file(lxpath, a)["pid"], state_file(lxpath, b)["pid"]
        assert os.readlink(f"/proc/{pa}/ns/net") == os.readlink(f"/proc/{pb}/ns/net")
        assert os.readlink(f"/proc/{pa}/ns/pid") != os.readlink(f"/proc/{pb}/ns/pid")
        assert in_ct(lxpath, b, "hostname").stdout.strip() == f"{a}-host"
    finally:
        lxpy("stop", "-n", b, "-k", check=False)
        lxpy("stop", "-n", a, "-k", check=False)
    assert_nothing_left(lxpath, a)
    assert_nothing_left(lxpath, b)


def test_foreground_start_notifies_and_stops_on_sigterm(lxpy, lxpath, bb, tmp_path):
    import socket
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(str(tmp_path / "notify"))
    ns.settimeout(60)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    p = subprocess.Popen([str(BIN / "lxpy-start"), "-F", "-P", str(lxpath), "-n", bb], env=env,
                         stderr=subprocess.PIPE, text=True)
    try:
        msgs = []
        while not any("READY=1" in m for m in msgs):
            msgs.append(ns.recv(4096).decode())
        assert info_state(lxpy, bb) == "RUNNING"
        st = state_file(lxpath, bb)
        assert int(st["monitor_pid"]) == p.pid          # -F: the command is the monitor
        env_init = Path(f"/proc/{st['pid']}/environ").read_bytes()
        assert b"NOTIFY_SOCKET" not in env_init
        p.send_signal(signal.SIGTERM)                   # systemctl stop
        assert p.wait(timeout=60) == 0
        assert any("STOPPING=1" in m for m in msgs + [ns.recv(4096).decode()])
    finally:
        if p.poll() is None:
            p.kill()
        ns.close()
    assert info_state(lxpy, bb) == "STOPPED"
    assert_nothing_left(lxpath, bb)


def test_unprivileged_container(lxpy, lxpath, unique):
    make_busybox(lxpath, unique, extra="[idmap]\nuid = [[0, 100000, 65536]]\n"
                 "gid = [[0, 100000, 65536]]")
    lxpy("start", "-n", unique)
    try:
        pid = state_file(lxpath, unique)["pid"]
        assert os.stat(f"/proc/{pid}").st_uid == 100000          # init's host uid
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", "100000", "65536"]
        pid_ns = ["nsenter", "-t", pid, "-U", "-m", "-u", "-i", "-n", "-p", "-r", "-w"]
        r = subprocess.run(pid_ns + ["/bin/sh", "-c", "id -u; touch /root/made-inside; "
                                     "echo $?; echo 1 > /proc/sys/kernel/hostname"],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.split()[:2] == ["0", "0"]
        assert r.returncode != 0                                  # /proc/sys stays read-only
        # the rootfs is idmapped: root inside writes files owned by root on disk
        assert os.stat(lxpath / unique / "rootfs/root/made-inside").st_uid == 0
    finally:
        lxpy("stop", "-n", unique, "-k")
    assert_nothing_left(lxpath, unique)
    # (every backend runs unprivileged: tests/integration/test_unprivileged.py)


def test_console_log_rotates(lxpy, lxpath, unique):
    d = make_busybox(lxpath, unique, extra='[console]\nlog_size = "16K"')
    (d / "rootfs/etc/inittab").write_text(
        "::sysinit:/bin/sh -c 'i=0; while [ $i -lt 2000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxx; i=$((i+1)); done; echo rotate-done'\n::respawn:/bin/sleep 100000\n")
    lxpy("start", "-n", unique)
    try:
        log = Path(state_file(lxpath, unique)["console_log"])
        wait_for_file_text(log, "rotate-done")
        assert log.stat().st_size <= 16 * 1024 + 65536
        old = Path(str(log) + ".1")
        assert old.exists() and "line-" in old.read_text(errors="replace")
    finally:
        lxpy("stop", "-n", unique, "-k")


def test_dry_run_prints_the_plan_and_starts_nothing(lxpy, lxpath, unique, tmp_path):
    from lxpy.paths import run_dir
    src = tmp_path / "data"
    src.mkdir()
    make_busybox(lxpath, unique, extra=f'[[mount]]\nsource = "{src}"\ntarget = "/srv/data"\n'
                 'options = ["bind", "ro", "create=dir"]\n')
    before = sorted(p.name for p in lxpath.iterdir())
    r = lxpy("start", "--dry-run", unique)
    lines = r.stdout.splitlines()
    assert lines[0] == f"container {unique} in {lxpath}"
    assert "namespaces: mnt pid uts ipc net cgroup" in lines
    assert "id map: none (privileged: its root is the host's)" in lines
    assert any(x.startswith("cgroup: ") and unique in x for x in lines)
    mounts = lines[lines.index("mounts:") + 1:lines.index(f"hostname: {unique}-host")]
    order = [x.strip() for x in mounts]
    assert order[:2] == ["make / private", f"mount rootfs {lxpath / unique / 'rootfs'}"]
    assert order.index("mount proc on /proc") < order.index("pivot_root") < \
        order.index("mount the monitor's pty 0 on /dev/console")
    assert f"bind {src} on /srv/data (bind,ro,create=dir)" in order
    assert "init: /sbin/init (cwd /, uid 0, gid 0)" in lines
    assert "  container=lxpy" in lines
    assert any(x.startswith("capabilities dropped: ") for x in lines)
    assert any(x.startswith("seccomp: ") for x in lines)
    # nothing started, nothing left behind
    assert info_state(lxpy, unique) == "STOPPED"
    assert sorted(p.name for p in lxpath.iterdir()) == before
    assert not run_dir(lxpath, unique).exists()
    assert_nothing_left(lxpath, unique)


def test_monitor_names_itself(lxpy, lxpath, bb):
    """ps and top tell which container a monitor serves, as LXC's `[lxc monitor] LXPATH
    NAME`: its argv[0] `[lxpy monitor] LXPATH NAME`, its comm `lxpy monitor`."""
    lxpy("start", "-n", bb)
    pid = state_file(lxpath, bb)["monitor_pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[0].decode() == f"[lxpy monitor] {lxpath} {bb}"
    assert Path(f"/proc/{pid}/comm").read_text() == "lxpy monitor\n"
    ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", pid], capture_output=True, text=True)
    assert ps.stdout.startswith(f"[lxpy monitor] {lxpath} {bb}")
    lxpy("stop", "-n", bb)
    assert_nothing_left(lxpath, bb)

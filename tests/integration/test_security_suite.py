"""The security suite (issue 16): attacks by root inside a real container, each run against
a running unprivileged container and a running privileged one.

Every case says what it tries and what stops it. The privileged container must resist every
attack whose defence is not the user namespace; where the defence *is* the user namespace
(locked mount flags, sysctl and file ownership by unmapped ids, capabilities that only count
in the container's own namespace), the case says so and asserts what the privileged
container really gets, instead of skipping.

Both containers are busybox, created by `lxpy-create -t busybox -B dir`, with the host's /usr
bound read-only on /usr (so that a real Python, the interpreter lxpy-attach runs, exists
inside to attack with; in the privileged one its root could remount that bind rw -- a
test artifact no case uses). How a container is made unprivileged is in one place:
UNPRIVILEGED (the default: nothing to ask for) and PRIVILEGED (`lxpy-create --privileged`).

Export does not exist yet (test_export_does_not_exist_yet).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import _LXPATHS, BIN, Runner, wait_for

# The one place that says how the suite makes its containers: unprivileged is the default.
UNPRIVILEGED = {"create": ["-t", "busybox", "-B", "dir"], "config": 'include = ["busybox"]\n'}
PRIVILEGED = {"create": ["-t", "busybox", "-B", "dir", "--privileged"],
              "config": 'include = ["busybox"]\n'}
KINDS = {"unprivileged": UNPRIVILEGED, "privileged": PRIVILEGED}

# What both get on top: the host's /usr read-only (a Python inside), no network.
COMMON_CONFIG = """
[[net]]
type = "empty"

[[mount]]
source = "/usr"
target = "/usr"
options = ["bind", "ro", "create=dir"]
"""


def _create(run: Runner, name: str, kind: dict, tmp: Path) -> Path:
    extra = tmp / f"{name}.toml"
    extra.write_text(kind["config"] + COMMON_CONFIG)
    run("create", "-n", name, *kind["create"], "-f", str(extra), "-q", timeout=300)
    root = run.lxpath / name / "rootfs"
    # busybox has no /lib: the host's, through the bound /usr (merged-/usr layout)
    for d in ("lib", "lib64"):
        p = root / d
        if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
            p.rmdir()
        if not os.path.lexists(p):
            os.symlink(f"usr/{d}", p)
    return root


class Ct:
    """A running container of the suite."""

    def __init__(self, run: Runner, name: str, kind: str):
        self.run, self.name, self.kind = run, name, kind
        self.root = run.lxpath / name / "rootfs"

    @property
    def unprivileged(self) -> bool:
        return self.kind == "unprivileged"

    def state(self) -> dict:
        from lxpy.paths import run_dir
        from lxpy.runtime.state import read_file
        return read_file(run_dir(self.run.lxpath, self.name))

    def attach(self, *cmd: str, input: str | None = None, timeout: float = 60,
               **kw) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "lxpy-attach"), "-P", str(self.run.lxpath), "-n",
                               self.name, "--", *cmd], capture_output=True, text=True,
                              input=input, timeout=timeout, **kw)

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.attach("/bin/sh", "-c", script, **kw)

    def py(self, code: str) -> dict:
        """Run Python code inside (the host's interpreter through the bound /usr); it
        prints one JSON object, returned."""
        r = self.attach("/usr/bin/python3", "-I", "-S", "-c", textwrap.dedent(code))
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def suite(tmp_path_factory, lxpy_env):
    """Both containers, running, for the whole module."""
    tmp = tmp_path_factory.mktemp("security")
    lxpath = tmp / "lxpath"
    lxpath.mkdir()
    _LXPATHS.add(str(lxpath))
    run = Runner(lxpath)
    cts = {}
    try:
        for kind, how in KINDS.items():
            name = f"{kind[:4]}{os.urandom(3).hex()}"
            _create(run, name, how, tmp)
            run("start", "-n", name, timeout=60)
            run("wait", "-n", name, "-s", "RUNNING", "-t", "30")
            cts[kind] = Ct(run, name, kind)
            # each is what it claims: init's uid 0 is the host's 0 only when privileged
            pid = int(json.loads(run("info", "-n", name, "--json").stdout)["pid"])
            host_uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
            assert (host_uid == 0) == (kind == "privileged"), (kind, host_uid)
        yield cts
    finally:
        for name in [c.name for c in cts.values()] + [p.name for p in lxpath.iterdir()
                                                      if (p / "config.toml").exists()]:
            run("stop", "-n", name, "-k", check=False, timeout=60)
            run("destroy", "-n", name, "-f", check=False, timeout=60)
        shutil.rmtree(lxpath, ignore_errors=True)


@pytest.fixture(params=list(KINDS))
def ct(request, suite) -> Ct:
    return suite[request.param]


# -- CVE-2019-5736: the host binary behind /proc/self/exe --------------------------------

EVIL = """#!/proc/self/exe
# Run by the host's interpreter of lxpy-attach: the kernel resolved /proc/self/exe in the
# attaching process, whose executable is the host's python. Keep a handle on it, stop being
# it, and try to open it for writing once lxpy-attach is gone.
import os
fd = os.open("/proc/self/exe", os.O_RDONLY)
os.set_inheritable(fd, True)
with open("/tmp/exe-was", "w") as f:
    f.write(os.readlink("/proc/self/exe"))
pid = os.fork()
if pid == 0:
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(null, i)
    os.execv("/bin/sh", ["sh", "-c",
        "read go < /tmp/go; "
        "if (exec 4>>/proc/self/fd/%d); then echo OPENED-FOR-WRITING > /tmp/exe-result; "
        "else echo refused > /tmp/exe-result; fi 2>/tmp/exe-error" % fd])
os._exit(0)
"""


def test_proc_self_exe_cannot_overwrite_the_host_binary(ct):
    """CVE-2019-5736: the container's /root/evil starts with `#!/proc/self/exe`;
    lxpy-attach runs it, so the kernel executes the attaching process's own executable (the
    host's python) inside the container. The script keeps an fd on that binary and, after
    lxpy-attach has exited, reopens it for writing through /proc/self/fd (nothing is
    written: an append-open, closed at once).

    What stops it: unprivileged -- the binary belongs to host root, an id the container's
    user namespace does not map, so its root has no DAC override on it (EACCES). Privileged --
    the binary is the one the container's monitor runs for the container's whole life, so the
    kernel refuses any write to it (ETXTBSY) while a process of the container can exist;
    the test checks that this holds (the monitor's executable is the attacker's target)."""
    ct.sh("rm -f /tmp/go /tmp/exe-was /tmp/exe-result /tmp/exe-error; mkfifo /tmp/go")
    # /usr is the host's, read-only: the script goes to /root, run by its path
    (ct.root / "root/evil").write_text(EVIL)
    os.chmod(ct.root / "root/evil", 0o755)
    r = ct.attach("/root/evil")
    assert r.returncode == 0, r.stderr
    exe_was = (ct.root / "tmp/exe-was").read_text()
    assert "python" in exe_was, exe_was       # the attack really ran the host's interpreter
    # lxpy-attach has exited; the attacker's process holds the fd. Go.
    assert ct.sh("echo go > /tmp/go").returncode == 0
    result = wait_for(lambda: (ct.root / "tmp/exe-result").exists()
                      and (ct.root / "tmp/exe-result").read_text().strip(),
                      what="the attacker's result")
    error = (ct.root / "tmp/exe-error").read_text()
    assert result == "refused", f"{ct.kind}: the host's {exe_was} could be opened for writing"
    if ct.unprivileged:
        assert "Permission denied" in error, error
    else:
        assert "busy" in error, error
        mon = Path(f"/proc/{ct.state()['monitor_pid']}/exe").stat()
        target = Path(sys.executable).resolve().stat()
        assert (mon.st_dev, mon.st_ino) == (target.st_dev, target.st_ino)


def _proc_state(pid: int) -> str:
    """The state letter of a process (R, S, T, Z ...); "" if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _catch_attach_child(ct: Ct) -> tuple[subprocess.Popen, int]:
    """Start lxpy-attach and stop (SIGSTOP) its child once it has entered the container's
    namespaces and before it execs the command; returns (the lxpy-attach process, the
    child's host pid). That lasts about a millisecond: try attaches until one is caught."""
    mnt_ns = os.stat(f"/proc/{ct.state()['pid']}/ns/mnt").st_ino

    def entered(pid: int) -> bool:
        try:
            return os.stat(f"/proc/{pid}/ns/mnt").st_ino == mnt_ns
        except OSError:
            return False
    for _ in range(500):
        p = subprocess.Popen([str(BIN / "lxpy-attach"), "-P", str(ct.run.lxpath), "-n",
                              ct.name, "--", "/bin/true"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        child = None
        while p.poll() is None and child is None:
            try:
                kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            except OSError:
                break
            if kids and entered(int(kids[0])):
                child = int(kids[0])
                try:
                    os.kill(child, signal.SIGSTOP)
                except ProcessLookupError:
                    child = None
                    break
        if child is not None:
            # stopped first, then asked: a stop that lands in execve takes effect after it
            # ("" once the command has run and exited: missed)
            state = wait_for(lambda: _proc_state(child) in ("T", ""), what="the child "
                             "stopped") and _proc_state(child)
            try:
                if state == "T" and "python" in os.readlink(f"/proc/{child}/exe"):
                    return p, child
                os.kill(child, signal.SIGCONT)
            except (FileNotFoundError, ProcessLookupError):
                pass
        p.wait(timeout=60)
    pytest.fail("lxpy-attach's child was never caught before its exec in 500 tries")


def test_attach_child_before_exec(ct):
    """/proc/PID/exe, root and environ of lxpy-attach's child, caught after it entered the
    container's namespaces and before its exec (it is in the container's pid namespace
    from its fork on; in the container's user namespace it may already have the uid of
    the container's root): root inside opens them.

    What stops it: the child is not dumpable until exec, so its /proc files (and ptrace)
    need CAP_SYS_PTRACE over the host's user namespace -- unprivileged root lacks it.
    Privileged root has it: the defence there is the user namespace, and this asserts what
    a privileged container gets (its exe is the monitor's interpreter, see above)."""
    p, child = _catch_attach_child(ct)
    try:
        nspid = Path(f"/proc/{child}/status").read_text().split("NSpid:")[1] \
            .splitlines()[0].split()[-1]
        r = ct.sh(f"readlink /proc/{nspid}/exe; echo exe=$?; ls /proc/{nspid}/root/ "
                  f">/dev/null; echo root=$?; cat /proc/{nspid}/environ >/dev/null; "
                  f"echo environ=$?")
    finally:
        os.kill(child, signal.SIGCONT)
        assert p.wait(timeout=60) == 0
    if ct.unprivileged:
        for what in ("exe", "root", "environ"):
            assert f"{what}=1" in r.stdout, r.stdout + r.stderr
        assert "Permission denied" in r.stderr, r.stderr
    else:
        assert "exe=0" in r.stdout and "python" in r.stdout, r.stdout + r.stderr


def test_attach_with_another_interpreter(ct, tmp_path):
    """The protection above for a privileged container is that the monitor executes the
    same file as lxpy-attach. lxpy-attach run by another interpreter (a copy of it here)
    would leave a binary the container's root can overwrite once attach has exited.

    What stops it: attach compares its executable with the monitor's and refuses a
    privileged container with one line if they differ. Unprivileged, the user namespace
    protects any host binary (not mapped inside): allowed."""
    from tests.conftest import REPO
    py = tmp_path / "python3"
    shutil.copy2(os.path.realpath(sys.executable), py)
    r = subprocess.run([str(py), str(BIN / "lxpy-attach"), "-P", str(ct.run.lxpath), "-n",
                        ct.name, "--", "/bin/true"], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if ct.unprivileged:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1, r.stderr
        assert "CVE-2019-5736" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert str(py) in r.stderr


# -- cgroup v1 release_agent (CVE-2022-0492) ---------------------------------------------

def _host_release_agents() -> dict[str, str]:
    out = {}
    for h in Path("/sys/fs/cgroup").iterdir():
        f = h / "release_agent"
        if f.exists():
            out[str(f)] = f.read_text()
    return out


def test_cgroup_v1_release_agent(ct, tmp_path):
    """CVE-2022-0492: mount a cgroup v1 hierarchy inside (also from a fresh user and cgroup
    namespace, as the exploit does) and write its release_agent.

    What stops it: the container's cgroup namespace -- a new v1 mount shows the container's
    own cgroup as its root, and release_agent exists only at a hierarchy's real root; the
    kernel also wants CAP_SYS_ADMIN over the host's user namespace to write it."""
    before = _host_release_agents()
    script = r"""
    for o in memory pids devices cpu freezer name=systemd; do
      d=/tmp/cg-$o; mkdir -p $d
      if mount -t cgroup -o $o cgroup $d 2>/dev/null; then
        echo "mounted $o"
        if echo /tmp/pwn > $d/release_agent 2>/dev/null; then echo "WROTE $o"; fi
        umount $d
      fi
    done
    unshare -Urm -C sh -c 'mkdir -p /tmp/cgn; mount -t cgroup -o memory cgroup /tmp/cgn &&
      { echo /tmp/pwn > /tmp/cgn/release_agent && echo "WROTE nested"; }' 2>/dev/null
    true
    """
    r = ct.sh(script)
    assert r.returncode == 0, r.stderr
    assert "mounted memory" in r.stdout, r.stdout     # the mount itself is allowed
    assert "WROTE" not in r.stdout, r.stdout
    assert _host_release_agents() == before


# -- devices, kernel memory and log, modules, file handles -------------------------------

def _root_dev() -> tuple[int, int]:
    """(major, minor) of a block device the host uses (the one under / or, on an overlay
    root, the first disk in /sys/block)."""
    d = os.stat("/").st_dev
    if os.path.exists(f"/sys/dev/block/{os.major(d)}:{os.minor(d)}"):
        return os.major(d), os.minor(d)
    for b in sorted(Path("/sys/block").iterdir()):
        if not b.name.startswith(("loop", "ram", "zram")):
            mj, mn = (b / "dev").read_text().split(":")
            return int(mj), int(mn)
    pytest.fail("no block device found on the host")


def test_mount_a_host_block_device(ct):
    """Make a node for the host's disk and mount it (the host's filesystem, and every other
    container's rootfs on it).

    What stops it: the device cgroup (mknod and open allowed only for the default devices);
    unprivileged, also mknod in a user namespace (EPERM)."""
    mj, mn = _root_dev()
    r = ct.sh(f"mknod /tmp/disk b {mj} {mn}; echo mknod=$?; mkdir -p /tmp/hostfs; "
              f"mount /tmp/disk /tmp/hostfs; echo mount=$?; "
              f"mount -t ext4 /dev/vda /tmp/hostfs; ls /tmp/hostfs")
    assert "mknod=1" in r.stdout, r.stdout + r.stderr
    assert "mount=0" not in r.stdout
    assert "Operation not permitted" in r.stderr
    assert not any(" /tmp/hostfs " in line for line in
                   ct.sh("cat /proc/mounts").stdout.splitlines())


def test_host_disk_node_already_in_the_rootfs(ct):
    """A node for the host's disk that is already in the rootfs (an imported tree, or one
    made when mknod was allowed): mount it, read it.

    What stops it: the device cgroup refuses to open a device it does not allow, whoever
    made the node (privileged: EPERM on open and mount); unprivileged, also the user
    namespace (a block device opened for a mount needs the host's CAP_SYS_ADMIN)."""
    mj, mn = _root_dev()
    node = ct.root / "root/hostdisk"
    os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(mj, mn))
    try:
        r = ct.sh("mkdir -p /tmp/hostfs; mount /root/hostdisk /tmp/hostfs; echo mount=$?; "
                  "head -c 512 /root/hostdisk | wc -c")
    finally:
        node.unlink()
    assert "mount=0" not in r.stdout, r.stdout
    assert r.stdout.split()[-1] == "0", r.stdout             # nothing read
    assert "Operation not permitted" in r.stderr or "Permission denied" in r.stderr, r.stderr


@pytest.mark.parametrize("dev", [("mem", 1, 1), ("kmem", 1, 2), ("port", 1, 4),
                                 ("kmsg", 1, 11)], ids=lambda d: d[0])
def test_kernel_memory_and_log_devices(ct, dev):
    """Read /dev/mem, /dev/kmem, /dev/port, /dev/kmsg: none is in the container's /dev, and
    a node made for them does not work.

    What stops it: /dev is the container's own tmpfs with the default devices only; mknod
    and open of any other device are refused by the device cgroup (unprivileged: mknod
    needs the host's CAP_MKNOD)."""
    name, mj, mn = dev
    r = ct.sh(f"ls /dev/{name}; mknod /tmp/{name} c {mj} {mn}; echo mknod=$?; "
              f"head -c 16 /tmp/{name} | od | head -1; head -c 16 /dev/{name}; echo done")
    assert "mknod=1" in r.stdout, f"{ct.kind}: mknod /dev/{name} worked"
    # od prints an offset and the bytes of each line it read: nothing but "0000000"
    assert not any(x.startswith("0000000 ") for x in r.stdout.splitlines()), r.stdout
    assert not (ct.root / "tmp" / name).exists()


def test_kernel_log_through_syslog(ct):
    """dmesg (syslog(2) READ_ALL): the host's kernel log.

    What stops it: CAP_SYSLOG is dropped (security.cap_drop's default has syslog), and the
    host has kernel.dmesg_restrict=1; unprivileged, the capability would count only in the
    container's user namespace anyway."""
    restrict = Path("/proc/sys/kernel/dmesg_restrict").read_text().strip()
    r = ct.sh("dmesg | head -3")
    assert "Operation not permitted" in r.stderr, (restrict, r.stdout)
    assert r.stdout == ""


def test_load_a_kernel_module(ct):
    """insmod a module image (init_module(2)) and finit_module(2) through Python.

    What stops it: the default seccomp filter (EPERM for init_module, finit_module,
    delete_module), and CAP_SYS_MODULE is dropped. (This kernel is also booted with
    nomodule: without the filter the answer would be ENOSYS, not EPERM.)"""
    r = ct.sh("printf '\\177ELF' > /tmp/m.ko; insmod /tmp/m.ko")
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr, r.stderr
    out = ct.py("""
        import ctypes, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/tmp/m.ko", os.O_RDONLY)
        r = libc.syscall(313, fd, b"", 0)           # finit_module
        e = ctypes.get_errno()
        st = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
        print(json.dumps({"r": r, "errno": e, "seccomp": st["Seccomp"].strip(),
                          "capeff": st["CapEff"].strip()}))
    """)
    assert (out["r"], out["errno"]) == (-1, 1)        # EPERM from the filter
    assert out["seccomp"] == "2"
    assert not int(out["capeff"], 16) >> 16 & 1      # no CAP_SYS_MODULE


def test_open_by_handle_at(ct):
    """"Shocker": name_to_handle_at on a file of the container's rootfs, then
    open_by_handle_at with an inode number of the host's filesystem.

    What stops it: the default seccomp filter (open_by_handle_at: EPERM), for init and for
    every attached process; name_to_handle_at stays allowed (systemd uses it)."""
    out = ct.py("""
        import ctypes, json, os, struct
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(struct.pack("II", 128, 0) + bytes(128))
        mnt = ctypes.c_int()
        r1 = libc.name_to_handle_at(-100, b"/etc/passwd", buf, ctypes.byref(mnt), 0)
        e1 = ctypes.get_errno()
        mfd = os.open("/", os.O_RDONLY)
        # the classic attack walks handles (inode 2: the filesystem's root)
        ctypes.memmove(ctypes.addressof(buf) + 8, struct.pack("II", 2, 0), 8)
        r2 = libc.open_by_handle_at(mfd, buf, os.O_RDONLY)
        e2 = ctypes.get_errno()
        print(json.dumps({"name": [r1, e1], "open": [r2, e2]}))
    """)
    assert out["open"] == [-1, 1], out                 # EPERM: the filter
    assert out["name"][0] == 0 or out["name"][1] != 1, out


# -- /sys, /proc/sys, /proc/sysrq-trigger -------------------------------------------------

def test_sysrq_trigger(ct):
    """Write /proc/sysrq-trigger (reboot the host with 'b').

    What stops it: it is not there (security.readonly_paths has it, and a procfs of a
    non-initial pid namespace has none); nothing is written (we send 'h', help, to be safe
    if it ever were)."""
    r = ct.sh("echo h > /proc/sysrq-trigger")
    assert r.returncode != 0
    r = ct.sh("mkdir -p /tmp/p2 && mount -t proc proc /tmp/p2 && "
              "{ echo h > /tmp/p2/sysrq-trigger; echo wrote=$?; }; umount /tmp/p2")
    assert "wrote=0" not in r.stdout


def test_write_proc_sys_outside_own_namespaces(ct):
    """Write host-wide sysctls: /proc/sys/kernel/printk through the container's /proc/sys,
    after remounting it rw, and through a fresh procfs (an append-open, nothing written).

    What stops it: /proc/sys is mounted read-only (security.readonly_paths); unprivileged,
    the sysctl files belong to host root, unmapped in the container: remounting rw or a new
    proc mount gives nothing. Privileged: root has CAP_SYS_ADMIN over the host's user
    namespace, so it can remount and mount a fresh procfs -- the defence is the user
    namespace; this asserts that the privileged container gets that far (an LSM, as LXC's
    AppArmor profile, is what would stop it there).

    Its own namespaces stay writable: net.* of its network namespace."""
    printk = Path("/proc/sys/kernel/printk").read_text()
    r = ct.sh("exec 3>>/proc/sys/kernel/printk")
    # unprivileged: refused as not the owner first (EACCES), privileged: read-only (EROFS)
    want = "Permission denied" if ct.unprivileged else "Read-only"
    assert r.returncode != 0 and want in r.stderr, r.stderr
    r = ct.sh("mkdir -p /tmp/p3 && mount -t proc proc /tmp/p3 && "
              "{ (exec 3>>/tmp/p3/sys/kernel/printk) && echo fresh=opened; umount /tmp/p3; }")
    if ct.unprivileged:
        assert "fresh=opened" not in r.stdout, r.stdout + r.stderr
    else:
        assert "fresh=opened" in r.stdout, "privileged: a fresh procfs's sysctls, as expected"
    assert Path("/proc/sys/kernel/printk").read_text() == printk
    r = ct.sh("echo 1 > /proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward")
    assert r.stdout.strip() == "1", r.stderr


def test_write_sys(ct):
    """Write /sys (the host's devices and kernel knobs): /sys/kernel/mm/ksm/run (an
    append-open, nothing written), directly and after remounting /sys read-write.

    What stops it: /sys is mounted read-only. Unprivileged: that sysfs belongs to the host's
    user namespace, so the container can neither remount its superblock rw nor mount a
    sysfs of its own, and its files belong to host root, unmapped inside. Privileged: root has
    CAP_SYS_ADMIN over the host's user namespace and can remount /sys rw -- the defence is
    the user namespace (LXC adds an AppArmor profile there); this asserts what the
    privileged container gets, and puts /sys back read-only."""
    r = ct.sh("exec 3>>/sys/kernel/mm/ksm/run")
    assert r.returncode != 0 and "Read-only" in r.stderr, r.stderr
    r = ct.sh("mount -o remount,rw,bind /sys && echo remounted; mount -o remount,rw /sys && "
              "echo remounted-sb; mkdir -p /tmp/s3 && mount -t sysfs sysfs /tmp/s3 && "
              "echo fresh && umount /tmp/s3")
    try:
        if ct.unprivileged:
            # the bind's own flag may change (the container made that mount), the sysfs
            # does not: its files stay the host's
            assert "remounted-sb" not in r.stdout and "fresh" not in r.stdout, r.stdout
            r = ct.sh("exec 3>>/sys/kernel/mm/ksm/run")
            assert r.returncode != 0, "unprivileged: /sys/kernel/mm/ksm/run opened for writing"
            assert "Permission denied" in r.stderr or "Read-only" in r.stderr, r.stderr
        else:
            assert "remounted" in r.stdout, "privileged: /sys can be remounted rw, as expected"
    finally:
        ct.sh("mount -o remount,ro,bind /sys; mount -o remount,ro /sys")
    assert "rw" not in ct.sh("grep ' /sys ' /proc/mounts").stdout.split()[3].split(",")


# -- host processes, other containers ------------------------------------------------------

def test_host_processes_are_invisible_and_unsignalable(ct, suite):
    """See the host's processes (ps, /proc/PID) and kill one by its host pid.

    What stops it: the container's pid namespace -- host pids do not exist in it."""
    victim = subprocess.Popen(["sleep", "600"])
    try:
        r = ct.sh(f"ps -o pid,comm; ls -d /proc/{victim.pid}; kill -9 {victim.pid}; "
                  f"echo kill=$?; kill -9 -1; echo killall=$?")
        assert "kill=1" in r.stdout, r.stdout
        assert victim.poll() is None, "the host's process was killed"
        pids = [int(x.split()[0]) for x in r.stdout.splitlines()[1:] if x.split()
                and x.split()[0].isdigit()]
        assert pids and max(pids) < 1000 and 1 in pids
        assert "sleep" not in r.stdout.split("kill=")[0].replace("sleep 100000", "")
    finally:
        victim.kill()
        victim.wait()
    # kill -1 took the container's own processes only: its init lives on
    assert ct.sh("true").returncode == 0


def test_other_containers_rootfs_is_unreachable(ct, suite):
    """Reach the other container's rootfs: by its host path, through /proc/PID/root of its
    init, or by finding its marker file anywhere.

    What stops it: the mount namespace (the container sees its own root after pivot_root,
    the host's tree is not mounted) and the pid namespace (no other init to go through)."""
    other = next(c for c in suite.values() if c is not ct)
    marker = other.root / f"root/secret-of-{other.kind}"
    marker.write_text("other's secret\n")
    init = other.state()["pid"]
    try:
        r = ct.sh(f"cat {marker}; cat /proc/{init}/root/root/{marker.name}; "
                  f"find / -xdev -name {marker.name}; echo end")
    finally:
        marker.unlink()
    assert "other's secret" not in r.stdout and marker.name not in r.stdout, r.stdout
    assert r.stdout.strip() == "end"


# -- device nodes that work on the host ------------------------------------------------------

def test_device_node_made_inside_does_not_work_on_the_host(ct):
    """mknod /root/mem c 1 1 (and /root/disk, the host's disk) inside: on the dir backend
    the node would be a real node on the host's filesystem, in the rootfs, that host root
    opens without the container's device cgroup.

    What stops it: the device cgroup allows mknod of the default devices only (not 'c *:*
    m' as LXC's default does); unprivileged, mknod in a user namespace is refused."""
    mj, mn = _root_dev()
    r = ct.sh(f"mknod /root/mem c 1 1; mknod /root/disk b {mj} {mn}; "
              "mknod /root/null2 c 1 3; echo done")
    for n in ("mem", "disk"):
        p = ct.root / "root" / n
        assert not p.exists(), f"{ct.kind}: mknod {n} made a host node {p}"
    null2 = ct.root / "root/null2"
    if ct.unprivileged:
        assert not null2.exists()
    else:    # an allowed device: harmless (/dev/null), and mknod works for it
        assert stat.S_ISCHR(null2.stat().st_mode)
        null2.unlink()
    assert "done" in r.stdout


# -- symlinks planted in the rootfs ------------------------------------------------------------

@pytest.fixture
def host_canary(tmp_path) -> Path:
    d = tmp_path / "host-target"
    d.mkdir()
    (d / "canary").write_text("host data\n")
    return d


def _untouched(d: Path) -> None:
    assert sorted(p.name for p in d.iterdir()) == ["canary"], sorted(d.iterdir())
    assert (d / "canary").read_text() == "host data\n"
    assert not any(str(d) in line for line in open("/proc/self/mountinfo"))


def test_symlinks_at_attach(ct, host_canary):
    """lxpy-attach --cwd through a symlink that points at a host path, and attach with a
    symlinked home and shell.

    What stops it: attach enters the container's mount namespace (setns) before it resolves
    anything -- the cwd, /etc/passwd and the command are looked up in the container's tree,
    where an absolute link stays inside."""
    ct.sh(f"ln -sfn {host_canary} /root/link; mkdir -p {host_canary}; "
          f"echo inside > {host_canary}/inside")
    r = subprocess.run([str(BIN / "lxpy-attach"), "-P", str(ct.run.lxpath), "-n", ct.name,
                        "--cwd", "/root/link", "--", "/bin/sh", "-c",
                        "ls; touch made-here; pwd"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "canary" not in r.stdout and "inside" in r.stdout
    _untouched(host_canary)
    ct.sh("rm -f /root/link")


@pytest.mark.parametrize("passwd", ["fifo", "/dev/zero", "/dev/console"])
def test_attach_reads_no_special_file_as_passwd(ct, passwd):
    """Root inside replaces /etc/passwd (and /etc/group) with a FIFO, or a link to
    /dev/zero or /dev/console, then waits for the admin's lxpy-attach: its child reads them
    with the host's credentials after entering the container, before exec -- it would hang
    on the FIFO (holding the admin's terminal) or read /dev/zero without end.

    What stops it: attach opens them non-blocking and reads a regular file only (at most
    4 MiB); anything else is as if it were missing (root, home /root)."""
    script = ("cp /etc/passwd /etc/passwd.real; cp /etc/group /etc/group.real; "
              "rm /etc/passwd /etc/group; " +
              ("mkfifo /etc/passwd /etc/group" if passwd == "fifo" else
               f"ln -s {passwd} /etc/passwd; ln -s {passwd} /etc/group"))
    assert ct.sh(script).returncode == 0
    try:
        # (not `id`: it would read the FIFO itself)
        r = ct.attach("/bin/sh", "-c", "grep ^Uid: /proc/self/status; echo $HOME",
                      timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[1:] == ["0", "0", "0", "0", "/root"], r.stdout
    finally:
        (ct.root / "etc/passwd").unlink()
        (ct.root / "etc/group").unlink()
        (ct.root / "etc/passwd.real").rename(ct.root / "etc/passwd")
        (ct.root / "etc/group.real").rename(ct.root / "etc/group")


def _info_state(lxpy, name: str) -> str:
    out = lxpy("info", "-n", name).stdout
    return next(x.split()[1] for x in out.splitlines() if x.startswith("State:"))


@pytest.mark.parametrize("kind", list(KINDS))
def test_symlinks_at_start_copy_snapshot_destroy(lxpy, lxpath, unique, tmp_path, kind,
                                                 host_canary):
    """A rootfs whose /etc/hostname, /root/data (a directory), /srv (a mount target's
    parent) and /root/canary point at host paths; then start (a bind mount to /srv/data,
    create=dir), copy (full and snapshot clone: the hostname is rewritten), snapshot and
    restore, destroy; and /proc, /sys, /dev as symlinks to host directories.

    What stops it: every write into a rootfs and every mount target is resolved inside it
    (openat2 RESOLVE_IN_ROOT, safefs); removal never follows a link; start refuses a
    rootfs whose /proc, /sys or /dev is not a directory. (A snapshot of a dir container
    turns it into an overlay on the snapshot, so the start checks come first.)"""
    root = _create(Runner(lxpath), unique, KINDS[kind], tmp_path)
    hostname = host_canary / "canary"
    (root / "etc/hostname").unlink(missing_ok=True)
    os.symlink(hostname, root / "etc/hostname")
    os.symlink(host_canary, root / "root/data")
    os.symlink(hostname, root / "root/canary")
    shutil.rmtree(root / "srv", ignore_errors=True)
    os.symlink(host_canary, root / "srv")
    (root / str(host_canary).lstrip("/")).mkdir(parents=True)   # where the link leads inside
    # a source an unprivileged container's root can reach (not under pytest's 0700 dirs)
    with open(lxpath / unique / "config.toml", "a") as f:
        f.write('\n[[mount]]\nsource = "/usr/share"\ntarget = "/srv/data"\n'
                'options = ["bind", "ro", "create=dir"]\n')
    lxpy("start", "-n", unique)
    try:
        _untouched(host_canary)
        # inside, /srv/data is /<host_canary>/data: the link resolved in the rootfs
        r = Ct(Runner(lxpath), unique, kind).sh(f"grep -c ' {host_canary}/data ' "
                                                 "/proc/mounts; ls /srv/data")
        assert r.stdout.split()[0] == "1" and "doc" in r.stdout.split(), r.stderr
        # the mount point was made where the link leads inside the rootfs
        assert (root / str(host_canary).lstrip("/") / "data").is_dir()
    finally:
        lxpy("stop", "-n", unique, "-k")
    for d in ("proc", "sys", "dev"):
        p = root / d
        keep = p.with_name(d + ".real")
        p.rename(keep)
        os.symlink(host_canary, p)
        r = lxpy("start", "-n", unique, check=False)
        # What the admin is told varies (a race in the start handshake, not in what is
        # refused -- see the issue's closing note): mostly this one line; sometimes "the
        # namespace helper exited before forking init"; sometimes lxpy-start returns 0
        # and the container stops right after. It never runs.
        if r.returncode == 0:
            wait_for(lambda: _info_state(lxpy, unique) == "STOPPED", what=f"/{d}: stopped")
        else:
            assert r.returncode == 1 and (f"/{d} is a symlink" in r.stderr or
                                          "namespace helper exited" in r.stderr), (d, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1
        p.unlink()
        keep.rename(p)
        _untouched(host_canary)
    lxpy("copy", "-n", unique, "-N", unique + "c")
    lxpy("copy", "-n", unique, "-N", unique + "s", "-s")
    lxpy("snapshot", "-n", unique)
    lxpy("snapshot", "-n", unique, "-r", "snap0", "-N", unique + "r")
    _untouched(host_canary)
    # the full copy's hostname was rewritten in its own tree, the link replaced by a file
    copied = lxpath / (unique + "c") / "rootfs/etc/hostname"
    assert not copied.is_symlink() and copied.read_text().strip() == unique + "c"
    assert (lxpath / (unique + "c") / "rootfs/root/data").is_symlink()   # copied as a link
    for n in (unique + "c", unique + "s", unique + "r"):
        lxpy("destroy", "-n", n, "-f")
    lxpy("snapshot", "-n", unique, "-d", "ALL")
    _untouched(host_canary)
    lxpy("destroy", "-n", unique, "-f")
    _untouched(host_canary)
    assert not (lxpath / unique).exists()


def test_export_does_not_exist_yet(lxpy):
    """Export (issue 16 lists it among the symlink cases) is not a command yet: there is
    nothing to attack. When lxpy-export exists, add it to the test above."""
    assert not (BIN / "lxpy-export").exists()

"""The container side of the start sequence, run in processes forked from the monitor.

    monitor --fork--> intermediate: joins the cgroup, setns() to shared namespaces,
                      unshare()s the others, forks PID 1 and exits
            PID 1:    runs the plan's mount operations (plan.py, mounts.py: the rootfs,
                      /proc, /sys, pivot_root, /dev, the config's mounts), hostname;
                      waits for "go"; limits, security; execs init

Both talk to the monitor over one SOCK_SEQPACKET socket (handshake messages are
"key=value" lines, see proto.py). A failure is sent as data (step, syscall, errno, path)
and the process exits; a successful execve() closes the socket (CLOEXEC), which the
monitor reads as "init runs".

Only this module (and what it imports) runs here; the monitor does not import it, so the
modules it needs (ctypes wrappers, config, cgroups) cost the monitor no memory.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import sys

from ..errors import LxpyError
from ..linux import mount as m
from ..linux import ns
from ..linux.tty import set_controlling
from . import cgjoin, proto, security
from .hook import run_shell
from .mounts import Helper, PivotRoot, Run
from .plan import Plan, host_id


class StepFailed(Exception):
    def __init__(self, step: str, message: str, syscall: str = "", err: int = 0, path: str = "",
                 hint: str = ""):
        super().__init__(message)
        self.step, self.message, self.syscall, self.err, self.path, self.hint = (
            step, message, syscall, err, path, hint)


class _Step:
    """with step("mount /proc"): ... turns an OSError into StepFailed with its data."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, et, e, tb) -> bool:
        if e is None or isinstance(e, StepFailed):
            return False
        if isinstance(e, OSError):
            text = e.strerror or str(e)
            syscall = text.split("()", 1)[0] if "()" in text else ""
            why = text.split(": ", 1)[1] if "(): " in text else text
            path = e.filename if isinstance(e.filename, str) else ""
            where = f": {path}" if path and path not in self.name else ""
            raise StepFailed(self.name, f"{self.name}: {why}{where}",
                             syscall, e.errno or 0, path or "") from None
        if isinstance(e, LxpyError):    # the storage layer's, in the idmap helper
            raise StepFailed(self.name, f"{self.name}: {e.message}",
                             hint=e.hint or "") from None
        _print_exception(e)
        raise StepFailed(self.name, f"{self.name}: {type(e).__name__}: {e}") from None


step = _Step


def _print_exception(e: BaseException) -> None:
    """An unexpected error's traceback, for the monitor's log, without the traceback module
    (~5 ms that every start would pay to import it before pivot_root): the file, line and
    function of each frame, then the exception; no source lines."""
    lines = ["Traceback (most recent call last):\n"]
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}\n')
        tb = tb.tb_next
    lines.append(f"{type(e).__name__}: {e}\n")
    try:
        os.write(2, "".join(lines).encode(errors="replace"))
    except OSError:
        pass


def _fail(sock, e: BaseException) -> None:
    if isinstance(e, StepFailed):
        msg = {"step": e.step, "message": e.message, "syscall": e.syscall,
               "errno": str(e.err), "path": e.path, "hint": e.hint}
    else:
        _print_exception(e)
        msg = {"step": "internal", "message": f"{type(e).__name__}: {e}"}
    try:
        proto.send(sock, "error", **msg)
        # Read what is queued for us ("go", which lxpy-start sends ahead): a SEQPACKET
        # socket closed with unread data makes the monitor's end read ECONNRESET, not this
        # error.
        sock.setblocking(False)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    os._exit(1)


# ---------------------------------------------------------------------------------------
# The intermediate process


def intermediate(plan: Plan, sock, ptys: list[tuple[int, str]], born_in: str = "") -> None:
    """Runs in the first child of the monitor (or of lxpy-start, see start._prefork);
    never returns. born_in: the payload cgroup2 directory this process was born in
    (fork_payload), "" if none."""
    signal.set_wakeup_fd(-1)        # the forking process's handlers and wakeup fd go
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    try:
        _intermediate(plan, sock, ptys, born_in)
    except BaseException as e:  # noqa: BLE001 - everything goes back as data
        _fail(sock, e)
    os._exit(0)


def _intermediate(plan: Plan, sock, ptys: list[tuple[int, str]], born_in: str = "") -> None:
    if not plan.app:
        os.setsid()     # (lxpy-execute: stay in the terminal's foreground process group)
    # Join the payload cgroup before unshare(CLONE_NEWCGROUP): it becomes the root of the
    # container's cgroup namespace. (The paths come from Cgroup.dirs() in lxpy-start, so
    # this process does not import the cgroup layer.)
    for procs in plan.cgroup_procs:
        d = os.path.dirname(procs)
        if d == born_in:
            continue
        with step("join cgroup"):
            cgjoin.join_self(d)
    # Namespaces shared with another container: setns() on its init's pidfd.
    for nsname, who in plan.ns_share.items():
        if who == "host":
            continue
        with step(f"share {nsname} namespace with {who}"):
            fd = os.open(f"/proc/{plan.share_pids[who]}/ns/{nsname}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                ns.setns(fd, ns.FLAGS[nsname])
            finally:
                os.close(fd)
    trees = _enter_userns(plan, sock) if plan.idmap_uid else {}
    create = [n for n in plan.ns_create if n not in plan.ns_share and n != "user"]
    with step("unshare namespaces " + ",".join(create)):
        ns.unshare(ns.flags_of(create))
    pid = os.fork()
    if pid == 0:
        try:
            pid1(plan, sock, Run(ptys, trees))
        except BaseException as e:  # noqa: BLE001
            _fail(sock, e)
        os._exit(1)
    proto.send(sock, "forked", pid=str(pid))
    os._exit(0)


def _enter_userns(plan: Plan, sock) -> dict[object, int]:
    """An unprivileged container: unshare the user namespace, have the monitor write its
    uid/gid maps, become root in it. Returns the idmapped trees (the rootfs, the bind
    mounts), by operation: made by a helper that stays in the host's user namespace, as
    idmapping needs (_helper)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    helper = os.fork()
    if helper == 0:
        a.close()
        _helper(plan, b)
    b.close()
    with step("unshare user namespace"):
        ns.unshare(ns.CLONE_NEWUSER)
    proto.send(sock, "userns", pid=str(os.getpid()))
    kind, msg = proto.recv(sock)
    if kind != "mapped":
        raise StepFailed("write uid/gid maps", msg.get("message") or
                         "the monitor did not map the user namespace")
    with step("become root in the user namespace"):
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        os.setgroups([])
    proto.send(a, "go")
    data, anc, _flags, _addr = a.recvmsg(65536, socket.CMSG_SPACE(4 * len(plan.mounts)))
    os.waitpid(helper, 0)
    a.close()
    kind, msg = proto.decode(data) if data else ("eof", {})
    if kind != "trees":
        raise StepFailed(msg.get("step") or "idmap the rootfs",
                         msg.get("message") or "the idmap helper failed",
                         msg.get("syscall", ""), int(msg.get("errno") or 0), msg.get("path", ""),
                         msg.get("hint", ""))
    fds = [int.from_bytes(anc[0][2][i:i + 4], sys.byteorder)
           for i in range(0, len(anc[0][2]), 4)] if anc else []
    ops = [plan.mounts[int(i)] for i in msg["ops"].split(",") if i]
    return dict(zip(ops, fds, strict=True))


def _helper(plan: Plan, sock) -> None:
    """The idmap helper: on "go" (its parent is root in the mapped user namespace), each
    operation's tree that needs the host's user namespace, made in a private mount
    namespace (whatever it mounts on the way goes with it); sent as fds with the indexes
    of their operations. Never returns."""
    try:
        kind, _ = proto.recv(sock)
        if kind != "go":
            os._exit(1)
        with step("enter a private mount namespace for idmapping"):
            ns.unshare(ns.CLONE_NEWNS)
            m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
            userns = os.open(f"/proc/{os.getppid()}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        helper = Helper(userns, (host_id(plan.idmap_uid, 0), host_id(plan.idmap_gid, 0)),
                        plan.run_dir)
        where, fds = [], []
        for i, op in enumerate(plan.mounts):
            with step(op.describe()):
                fd = op.helper_tree(helper)
            if fd is not None:
                where.append(str(i))
                fds.append(fd)
        sock.sendmsg([proto.encode("trees", ops=",".join(where))],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                        b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))] if fds else [])
    except BaseException as e:  # noqa: BLE001
        _fail(sock, e)
    os._exit(0)


# ---------------------------------------------------------------------------------------
# PID 1


def pid1(plan: Plan, sock, run: Run) -> None:
    # Everything PID 1 will need after pivot_root must be imported now: the host's
    # Python library is out of reach afterwards.
    if plan.prlimits:
        import resource  # noqa: F401 - an extension module: loaded only when it is needed
    if plan.security_policy:
        with step("prepare security policy"):
            security.prepare(plan.security_policy)
    if not plan.app:
        os.setsid()
    for op in plan.mounts:
        if isinstance(op, PivotRoot):       # what comes from the host, taken now (from
            for other in plan.mounts:       # the mounts made private), put in place after
                with step(other.describe()):
                    other.take(run)
        try:
            with step(op.describe()):
                op.execute(run)
        except StepFailed as e:     # a step the kernel may refuse an unprivileged container
            if not op.warn:
                raise
            os.write(2, f"lxpy: {e.message} ({op.warn})\n".encode())
    if plan.own("uts") and plan.hostname:
        with step("sethostname"):
            ns.sethostname(plan.hostname)
    if plan.own("net"):
        with step("bring up lo"):
            _lo_up()
    # Wait for the monitor: cgroup, network and the rest are ready.
    sock.settimeout(plan.handshake_timeout)
    with step("wait for the monitor"):
        kind, msg = proto.recv(sock)
    if kind != "go":
        os._exit(1)
    for op in plan.late_sysctls:
        with step(op.describe()):
            op.execute(run)
    _exec_init(plan, sock, run)


def _exec_init(plan: Plan, sock, run: Run) -> None:
    """Limits, console, environment, hooks, security, exec."""
    for name, (soft, hard) in plan.prlimits.items():
        import resource  # PID 1: only for a container with prlimits
        with step(f"prlimit {name}"):
            rl = getattr(resource, f"RLIMIT_{name.upper()}")
            inf = resource.RLIM_INFINITY
            resource.setrlimit(rl, (inf if soft < 0 else soft, inf if hard < 0 else hard))
    env = dict(plan.env)
    if not plan.app:
        with step("open /dev/console"):
            if run.ptys:
                fd = os.open("/dev/console", os.O_RDWR)
                set_controlling(fd)
            else:
                fd = os.open("/dev/null", os.O_RDWR)
            for i in (0, 1, 2):
                os.dup2(fd, i)
            if fd > 2:
                os.close(fd)
    with step("chdir " + plan.init_cwd):
        os.chdir(plan.init_cwd)
    for hook in plan.hooks_start:
        with step(f"start hook {hook}"):
            _run_hook(hook, env)
    uid, gid = plan.init_uid, plan.init_gid

    def switch_user() -> None:
        if gid:
            os.setgroups([])
            os.setgid(gid)
        if uid:
            os.setuid(uid)
    if plan.security_policy:
        with step("apply security policy"):
            security.apply(plan.security_policy, switch_user=switch_user)
    elif uid or gid:
        with step("switch user"):
            switch_user()
    cmd = list(plan.init_cmd)
    if plan.app:
        _app_init(sock, cmd, env)
    with step(f"exec init {cmd[0]}"):
        _exec(cmd, {**env, **run.env})       # NOTIFY_SOCKET: for init only


def _exec(cmd: list[str], env: dict) -> None:
    """execve, searching PATH for a bare name (os.execvpe would import modules that are
    out of reach after pivot_root)."""
    if "/" in cmd[0]:
        cands = [cmd[0]]
    else:
        cands = [os.path.join(d or ".", cmd[0]) for d in
                 env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
                 .split(":")]
    err = 2
    for path in cands:
        try:
            os.execve(path, cmd, env)
        except OSError as e:
            if e.errno not in (2, 20) or err == 2:   # keep EACCES over ENOENT, like a shell
                err = e.errno or err
    raise OSError(err, f"execve(): {os.strerror(err)}", cmd[0])


def _app_init(sock, cmd: list[str], env: dict) -> None:
    """lxpy-execute: stay PID 1, run the command, reap everything, pass its status."""
    pid = os.fork()
    if pid == 0:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(s, signal.SIG_DFL)
        try:
            with step(f"exec {cmd[0]}"):
                _exec(cmd, env)
        except BaseException as e:  # noqa: BLE001
            _fail(sock, e)
        os._exit(127)
    sock.close()

    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, forward)
    # Ctrl-C and Ctrl-\ reach the command from the terminal itself (same process group)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    status = 0
    while True:
        try:
            p, st = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if p == pid:
            status = os.waitstatus_to_exitcode(st)
            status = 128 - status if status < 0 else status
            # The command is done: what it left behind goes (we are PID 1 of the ns).
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
    os._exit(status)


def _run_hook(cmd: str, env: dict) -> None:
    code = run_shell(cmd, env)
    if code != 0:
        raise OSError(0, f"hook(): exited with status {code}", cmd)


def _lo_up() -> None:
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))
    finally:
        s.close()

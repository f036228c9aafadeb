"""The container side of the start sequence, run in processes forked from the monitor.

    monitor --fork--> intermediate: joins the cgroup, setns() to shared namespaces,
                      unshare()s the others, forks PID 1 and exits
            PID 1:    mounts the rootfs, /proc, /sys, /dev, the config's mounts,
                      pivot_root, hostname, env, limits, security; waits for "go"; execs init

Both talk to the monitor over one SOCK_SEQPACKET socket (handshake messages are
"key=value" lines, see proto.py). A failure is sent as data (step, syscall, errno, path)
and the process exits; a successful execve() closes the socket (CLOEXEC), which the
monitor reads as "init runs".

Only this module (and what it imports) runs here; the monitor does not import it, so the
modules it needs (ctypes wrappers, config, cgroups) cost the monitor no memory.
"""

from __future__ import annotations

import os
import stat

try:  # the C module: the signal wrapper's enums cost every start ~3 ms
    import _signal as signal
except ImportError:  # pragma: no cover - another Python implementation
    import signal  # type: ignore[no-redef]

from . import cgjoin, proto

DEV_NODES = (  # name, major, minor
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
    ("tty", 5, 0),
)
EXTRA_DEVICES = {"fuse": ("fuse", 10, 229), "tun": ("net/tun", 10, 200),
                 "kvm": ("kvm", 10, 232), "loop": ("loop-control", 10, 237)}


class _RootfsOnly:
    """What Backend.mount() reads of a Config (rootfs.*), without loading the config."""

    def __init__(self, values: dict):
        import types
        self.rootfs = types.SimpleNamespace(**values)

    def get(self, key: str):
        section, _, name = key.partition(".")
        if section != "rootfs":
            raise KeyError(key)
        return getattr(self.rootfs, name)


class StepFailed(Exception):
    def __init__(self, step: str, message: str, syscall: str = "", err: int = 0, path: str = ""):
        super().__init__(message)
        self.step, self.message, self.syscall, self.err, self.path = (
            step, message, syscall, err, path)


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
               "errno": str(e.err), "path": e.path}
    else:
        _print_exception(e)
        msg = {"step": "internal", "message": f"{type(e).__name__}: {e}"}
    try:
        proto.send(sock, "error", **msg)
    except OSError:
        pass
    os._exit(1)


# ---------------------------------------------------------------------------------------
# The intermediate process


def intermediate(plan: dict, sock, ptys: list[tuple[int, str]], born_in: str = "") -> None:
    """Runs in the first child of the monitor (or of lxpy-start, see start._prefork);
    never returns. born_in: the payload cgroup2 directory this process was born in
    (fork_payload), "" if none."""
    try:
        _intermediate(plan, sock, ptys, born_in)
    except BaseException as e:  # noqa: BLE001 - everything goes back as data
        _fail(sock, e)
    os._exit(0)


def _intermediate(plan: dict, sock, ptys: list[tuple[int, str]], born_in: str = "") -> None:
    from ..linux import ns

    if not plan.get("app"):
        os.setsid()     # (lxpy-execute: stay in the terminal's foreground process group)
    # Join the payload cgroup before unshare(CLONE_NEWCGROUP): it becomes the root of the
    # container's cgroup namespace. (The paths come from Cgroup.dirs() in lxpy-start, so
    # this process does not import the cgroup layer.)
    for procs in plan.get("cgroup_procs") or ():
        d = os.path.dirname(procs)
        if d == born_in:
            continue
        with step("join cgroup"):
            cgjoin.join_self(d)
    # Namespaces shared with another container: setns() on its init's pidfd.
    share = plan.get("ns_share") or {}
    for nsname, who in share.items():
        if who == "host":
            continue
        with step(f"share {nsname} namespace with {who}"):
            pid = int(plan["share_pids"][who])
            fd = os.open(f"/proc/{pid}/ns/{nsname}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                ns.setns(fd, ns.FLAGS[nsname])
            finally:
                os.close(fd)
    if plan.get("idmap_uid"):
        plan["_rootfs_tree"] = _enter_userns(plan, sock)
    create = [n for n in plan["ns_create"] if n not in share and n != "user"]
    with step("unshare namespaces " + ",".join(create)):
        ns.unshare(ns.flags_of(create))
    steps = plan.get("cgroup_mounts") if "mnt" in create else None
    pid = os.fork()
    if pid == 0:
        try:
            pid1(plan, sock, ptys, steps)
        except BaseException as e:  # noqa: BLE001
            _fail(sock, e)
        os._exit(1)
    proto.send(sock, "forked", pid=str(pid))
    os._exit(0)


def _enter_userns(plan: dict, sock) -> int:
    """An unprivileged container: unshare the user namespace, have the monitor write its
    uid/gid maps, become root in it. Returns an idmapped clone of the rootfs tree (made by
    a helper that stays in the host's user namespace, as idmapping needs)."""
    import _socket
    import sys

    from ..linux import mount as m
    from ..linux import ns
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    helper = os.fork()
    if helper == 0:
        try:
            a.close()
            kind, _ = proto.recv(b)
            if kind != "go":
                os._exit(1)
            with step("idmap the rootfs"):
                fd_ns = os.open(f"/proc/{os.getppid()}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
                tree = m.open_tree(plan["rootfs"], m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC |
                                   m.AT_RECURSIVE)
                m.mount_setattr(tree, m.MOUNT_ATTR_IDMAP, userns_fd=fd_ns,
                                flags=m.AT_EMPTY_PATH | m.AT_RECURSIVE)
            b.sendmsg([b"tree"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                   tree.to_bytes(4, sys.byteorder))])
        except BaseException as e:  # noqa: BLE001
            _fail(b, e)
        os._exit(0)
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
    data, anc, _flags, _addr = a.recvmsg(65536, 64)
    os.waitpid(helper, 0)
    if not anc:
        kind, msg = proto.decode(data) if data else ("eof", {})
        raise StepFailed(msg.get("step") or "idmap the rootfs",
                         msg.get("message") or "the idmap helper failed",
                         msg.get("syscall", ""), int(msg.get("errno") or 0), msg.get("path", ""))
    a.close()
    return int.from_bytes(anc[0][2][:4], sys.byteorder)


# ---------------------------------------------------------------------------------------
# PID 1


def _touch(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    os.close(fd)


def pid1(plan: dict, sock, ptys: list[tuple[int, str]], cg_steps) -> None:
    # Everything PID 1 will need after pivot_root must be imported now: the host's
    # Python library is out of reach afterwards.
    import fcntl  # noqa: F401
    import struct  # noqa: F401
    if plan.get("prlimits"):
        import resource  # noqa: F401 - an extension module: loaded only when it is needed

    from ..linux import mount as m
    from ..linux import ns
    from ..linux import tty  # noqa: F401
    if plan.get("security_policy"):
        with step("prepare security policy"):
            from . import security
            security.prepare(plan["security_policy"])
    if not plan.get("app"):
        os.setsid()

    create = set(plan["ns_create"]) - set(plan.get("ns_share") or {})
    own_net = "net" in create
    root = plan["staging"]
    nosuid_nodev_noexec = m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC

    with step("make / private"):
        m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
    userns = bool(plan.get("idmap_uid"))
    with step("mount rootfs"):
        os.makedirs(root, exist_ok=True)
        if plan.get("_rootfs_tree") is not None:
            m.move_mount(plan["_rootfs_tree"], root)
            os.close(plan["_rootfs_tree"])
        elif plan["backend"] == "dir" or plan.get("storage_fallback"):
            m.mount(plan["rootfs"], root, None, m.MS_BIND | m.MS_REC)
        else:
            from .. import storage
            from pathlib import Path
            storage.get(plan["backend"]).mount(Path(plan["dir"]), _RootfsOnly(plan["rootfs_cfg"]),
                                               Path(root))
            if not m.is_mountpoint(root):
                m.mount(root, root, None, m.MS_BIND | m.MS_REC)
    for d in ("proc", "sys", "dev"):
        p = f"{root}/{d}"
        if os.path.islink(p):
            raise StepFailed("check rootfs", f"check rootfs: /{d} is a symlink in the rootfs; "
                             "it must be a directory", path=p)
        if not os.path.exists(p):
            with step(f"create /{d} in the rootfs"):
                os.mkdir(p, 0o755)
    with step("mount /proc"):
        m.mount("proc", f"{root}/proc", "proc", nosuid_nodev_noexec)
    sysctls = plan.get("sysctls") or {}
    late_sysctls = {}
    for k, v in sysctls.items():
        if k.startswith("net."):
            late_sysctls[k] = v
            continue
        _sysctl(f"{root}/proc", k, v)
    with step("mount /sys"):
        if own_net or "net" not in plan["ns_create"]:
            m.mount("sysfs", f"{root}/sys", "sysfs", nosuid_nodev_noexec | m.MS_RDONLY)
        else:
            m.mount("/sys", f"{root}/sys", None, m.MS_BIND | m.MS_REC)
            m.mount(None, f"{root}/sys", None,
                    m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | nosuid_nodev_noexec)
    # What comes from the host is taken now, as detached mount trees, and put in place
    # after pivot_root, where every path resolves inside the container.
    trees: dict[str, int] = {}
    with step("open console pty"):
        if ptys:
            trees["/dev/console"] = m.open_tree(ptys[0][1])
            for i, (_fd, path) in enumerate(ptys[1:], 1):
                trees[f"/dev/tty{i}"] = m.open_tree(path)
    devices = [*DEV_NODES] + [EXTRA_DEVICES[d] for d in plan.get("devices") or ()]
    if userns:     # no mknod in a user namespace: the host's nodes are bind-mounted
        for name, _major, _minor in devices:
            if os.path.exists(f"/dev/{name}"):
                with step(f"open /dev/{name}"):
                    trees[f"/dev/{name}"] = m.open_tree(f"/dev/{name}")
    user_mounts = []
    for mnt in plan.get("mounts") or ():
        opts = list(mnt["options"])
        optional = "optional" in opts
        if mnt["type"] == "bind":
            with step(f"mount {mnt['target']}: open {mnt['source']}"):
                src = mnt["source"]
                if not os.path.isabs(src):
                    src = os.path.join(plan["dir"], src)
                if not os.path.exists(src):
                    if optional:
                        continue
                    raise FileNotFoundError(2, "open_tree(): No such file or directory", src)
                flags = m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC
                if "rbind" in opts:
                    flags |= m.AT_RECURSIVE
                fd = m.open_tree(src, flags)
                if "ro" in opts:
                    m.mount_setattr(fd, m.MOUNT_ATTR_RDONLY,
                                    flags=m.AT_EMPTY_PATH | (m.AT_RECURSIVE
                                                             if "rbind" in opts else 0))
                user_mounts.append((mnt, fd, os.path.isdir(src)))
        else:
            user_mounts.append((mnt, -1, True))

    from . import notify
    notify_fd = notify.open_for_guest(plan)     # the monitor's socket, for systemd's READY=1

    with step("pivot_root"):
        os.chdir(root)
        m.pivot_root(".", ".")
        m.umount2(".", m.MNT_DETACH)
        os.chdir("/")

    # From here on, "/" is the container's root.
    with step("mount /dev"):
        m.mount("none", "/dev", "tmpfs", m.MS_NOSUID | m.MS_NOEXEC,
                "mode=755,size=65536k,nr_inodes=16384")
    for name, major, minor in () if userns else devices:
        with step(f"create /dev/{name}"):
            path = f"/dev/{name}"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(path, 0o666)
    with step("mount /dev/pts"):
        os.mkdir("/dev/pts", 0o755)
        m.mount("devpts", "/dev/pts", "devpts", m.MS_NOSUID | m.MS_NOEXEC,
                f"newinstance,ptmxmode=0666,mode=0620,gid=5,max={plan.get('ptys', 1024)}")
        os.symlink("pts/ptmx", "/dev/ptmx")
    with step("mount /dev/shm"):
        os.mkdir("/dev/shm", 0o1777)
        m.mount("shm", "/dev/shm", "tmpfs", m.MS_NOSUID | m.MS_NODEV, "mode=1777,size=65536k")
    if "ipc" in create:
        with step("mount /dev/mqueue"):
            os.mkdir("/dev/mqueue", 0o755)
            m.mount("mqueue", "/dev/mqueue", "mqueue", nosuid_nodev_noexec)
    with step("create /dev links"):
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(target, f"/dev/{name}")
    for target, fd in trees.items():
        with step(f"mount {target}"):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _touch(target)
            m.move_mount(fd, target)
            os.close(fd)
    if not plan.get("app"):
        # A boot id of its own for every boot of the container, as LXC and systemd-nspawn
        # give one: with the host's, journald filed every boot of the guest under one boot
        # (journalctl -b showed them all, --list-boots one) and under the host's.
        _step_or_warn(userns, "make the container's boot id", "unprivileged container: the "
                      "host's boot id shows through", _boot_id, m, nosuid_nodev_noexec)

    # /proc and /sys: read-only and masked paths.
    for p in plan.get("readonly_paths") or ():
        if not os.path.exists(p):
            continue
        with step(f"make {p} read-only"):
            m.mount(p, p, None, m.MS_BIND | m.MS_REC)
            m.mount(None, p, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | nosuid_nodev_noexec)
    if own_net and "/proc/sys" in (plan.get("readonly_paths") or ()):
        with step("make /proc/sys/net writable"):
            m.mount("/proc/sys/net", "/proc/sys/net", None, m.MS_BIND)
            m.mount(None, "/proc/sys/net", None, m.MS_BIND | m.MS_REMOUNT | nosuid_nodev_noexec)
    for p in plan.get("masked_paths") or ():
        try:
            st = os.lstat(p)
        except OSError:
            continue
        with step(f"mask {p}"):
            if stat.S_ISDIR(st.st_mode):
                m.mount("none", p, "tmpfs", m.MS_RDONLY | nosuid_nodev_noexec, "size=0")
            else:
                m.mount("/dev/null", p, None, m.MS_BIND)

    if cg_steps:
        # cgroup v1 hierarchies cannot be mounted from a user namespace here
        _step_or_warn(userns, "mount /sys/fs/cgroup", "unprivileged container: no cgroup "
                      "filesystem inside", _cgroup_mounts, m, cg_steps)

    # The config's [[mount]] entries, resolved inside the container.
    for mnt, fd, isdir in user_mounts:
        # realpath after pivot_root: symlinks resolve inside the container's root
        target = os.path.realpath(mnt["target"])
        opts = list(mnt["options"])
        with step(f"mount {target}"):
            _prepare_target(target, opts, isdir)
            if fd >= 0:
                m.move_mount(fd, target)
                os.close(fd)
            else:
                flags, data = m.parse_options([o for o in opts if not o.startswith("create=")
                                               and o != "optional"])
                m.mount(mnt["source"] or "tmpfs", target, mnt["type"], flags, data or None)

    with step("mount /run/host/notify"):
        notify_env = notify.mount_in_guest(notify_fd, plan["init_cmd"], plan["env"])

    if "uts" in create and plan.get("hostname"):
        with step("sethostname"):
            ns.sethostname(plan["hostname"])
    if own_net:
        with step("bring up lo"):
            _lo_up()

    # Wait for the monitor: cgroup, network and the rest are ready.
    sock.settimeout(plan.get("handshake_timeout", 30))
    with step("wait for the monitor"):
        kind, msg = proto.recv(sock)
    if kind != "go":
        os._exit(1)
    for k, v in late_sysctls.items():
        _sysctl("/proc", k, v)

    # Limits, console, environment, security, exec.
    for name, (soft, hard) in (plan.get("prlimits") or {}).items():
        import resource
        with step(f"prlimit {name}"):
            rl = getattr(resource, f"RLIMIT_{name.upper()}")
            inf = resource.RLIM_INFINITY
            resource.setrlimit(rl, (inf if soft < 0 else soft, inf if hard < 0 else hard))
    env = dict(plan["env"])
    if not plan.get("app"):
        with step("open /dev/console"):
            if ptys:
                fd = os.open("/dev/console", os.O_RDWR)
                from ..linux.tty import set_controlling
                set_controlling(fd)
            else:
                fd = os.open("/dev/null", os.O_RDWR)
            for i in (0, 1, 2):
                os.dup2(fd, i)
            if fd > 2:
                os.close(fd)
    with step("chdir " + plan.get("init_cwd", "/")):
        os.chdir(plan.get("init_cwd", "/"))
    for hook in plan.get("hooks_start") or ():
        with step(f"start hook {hook}"):
            _run_hook(hook, env)
    uid, gid = plan.get("init_uid") or 0, plan.get("init_gid") or 0

    def switch_user() -> None:
        if gid:
            os.setgroups([])
            os.setgid(gid)
        if uid:
            os.setuid(uid)
    if plan.get("security_policy"):
        with step("apply security policy"):
            from . import security
            security.apply(plan["security_policy"], switch_user=switch_user)
    elif uid or gid:
        with step("switch user"):
            switch_user()
    cmd = plan["init_cmd"]
    if plan.get("app"):
        _app_init(sock, cmd, env)
    with step(f"exec init {cmd[0]}"):
        _exec(cmd, {**env, **notify_env})       # NOTIFY_SOCKET: for init only


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


def _cgroup_mounts(m, steps) -> None:
    """Cgroup.container_mounts() (as plain lists), carried out after pivot_root: the same
    steps as lxpy.cgroups.mount_in_container, without importing the cgroup layer."""
    for source, target, fstype, flags, data in steps:
        if fstype == "symlink":
            try:
                os.symlink(source, target)
            except FileExistsError:
                pass
            continue
        os.makedirs(target, exist_ok=True)
        if fstype == "remount":
            m.mount(None, target, None, flags, None)
        else:
            m.mount(source, target, fstype, flags, data or None)


def _step_or_warn(userns: bool, what: str, why: str, fn, *args) -> None:
    """A step that the kernel may refuse an unprivileged container: there, a warning on the
    monitor's log instead of a failed start."""
    try:
        with step(what):
            fn(*args)
    except StepFailed as e:
        if not userns:
            raise
        os.write(2, f"lxpy: {e.message} ({why})\n".encode())


BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _boot_id(m, flags: int) -> None:
    """Put a fresh random uuid, read-only, over /proc/sys/kernel/random/boot_id: a file
    on the container's /dev tmpfs, bind-mounted, then unlinked (the mount keeps it)."""
    if not os.path.exists(BOOT_ID):
        return
    fd = os.open("/proc/sys/kernel/random/uuid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        uuid = os.read(fd, 64)
    finally:
        os.close(fd)
    tmp = "/dev/.lxpy-boot-id"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o444)
    try:
        os.write(fd, uuid)
    finally:
        os.close(fd)
    try:
        m.mount(tmp, BOOT_ID, None, m.MS_BIND)
        m.mount(None, BOOT_ID, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | flags)
    finally:
        os.unlink(tmp)


def _run_hook(cmd: str, env: dict) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.execve("/bin/sh", ["/bin/sh", "-c", cmd], env)
        finally:
            os._exit(127)
    _, st = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(st)
    if code != 0:
        raise OSError(0, f"hook(): exited with status {code}", cmd)


def _sysctl(proc: str, key: str, value: str) -> None:
    with step(f"sysctl {key}"):
        path = f"{proc}/sys/" + key.replace(".", "/")
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)


def _prepare_target(target: str, opts: list[str], isdir: bool) -> None:
    if os.path.exists(target):
        return
    want = "file" if "create=file" in opts else "dir" if "create=dir" in opts else ""
    if not want:
        raise FileNotFoundError(2, "mount(): No such file or directory (add create=dir or "
                                "create=file to the options)", target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    if want == "dir":
        os.makedirs(target, exist_ok=True)
    else:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.close(fd)


def _lo_up() -> None:
    import _socket
    import fcntl
    import struct
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))
    finally:
        s.close()

"""lxpy-attach: run a command inside a running container.

    attach(target, options) -> exit status of the command (128+N if killed by signal N)

How (one fork, no helper process):

  us (host)   read the run dir (state: init pid + start time + cgroup; attach.ctx: the
              resolved security policy and environment, written by the monitor) -- no
              TOML, no config validation;
              pidfd_open(init) and check it is still the same process;
              setns(pidfd, CLONE_NEWPID) if its pid namespace is not ours: that only
              changes where our *children* go;
              fork --> child
              (born in the container's cgroup2 cgroup where the host has one: clone3
              CLONE_INTO_CGROUP)
  child       joins the container's cgroup on every other hierarchy (writes "0" to
              `tasks` on v1, before entering the cgroup namespace);
              setns(pidfd, user|mnt|uts|ipc|net|cgroup|time): those the container has
              of its own, all at once;
              with a tty: opens a pty from the container's /dev/ptmx (its own devpts),
              sends the master to us over a socketpair, makes the slave its controlling
              terminal and its stdio for the fds that are terminals here;
              chdir, environment, security.apply() (bounding set, no_new_privs, seccomp,
              then -u/-g, then the capability sets), exec. Not dumpable until the exec:
              nothing in the container opens its /proc files or ptraces it meanwhile.
              A failure before exec is reported to us as one line over a CLOEXEC pipe.
  us          relay the pty (raw host terminal, SIGWINCH) or just wait; forward SIGTERM,
              SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2; pass the exit status through.

Imports stay small on purpose: admins call lxpy-attach in loops.
"""

from __future__ import annotations

import errno
import fcntl
import marshal
from pathlib import Path
from typing import Any
import os
import re
import select
import signal
import socket
import stat
import struct

from lxpy.errors import ContainerNotFound, LxpyError, StateError
from lxpy.linux import ns as _ns
from lxpy.linux import prctl as _prctl
from lxpy.linux import tty
from lxpy.linux.fs import read_to_eof
from lxpy.linux.tty import TIOCSCTTY, TIOCSPTLCK

from . import security
from .cgjoin import fork_into
from .state import alive, read_file, start_time

# The attach context: marshal (builtin, nothing to import) of a dict of plain values,
# written by the monitor, read by lxpy-attach, both of this installation.
CONTEXT_FILE = "attach.ctx"
CONTEXT_VERSION = 1
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Namespaces in the order setns would want them (user first); pid is done by the parent.
NS_ORDER = ("user", "mnt", "pid", "uts", "ipc", "net", "cgroup", "time")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)

# tty ioctls not in lxpy.linux.tty
TIOCGPTPEER = 0x5441


class CommandNotFound(LxpyError):
    exit_status = 127   # as a shell (and lxc-attach) says


class CommandNotExecutable(LxpyError):
    exit_status = 126


class AttachError(LxpyError):
    """Entering the container failed (namespaces, cgroup, user, cwd ...)."""


# -- what the monitor leaves for us ---------------------------------------------------

def make_context(cfg: Any) -> dict[str, Any]:
    """The attach context of a container: its resolved (and compiled) security policy and
    its environment. The monitor writes it with save_context() when the container starts;
    PID 1 can apply context["security"] with security.apply()."""
    pol = security.resolve(cfg)
    try:
        pol = security.compile_bpf(pol)
    except OSError:
        pass  # no libseccomp here: apply() will say so if a filter is needed
    env = dict(getattr(cfg, "environment", None) or {})
    return {"v": CONTEXT_VERSION, "security": pol, "environment": env}


def save_context(run_dir: str | Path, cfg_or_context: Any) -> dict[str, Any]:
    """Write <run_dir>/attach.ctx (temp file + rename); returns the context."""
    ctx = cfg_or_context if isinstance(cfg_or_context, dict) else make_context(cfg_or_context)
    path = os.path.join(run_dir, CONTEXT_FILE)
    tmp = os.path.join(run_dir, f".{CONTEXT_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = marshal.dumps(ctx)
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
    os.rename(tmp, path)
    return ctx


def load_context(run_dir: str | Path) -> dict[str, Any] | None:
    """The context the monitor saved; None if there is none (or it is unreadable)."""
    try:
        with open(os.path.join(run_dir, CONTEXT_FILE), "rb") as f:
            ctx = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(ctx, dict) or ctx.get("v") != CONTEXT_VERSION:
        return None
    return ctx


# -- the target ---------------------------------------------------------------------

class Target:
    """A running container as attach sees it."""

    __slots__ = ("name", "pid", "pid_start", "cgroup", "policy", "environment",
                 "monitor_pid")

    def __init__(self, name: str, pid: int, pid_start: int | None = None,
                 cgroup: str | None = None, policy: dict | None = None,
                 environment: dict[str, str] | None = None, monitor_pid: int | None = None):
        self.name = name
        self.pid = pid
        self.pid_start = pid_start
        self.cgroup = cgroup
        self.policy = policy
        self.environment = environment or {}
        self.monitor_pid = monitor_pid


def target_from_run_dir(name: str, run_dir: str | Path, *, config_loader=None) -> Target:
    """Find the running container's init; StateError (exit 1) if it is not running.

    config_loader() -> Config is called only when the monitor left no attach.ctx."""
    st = read_file(run_dir)
    state = st.get("state", "STOPPED")
    try:
        pid = int(st.get("pid") or 0)
        start = int(st["pid_start"]) if st.get("pid_start") else None
    except ValueError:
        pid, start = 0, None
    if state in ("STOPPED", "ABORTING") or not alive(pid, start):
        raise StateError(f"container {name!r} is not running", f"lxpy-start {name}")
    if state in ("FROZEN", "FREEZING"):
        raise StateError(f"container {name!r} is frozen", f"lxpy-unfreeze {name} first")
    ctx = load_context(run_dir)
    if ctx is None:
        if config_loader is None:
            policy, env = None, {}
        else:
            cfg = config_loader()
            ctx = make_context(cfg)
            policy, env = ctx["security"], ctx["environment"]
    else:
        policy, env = ctx.get("security"), ctx.get("environment") or {}
    try:
        monitor = int(st.get("monitor_pid") or 0) or None
    except ValueError:
        monitor = None
    return Target(name, pid, start, st.get("cgroup") or None, policy, env, monitor)


def find(container) -> Target:
    """Target for a lxpy.container.Container (reads the run dir; the config only if the
    monitor left no attach.ctx)."""
    if not container.exists():
        raise ContainerNotFound(f"container {container.name!r} does not exist in "
                                f"{container.lxpath}", "lxpy-ls lists the containers there")
    return target_from_run_dir(container.name, container.run_dir,
                               config_loader=lambda: container.config)


# -- options ------------------------------------------------------------------------

class Options:
    """What to run and how (see lxpy-attach -h)."""

    __slots__ = ("command", "user", "group", "cwd", "keep_env", "env", "keep_vars", "pty",
                 "namespaces")

    def __init__(self, command: list[str] | None = None, *, user: str | int | None = None,
                 group: str | int | None = None, cwd: str | None = None,
                 keep_env: bool = False, env: dict[str, str] | None = None,
                 keep_vars: list[str] | tuple[str, ...] = (), pty: bool | None = None,
                 namespaces: tuple[str, ...] | None = None):
        self.command = list(command) if command else None
        self.user = user
        self.group = group
        self.cwd = cwd
        self.keep_env = keep_env
        self.env = dict(env or {})
        self.keep_vars = tuple(keep_vars)
        self.pty = pty            # None: when stdin is a terminal
        self.namespaces = namespaces  # None: every one the container has of its own


# -- namespaces and cgroups -------------------------------------------------------------

def own_namespaces(pid: int, only: tuple[str, ...] | None = None) -> list[str]:
    """The namespaces of pid that differ from ours, in NS_ORDER."""
    out = []
    for ns in NS_ORDER:
        if only is not None and ns not in only:
            continue
        try:
            a = os.stat(f"/proc/{pid}/ns/{ns}")
        except FileNotFoundError:
            continue  # a kernel without this namespace type
        b = os.stat(f"/proc/self/ns/{ns}")
        if (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev):
            out.append(ns)
    return out


_GENERIC_OPTS = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "xattr",
                 "clone_children", "noprefix", "cpuset_v2_mode", "favordynmods", "nsdelegate",
                 "memory_recursiveprot", "memory_localevents", "memory_hugetlb_accounting",
                 "pids_localevents"}


def cgroup_mounts() -> list[tuple[str, frozenset[str]]]:
    """(mount point, controllers) of each cgroup hierarchy mounted here, once each;
    the controllers of cgroup2 are the empty set."""
    out = []
    seen = set()
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            pre, sep, post = line.partition(b" - ")
            if not sep or not post.startswith(b"cgroup"):
                continue
            fstype, _src, opts = (post.decode().split() + ["", ""])[:3]
            if fstype == "cgroup2":
                key: frozenset[str] = frozenset()
            elif fstype == "cgroup":
                key = frozenset(o for o in opts.split(",") if o not in _GENERIC_OPTS
                                and not o.startswith("release_agent="))
            else:
                continue
            if key in seen:
                continue
            seen.add(key)
            mnt = pre.split()[4].decode()
            if "\\" in mnt:
                mnt = _unescape(mnt)
            out.append((mnt, key))
    return out


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def _init_cgroups(pid: int) -> dict[frozenset[str], str]:
    """Controllers of each hierarchy (empty for cgroup2) -> the cgroup pid is in."""
    out = {}
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        for line in f:
            _hid, ctrls, path = line.rstrip(b"\n").decode().split(":", 2)
            out[frozenset(c for c in ctrls.split(",") if c)] = path
    return out


def _candidates(cgroup: str | None, init_pid: int, key: frozenset[str],
                init_cg: dict) -> list[str]:
    """Where to join on one hierarchy, in order: the container's cgroup, then init's own
    (init_cg caches /proc/INIT/cgroup)."""
    out = [cgroup.strip("/")] if cgroup else []
    if not init_cg:
        init_cg.update(_init_cgroups(init_pid))
    rel = init_cg.get(key)
    if rel is not None:
        out.append(rel.strip("/"))
    return out


def fork_in_cgroup(cgroup: str | None, init_pid: int,
                   mounts: list[tuple[str, frozenset[str]]]) -> tuple[int, str | None]:
    """fork(); where the host has cgroup2, the child is born in the container's cgroup
    there (clone3 CLONE_INTO_CGROUP: no cgroup.procs write, which costs the kernel an RCU
    grace period, ~10 ms). Returns (pid, that cgroup2 mount or None)."""
    init_cg: dict = {}
    for mnt, key in mounts:
        if key:
            continue
        # the container's cgroup; not a leaf (systemd's subtree): init's, as join_cgroups
        for rel in _candidates(cgroup, init_pid, key, init_cg):
            pid = fork_into(f"{mnt}/{rel}" if rel else mnt)
            if pid is not None:
                return pid, mnt
        break
    return os.fork(), None


def join_cgroups(cgroup: str | None, init_pid: int,
                 mounts: list[tuple[str, frozenset[str]]] | None = None,
                 born_in: str | None = None) -> None:
    """Move the calling process into the container's cgroup on every hierarchy (but
    born_in, the cgroup2 mount fork_in_cgroup placed it in already).

    cgroup is the container's cgroup (relative, the same on every hierarchy). Where it does
    not exist, or cannot take processes (cgroup2 with controllers enabled below it: EBUSY),
    or is not known, the process joins init's own cgroup on that hierarchy instead.
    Call it in a freshly forked child (one thread): on cgroup v1 it writes "0" to `tasks`,
    which moves the calling thread without the global lock cgroup.procs takes (that one
    costs an RCU grace period: 8-15 ms measured here on a first move)."""
    init_cg: dict = {}
    for mnt, key in cgroup_mounts() if mounts is None else mounts:
        if mnt == born_in:
            continue
        cands = _candidates(cgroup, init_pid, key, init_cg)
        for i, rel in enumerate(cands):
            last = i == len(cands) - 1
            d = f"{mnt}/{rel}" if rel else mnt
            path = f"{d}/tasks" if key else f"{d}/cgroup.procs"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if not key:
                    continue
                path = f"{d}/cgroup.procs"      # (a v1 hierarchy without tasks?)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
            try:
                os.write(fd, b"0")
                break
            except OSError as e:
                if last or e.errno not in (errno.EBUSY, errno.EOPNOTSUPP, errno.ENOENT):
                    name = path.rpartition("/")[2]
                    raise OSError(e.errno, f"{name}: {os.strerror(e.errno or 0)}",
                                  path) from None
            finally:
                os.close(fd)


# -- users ---------------------------------------------------------------------------------

# The container's files, read by a process that still has the host's credentials: never
# wait on a FIFO (an attach that hangs), never read a device or an endless file.
_DB_MAX = 4 << 20


def _container_db(path: str) -> list[list[str]]:
    """The ':'-split lines of a regular file of the container (/etc/passwd, /etc/group);
    [] if it is missing, not a regular file, or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = os.read(fd, _DB_MAX)
    except OSError:
        return []
    finally:
        os.close(fd)
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines()]


def _passwd_lookup(user: str | int | None) -> tuple[int, int, str, str, str] | None:
    """(uid, gid, name, home, shell) from the /etc/passwd we see (the container's)."""
    for p in _container_db("/etc/passwd"):
        if len(p) >= 7 and ((isinstance(user, int) and p[2] == str(user)) or p[0] == user):
            try:
                return int(p[2]), int(p[3]), p[0], p[5], p[6]
            except ValueError:
                continue
    return None


def _group_lookup(group: str) -> int | None:
    for p in _container_db("/etc/group"):
        if len(p) >= 3 and p[0] == group:
            try:
                return int(p[2])
            except ValueError:
                return None
    return None


def _supplementary(name: str, gid: int) -> list[int]:
    out = [gid]
    for p in _container_db("/etc/group"):
        if len(p) >= 4 and name in p[3].split(","):
            try:
                g = int(p[2])
            except ValueError:
                continue
            if g not in out:
                out.append(g)
    return out


def _as_id(v: str | int | None) -> str | int | None:
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return v


class _User:
    __slots__ = ("uid", "gid", "groups", "home", "shell", "name")


def resolve_user(user: str | int | None, group: str | int | None) -> _User:
    """Who to run as, looked up in the container's /etc/passwd and /etc/group."""
    u = _User()
    user, group = _as_id(user), _as_id(group)
    if user is None:
        user = 0
    ent = _passwd_lookup(user)
    if ent is None:
        if not isinstance(user, int):
            raise AttachError(f"-u {user}: no such user in the container",
                              "give a uid, or a name from the container's /etc/passwd")
        u.uid, u.gid, u.name, u.home, u.shell = user, user, "", "/" if user else "/root", ""
    else:
        u.uid, u.gid, u.name, u.home, u.shell = ent
    if group is not None:
        if isinstance(group, int):
            u.gid = group
        else:
            g = _group_lookup(group)
            if g is None:
                raise AttachError(f"-g {group}: no such group in the container",
                                  "give a gid, or a name from the container's /etc/group")
            u.gid = g
    u.groups = _supplementary(u.name, u.gid) if u.name else [u.gid]
    return u


def build_env(opts: Options, target_env: dict[str, str], user: _User,
              host_env: dict[str, str] | None = None) -> dict[str, str]:
    """The command's environment: --clear-env (default) as LXC: container=lxpy, PATH, HOME,
    TERM, the container's [environment], --keep-var, -v; --keep-env: ours plus those."""
    host = dict(os.environ if host_env is None else host_env)
    if opts.keep_env:
        env = dict(host)
    else:
        env = {"PATH": DEFAULT_PATH}
        if "TERM" in host:
            env["TERM"] = host["TERM"]
        for k in opts.keep_vars:
            if k in host:
                env[k] = host[k]
    env.update(target_env)
    env["container"] = "lxpy"
    env["HOME"] = user.home or "/"
    if not opts.keep_env and user.name:
        env.setdefault("USER", user.name)
        env.setdefault("LOGNAME", user.name)
    env.update(opts.env)
    return env


# -- the attach ---------------------------------------------------------------------------

def _report(fd: int, code: int, msg: str) -> None:
    try:
        os.write(fd, f"{code}\n{msg}".encode(errors="replace"))
    except OSError:
        pass


def _exit_status(st: int) -> int:
    code = os.waitstatus_to_exitcode(st)
    return 128 - code if code < 0 else code


def attach(target: Target, opts: Options) -> int:
    """Run opts.command in target; returns its exit status. Raises LxpyError subclasses for
    failures to get there (StateError, AttachError, CommandNotFound ...)."""

    try:
        pidfd = os.pidfd_open(target.pid)
    except ProcessLookupError:
        raise StateError(f"container {target.name!r} is not running") from None
    our_pidns = -1
    try:
        if target.pid_start is not None and start_time(target.pid) != target.pid_start:
            raise StateError(f"container {target.name!r} is not running")
        namespaces = own_namespaces(target.pid, opts.namespaces)
        if "user" not in namespaces:
            _check_exe(target)
        flags = 0
        for n in namespaces:
            if n != "pid":
                flags |= _ns.FLAGS[n]
        if "pid" in namespaces:
            # For our children only; undone below, so that a caller that goes on (tests,
            # library users) does not fork into the container by surprise.
            our_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _ns.setns(pidfd, _ns.CLONE_NEWPID)
            except OSError as e:
                raise AttachError(f"cannot enter the pid namespace of {target.name!r}: "
                                  f"{e.strerror}") from None
        stdin_tty = os.isatty(0)
        use_pty = stdin_tty if opts.pty is None else opts.pty
        _preload(target, use_pty)
        return _run(target, opts, pidfd, flags, use_pty)
    finally:
        os.close(pidfd)
        if our_pidns >= 0:
            _ns.setns(our_pidns, _ns.CLONE_NEWPID)
            os.close(our_pidns)


def _check_exe(target: Target) -> None:
    """Attach into a container whose root is the host's (no user namespace): our executable
    (the python that runs lxpy-attach) is reachable from inside as /proc/PID/exe of the
    child until it execs, and as /proc/self/exe of a `#!/proc/self/exe` command
    (CVE-2019-5736). Root inside could reopen it for writing once we are gone; the kernel
    refuses that (ETXTBSY) while a process executes it -- the container's monitor does, for
    as long as anything of the container lives. So: only with the monitor's interpreter."""
    if not target.monitor_pid:
        return
    try:
        ours = os.stat("/proc/self/exe")
        theirs = os.stat(f"/proc/{target.monitor_pid}/exe")
    except OSError:
        return      # the monitor is gone: the container is stopping, attach says so later
    if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino):
        raise AttachError(
            f"container {target.name!r} is privileged and its monitor runs "
            f"{os.readlink(f'/proc/{target.monitor_pid}/exe')}, not this lxpy-attach's "
            f"{os.readlink('/proc/self/exe')}: its root could overwrite this interpreter "
            "through /proc/PID/exe (CVE-2019-5736)",
            "run lxpy-attach with the interpreter lxpy-start used (the same installation)")


def _preload(target: Target, use_pty: bool) -> None:
    """Import (and dlopen) now what the child needs after setns: from then on it sees the
    container's filesystem, where our modules are not -- and where a library with the
    right name must never be loaded into a process with host privileges."""
    security.prepare(target.policy or {})
    if use_pty:
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import struct  # noqa: F401

        from lxpy.linux import tty  # noqa: F401


def _run(target: Target, opts: Options, pidfd: int, flags: int, use_pty: bool) -> int:
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    sock_parent = sock_child = None
    if use_pty:
        sock_parent, sock_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    tty_fds = [fd for fd in (0, 1, 2) if os.isatty(fd)] if use_pty else []
    if use_pty and not tty_fds:
        tty_fds = [0, 1, 2]
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(FORWARDED) | {signal.SIGCHLD,
                                                                          signal.SIGWINCH})
    mounts = cgroup_mounts()
    # The child is in the container's pid namespace from its fork on, with the host's
    # credentials, executable (/proc/PID/exe: our python) and libraries until it execs:
    # not dumpable, its /proc files and ptrace need CAP_SYS_PTRACE over the host's user
    # namespace, which root in an unprivileged container lacks (runc's CVE-2016-9962).
    # exec makes the command dumpable again. Set here, before the fork, so that there is
    # no moment the child is visible and dumpable; ours is restored right after.
    dumpable = _prctl.prctl(_prctl.PR_GET_DUMPABLE)
    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)
    try:
        pid, born_in = fork_in_cgroup(target.cgroup, target.pid, mounts)
    except OSError as e:
        _prctl.prctl(_prctl.PR_SET_DUMPABLE, dumpable)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(err_r)
        os.close(err_w)
        raise StateError(f"container {target.name!r} is stopping: cannot fork into it "
                         f"({e.strerror})") from None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(err_r)
            if sock_parent is not None:
                sock_parent.close()
            code = _child(target, opts, pidfd, flags, tty_fds, sock_child, err_w, old_mask,
                          mounts, born_in)
        except BaseException as e:  # noqa: BLE001 - must never unwind into the caller
            if isinstance(e, LxpyError):
                msg = str(e)
                code = e.exit_status
            elif isinstance(e, OSError):
                msg = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
            else:
                msg = f"{type(e).__name__}: {e}"
            _report(err_w, code if code > 1 else 1, msg)
        os._exit(code if code > 1 else 1)

    # The parent.
    _prctl.prctl(_prctl.PR_SET_DUMPABLE, dumpable)
    os.close(err_w)
    master = None
    restore = None
    try:
        if sock_child is not None:
            sock_child.close()
            master = _recv_master(sock_parent)
            sock_parent.close()
        # The child reports a failure here, or exec closes the pipe.
        failure = read_to_eof(err_r)
        os.close(err_r)
        err_r = -1
        if failure:
            _, st = os.waitpid(pid, 0)
            code_s, _, msg = failure.decode(errors="replace").partition("\n")
            code = int(code_s) if code_s.isdigit() else 1
            if master is not None:
                os.close(master)
            if code == 127:
                raise CommandNotFound(msg)
            if code == 126:
                raise CommandNotExecutable(msg)
            raise AttachError(msg)
        if master is None:
            return _wait_plain(pid)
        restore = _setup_terminal(master)
        return _relay(pid, master, restore)
    finally:
        if err_r >= 0:
            os.close(err_r)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _recv_master(sock) -> int | None:
    try:
        msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    except OSError:
        return None
    if not fds:
        return None  # the child failed before: its report follows on the pipe
    return fds[0]


def _child(target: Target, opts: Options, pidfd: int, flags: int, tty_fds: list[int],
           sock, err_w: int, old_mask, mounts=None, born_in: str | None = None) -> int:
    """In the forked child: enter, set up, exec. Returns an exit code only on failure."""
    for s in (signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED, signal.SIGCHLD, signal.SIGWINCH):
        signal.signal(s, signal.SIG_DFL)

    # 1. cgroup (before the cgroup namespace: the path must be visible)
    try:
        join_cgroups(target.cgroup, target.pid, mounts, born_in)
    except OSError as e:
        raise AttachError(f"cannot join the container's cgroup: {e.strerror}: "
                          f"{e.filename}") from None
    # 2. the namespaces, all at once
    if flags:
        try:
            _ns.setns(pidfd, flags)
        except OSError as e:
            raise AttachError(f"cannot enter the namespaces of {target.name!r}: "
                              f"{e.strerror}") from None
    os.close(pidfd)
    # 3. who: the container's /etc/passwd (we now see its mount namespace)
    user = resolve_user(opts.user, opts.group)
    # 4. a pty from the container's devpts
    if sock is not None:
        slave = _child_pty(sock)
        # the host terminal's size, before the command can ask for it (the parent's copy
        # comes only after the exec)
        ws = next(filter(None, map(tty.get_winsize, tty_fds)), None)
        if ws:
            tty.set_winsize(slave, *ws)
        os.setsid()

        fcntl.ioctl(slave, TIOCSCTTY, 0)
        for fd in tty_fds:
            os.dup2(slave, fd)
        if slave not in (0, 1, 2):
            os.close(slave)
    else:
        # No controlling terminal: a host terminal on stdout/stderr stays a plain output
        # (no /dev/tty, no TIOCSTI into the admin's shell, no job control from inside).
        # The terminal's signals reach us, and we forward them.
        os.setsid()
    # 5. cwd
    cwd = opts.cwd
    if cwd is None:
        cwd = user.home if user.home and os.path.isdir(user.home) else "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise AttachError(f"--cwd {cwd}: {e.strerror} in the container") from None
    # 6. the command
    env = build_env(opts, target.environment, user)
    cmd = opts.command
    if not cmd:
        shell = user.shell if user.shell and os.access(user.shell, os.X_OK) else "/bin/sh"
        cmd = [shell]
    # 7. security, with the user switch in the middle (caps still there for it)
    userns = bool(flags & _ns.CLONE_NEWUSER)
    need_switch = userns or opts.user is not None or opts.group is not None

    def switch_user() -> None:
        try:
            os.setgroups(user.groups)
        except PermissionError:
            if not userns:  # "setgroups deny" in a user namespace: keep what we have
                raise
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)

    try:
        if target.policy is not None:
            security.apply(target.policy, switch_user=switch_user if need_switch else None)
        elif need_switch:
            switch_user()
    except OSError as e:
        raise AttachError(f"cannot apply the security policy: {e.strerror or e}") from None
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    # 8. exec
    try:
        if "/" in cmd[0]:
            os.execve(cmd[0], cmd, env)
        else:
            os.execvpe(cmd[0], cmd, env)
    except FileNotFoundError:
        _report(err_w, 127, f"{cmd[0]}: command not found in container {target.name!r}")
        return 127
    except PermissionError:
        _report(err_w, 126, f"{cmd[0]}: permission denied in container {target.name!r}")
        return 126
    except OSError as e:
        code = 126 if e.errno in (8,) else 1  # ENOEXEC
        _report(err_w, code, f"{cmd[0]}: {e.strerror} in container {target.name!r}")
        return code
    return 1


def _child_pty(sock) -> int:
    """Open a pty from the container's /dev/ptmx, send the master to the parent, return the
    slave. Falls back to /dev/pts/ptmx when /dev/ptmx is missing."""

    master = None
    for path in ("/dev/ptmx", "/dev/pts/ptmx"):
        try:
            master = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            break
        except OSError as e:
            last = e
    if master is None:
        raise AttachError(f"cannot open a pty in the container: /dev/ptmx: {last.strerror}",
                          "run without a terminal (lxpy-attach ... < /dev/null) or fix the "
                          "container's /dev")
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    socket.send_fds(sock, [b"m"], [master])
    os.close(master)
    sock.close()
    return slave


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_plain(pid: int) -> int:
    """No pty: wait, forwarding the signals we get (the child is in its own session, so
    the terminal's Ctrl-C reaches it only through us)."""
    sigs = set(FORWARDED) | {signal.SIGCHLD}
    while True:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p == pid:
            return _exit_status(st)
        info = signal.sigwaitinfo(sigs)
        if info.si_signo != signal.SIGCHLD:
            _forward(pid, info.si_signo)


def _setup_terminal(master: int):
    """Host terminal raw, window size copied; returns what restores it."""
    ws = None
    for fd in (0, 1, 2):
        ws = tty.get_winsize(fd)
        if ws:
            break
    if ws:
        try:
            tty.set_winsize(master, *ws)
        except OSError:
            pass
    old = None
    if os.isatty(0):
        old = tty.make_raw(0)
    return old


def _relay(pid: int, master: int, old_attrs) -> int:
    """Copy stdin -> pty and pty -> stdout until the child exits; SIGWINCH resizes,
    other signals are forwarded."""

    out_fd = 1 if os.isatty(1) else 2 if os.isatty(2) else 1
    pfd = os.pidfd_open(pid)
    # Signals come in through a wakeup fd: handlers only note them.
    rsig, wsig = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    pending: list[int] = []
    prev_handlers = {}

    def note(sig, _frame):
        pending.append(sig)
    for s in (*FORWARDED, signal.SIGWINCH):
        prev_handlers[s] = signal.signal(s, note)
    old_wakeup = signal.set_wakeup_fd(wsig)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(FORWARDED) | {signal.SIGWINCH})
    stdin_open = True
    try:
        while True:
            rl = [master, pfd, rsig] + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(rl, [], [])
            except InterruptedError:
                ready = []
            while pending:
                s = pending.pop(0)
                if s == signal.SIGWINCH:
                    ws = tty.get_winsize(0) or tty.get_winsize(out_fd)
                    if ws:
                        try:
                            tty.set_winsize(master, *ws)
                        except OSError:
                            pass
                else:
                    _forward(pid, s)
            if rsig in ready:
                try:
                    while os.read(rsig, 512):
                        pass
                except BlockingIOError:
                    pass
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave closed
                    data = b""
                if data:
                    _write_all(out_fd, data)
            if stdin_open and 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:  # our input ended: say so the terminal way (VEOF, ^D)
                    stdin_open = False
                    try:
                        os.write(master, b"\x04")
                    except OSError:
                        pass
            if pfd in ready:
                _drain(master, out_fd)
                _, st = os.waitpid(pid, 0)
                return _exit_status(st)
    finally:
        if old_attrs is not None:
            try:
                tty.restore(0, old_attrs)
            except OSError:
                pass
        signal.set_wakeup_fd(old_wakeup)
        for s, h in prev_handlers.items():
            signal.signal(s, h)
        for fd in (rsig, wsig, pfd, master):
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _drain(master: int, out_fd: int) -> None:
    os.set_blocking(master, False)
    while True:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        _write_all(out_fd, data)

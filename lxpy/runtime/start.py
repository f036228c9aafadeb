"""lxpy-start: validate, lock, prepare the host side, hand over to a monitor.

The CLI process does what needs the config (cgroup creation and limits, pre-start hooks,
network validation) and writes a plan (a marshal file: plain data) into the run dir. The
monitor is a fresh `python3 -I -S` process that reads the plan; daemonized by a double
fork, or in place of this process with -F. It reports "ok pid=N" or a structured error on
a status pipe, then releases the container lock.

Just before the exec of the monitor, this process (already a child subreaper, with every
module the container side needs loaded) forks the namespace helper (child.intermediate)
and hands it over to the monitor, which has the same pid after execve (_prefork): the
container is set up, and without a network or user namespace init even runs, while the
monitor's interpreter starts. The monitor joins its own cgroup only after reporting.
Daemonized and with go sent from here, this process also waits for init's exec, binds the
command socket, writes the RUNNING state and reports "ok" itself before the exec
(_early_handshake): lxpy-start returns without waiting for the monitor's interpreter.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import marshal
import os
import sys
from contextlib import ExitStack
from pathlib import Path

from ..errors import ConfigError, LockBusy, RuntimeStartError, StateError
from . import proto, state

log = logging.getLogger("lxpy.runtime")

NET_TYPES_WITH_LINKS = ("veth", "macvlan", "phys")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def take_lock(container, what: str) -> int:
    """flock the container's lock file; the fd can be handed to the monitor."""
    container.lxpath.mkdir(parents=True, exist_ok=True)
    fd = os.open(container.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise LockBusy(f"container {container.name!r} is {what}",
                           "another lxpy command is starting or stopping it") from None
        raise
    return fd


def cleanup_stale(container, info: state.StateInfo | None = None) -> None:
    """A run dir left by a monitor that died (SIGKILL, crash) and whose init is gone."""
    info = info or state.query(container)
    if info.state != "STOPPED":
        return
    rd = container.run_dir
    cg = info.cgroup or (info.extra or {}).get("cgroup")
    if cg:
        try:
            from .. import cgroups
            c = cgroups.driver().open(cg)
            c.kill()
            c.destroy()
        except ImportError:
            pass
        except Exception as e:  # noqa: BLE001 - best effort; create() cleans stale ones too
            log.warning("stale cgroup %s: %s", cg, e)
    try:
        if any(n.type in NET_TYPES_WITH_LINKS for n in container.config.net):
            from ..net.setup import teardown
            teardown(container.name, container.lxpath)
    except Exception as e:  # noqa: BLE001 - best effort
        log.warning("stale network of %s: %s", container.name, e)
    mcg = (info.extra or {}).get("monitor_cgroup")
    if mcg:
        try:
            from .. import cgroups
            cgroups.driver().open(mcg).destroy()
        except Exception:  # noqa: BLE001 - gone already, or cleaned by the next create
            pass
    if rd.exists():
        rootfs = rd / "rootfs"
        try:
            rootfs.rmdir()
        except OSError:
            pass
        import shutil
        shutil.rmtree(rd, ignore_errors=True)


def _env(cfg, name: str, tty_max: int) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "TERM": "linux", "HOME": "/", "container": "lxpy",
           "container_uuid": ""}
    if tty_max:
        env["container_ttys"] = " ".join(f"tty{i}" for i in range(1, tty_max + 1))
    env.pop("container_uuid")
    env.update(dict(cfg.environment))
    return env


def build_plan(container, cfg, *, cgroup, app_cmd: list[str] | None,
               share_pids: dict[str, int], console_log: str | None) -> dict:
    from ..config.signals import parse_signal
    nets = list(cfg.net)
    ns_create = list(cfg.namespaces.create)
    share = dict(cfg.namespaces.share)
    if nets and all(n.type == "none" for n in nets):
        share.setdefault("net", "host")
    app = app_cmd is not None
    tty_max = 0 if app else int(cfg.tty.max)
    policy = None
    try:
        from . import attach
    except ImportError:
        attach = None
    if attach is not None:
        # The resolved policy (seccomp compiled to BPF), for PID 1 and for lxpy-attach.
        ctx = attach.save_context(container.run_dir, cfg)
        policy = ctx.get("security")
    backend = cfg.rootfs.backend
    storage_fallback = False
    if backend != "dir":
        try:
            from .. import storage  # noqa: F401
        except ImportError:
            storage_fallback = True
    plan = {
        "name": container.name,
        "lxpath": str(container.lxpath),
        "dir": str(container.dir),
        "config_path": str(container.config_path),
        "rootfs": str(container.rootfs),
        "backend": backend,
        "storage_fallback": storage_fallback,
        "run_dir": str(container.run_dir),
        "staging": str(container.run_dir / "rootfs"),
        "hostname": cfg.hostname or container.name,
        "init_cmd": list(app_cmd) if app else list(cfg.init.cmd),
        "init_cwd": cfg.init.cwd,
        "init_uid": int(cfg.init.uid),
        "init_gid": int(cfg.init.gid),
        "env": _env(cfg, container.name, tty_max),
        "ns_create": ns_create,
        "ns_share": share,
        "share_pids": {k: int(v) for k, v in share_pids.items()},
        "net_setup": any(n.type in NET_TYPES_WITH_LINKS for n in nets),
        "mounts": [{"source": m.source, "target": m.target, "type": m.type,
                    "options": list(m.options)} for m in cfg.mount],
        "readonly_paths": list(cfg.security.readonly_paths),
        "masked_paths": list(cfg.security.masked_paths),
        "prlimits": {k: list(v) for k, v in dict(cfg.security.prlimits).items()},
        "sysctls": dict(cfg.security.sysctl),
        "devices": list(cfg.devices.allow),
        "tty_max": tty_max,
        "ptys": int(cfg.tty.ptys),
        "console_log": console_log or "",
        "console_log_size": int(cfg.console.log_size),
        "hooks": {"stop": list(cfg.hooks.stop), "post_stop": list(cfg.hooks.post_stop)},
        "hooks_start": list(cfg.hooks.start),
        "halt_signal": parse_signal(cfg.init.halt_signal),
        "reboot_signal": parse_signal(cfg.init.reboot_signal),
        "stop_timeout": int(cfg.init.stop_timeout),
        "cgroup": cgroup.path if cgroup is not None else "",
        "cgroup_procs": [str(d / "cgroup.procs") for d in cgroup.dirs()] if cgroup else [],
        "cgroup_v2_dir": next((str(h.path(cgroup.path)) for h in cgroup.hierarchies
                               if h.version == 2), "") if cgroup else "",
        "cgroup_mounts": [list(x) for x in cgroup.container_mounts()] if cgroup else [],
        "security_policy": policy,
        "rootfs_cfg": {"backend": backend, "path": str(cfg.rootfs.path),
                       "lower": str(cfg.rootfs.lower or ""),
                       "origin": str(cfg.rootfs.origin or "")},
        "app": app,
        "idmap_uid": [list(x) for x in cfg.idmap.uid],
        "idmap_gid": [list(x) for x in cfg.idmap.gid],
        "idmap_root": _host_ids(cfg) if cfg.idmap.uid else None,
        "sys_path": [p for p in sys.path if p],
        "handshake_timeout": 30,
    }
    return plan


def _delegate(cg, uid: int, gid: int) -> None:
    """Give the container's root its cgroup (as systemd's Delegate= does), so an init in a
    user namespace can make and manage its own sub-cgroups."""
    for d in cg.dirs():
        for name in ("", "cgroup.procs", "tasks", "cgroup.subtree_control", "cgroup.threads",
                     "cgroup.clone_children", "notify_on_release"):
            p = d / name if name else d
            try:
                os.chown(p, uid, gid)
            except FileNotFoundError:
                pass


def _host_id(mapping, inside: int) -> int:
    for a, b, n in mapping:
        if a <= inside < a + n:
            return b + inside - a
    return 0


def _host_ids(cfg) -> list[int]:
    """Host uid of the container's root and host gid of its tty group (5)."""
    return [_host_id(cfg.idmap.uid, 0), _host_id(cfg.idmap.gid, 5)]


def _hook_env(container, cfg, which: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"LXPY_NAME": container.name, "LXPY_PATH": str(container.lxpath),
                "LXPY_ROOTFS": str(container.rootfs), "LXPY_CONFIG_FILE":
                str(container.config_path), "LXPY_HOOK_TYPE": which})
    return env


def run_host_hooks(container, cfg, which: str, hooks) -> None:
    if not hooks:
        return
    import subprocess
    for h in hooks:
        r = subprocess.run(["/bin/sh", "-c", h], env=_hook_env(container, cfg, which))
        if r.returncode != 0:
            raise RuntimeStartError(f"container {container.name!r}: {which} hook {h!r} exited "
                                    f"with status {r.returncode}", step=f"{which} hook")


def _check(container, cfg) -> None:
    if "user" in cfg.namespaces.create and not cfg.idmap.uid:
        raise ConfigError(f"container {container.name!r}: a user namespace needs [idmap]",
                          "set idmap.uid and idmap.gid, like [[0, 100000, 65536]]")
    if cfg.idmap.uid:
        if "user" in cfg.namespaces.share:
            raise ConfigError(f"container {container.name!r}: [idmap] needs a user namespace "
                              "of its own", "remove user from namespaces.share")
        if not any(inside == 0 for inside, _o, _n in cfg.idmap.uid):
            raise ConfigError(f"container {container.name!r}: idmap.uid maps no uid 0",
                              "map the container's root, like [[0, 100000, 65536]]")
        if cfg.rootfs.backend != "dir":
            from ..errors import KernelFeatureError
            raise KernelFeatureError(f"container {container.name!r}: unprivileged containers "
                                     f"run on the dir backend only (this one is "
                                     f"{cfg.rootfs.backend})", "lxpy-copy -B dir makes a "
                                     "dir copy")
    if "mnt" not in cfg.namespaces.create or "mnt" in cfg.namespaces.share:
        raise ConfigError(f"container {container.name!r}: it needs a mount namespace of its "
                          "own (its rootfs, /proc, /dev are mounted there)",
                          "add \"mnt\" to namespaces.create and remove it from "
                          "namespaces.share")
    if cfg.rootfs.backend == "dir" and not container.rootfs.is_dir():
        raise ConfigError(f"container {container.name!r}: its rootfs {container.rootfs} is "
                          "not a directory", "check rootfs.path in its config.toml")


def start(container, foreground: bool = False, app_cmd: list[str] | None = None,
          logfile: str | None = None) -> int:
    """Start a container. Daemonized: returns 0 once init runs. Foreground (-F) and
    application containers (app_cmd): this process becomes the monitor (no return)."""
    container.require()
    cfg = container.config
    _check(container, cfg)
    try:
        lock_fd = take_lock(container, "busy")
    except LockBusy:
        raise StateError(f"container {container.name!r} is already starting or running",
                         "lxpy-info shows its state") from None
    with ExitStack() as undo:
        undo.callback(os.close, lock_fd)
        info = state.query(container)
        if info.state != "STOPPED":
            raise StateError(f"container {container.name!r} is already {info.state.lower()}"
                             + (f" (pid {info.pid})" if info.pid else ""),
                             "lxpy-stop stops it")
        if info.stale:
            cleanup_stale(container, info)
        share_pids = {}
        for nsname, who in cfg.namespaces.share.items():
            if who == "host":
                continue
            from ..container import Container
            other = Container(who, container.lxpath)
            oinfo = state.query(other) if other.exists() else None
            if oinfo is None or not oinfo.pid or oinfo.state == "STOPPED":
                raise StateError(f"container {container.name!r} shares its {nsname} namespace "
                                 f"with {who!r}, which is not running", f"start {who} first")
            share_pids[who] = oinfo.pid
        run_dir = container.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "rootfs").mkdir(exist_ok=True)    # staging mount point of the rootfs
        undo.callback(cleanup_stale, container)
        run_host_hooks(container, cfg, "pre-start", cfg.hooks.pre_start)

        cgroup = None
        try:
            from .. import cgroups
        except ImportError:
            cgroups = None
        if cgroups is not None:
            from ..paths import system_config
            cg = cgroups.driver().create(container.name, system_config().cgroup_parent)
            undo.callback(cg.destroy)
            cg.apply_limits(cfg)
            apply_devices = getattr(cg, "apply_devices", None)
            if apply_devices is not None:
                apply_devices(cfg)
            cgroup = cg
            if cfg.idmap.uid:
                _delegate(cg, _host_id(cfg.idmap.uid, 0), _host_id(cfg.idmap.gid, 0))
        mcg = None
        if cgroups is not None and app_cmd is None:
            # The monitor gets a cgroup of its own, apart from the payload (as LXC does).
            # Not lxpy-execute's: it stays where its caller runs it, as any command does
            # (and saves two cgroup moves, each an RCU grace period, on its way).
            mcg = cgroups.driver().create_monitor(container.name, system_config().cgroup_parent)
            undo.callback(mcg.destroy)
        if any(n.type in NET_TYPES_WITH_LINKS for n in cfg.net):
            from ..net.plan import prepare
            from ..net.setup import ensure_managed_bridge
            from ..status import running_neighbours
            ensure_managed_bridge(cfg)
            prepare(cfg, container.name, container.lxpath, running_neighbours(container))
        from ..paths import log_dir
        logs = str(log_dir(container.lxpath, container.name))
        console_log = None
        if cfg.console.log and app_cmd is None:
            console_log = os.path.join(logs, "console.log")
        plan = build_plan(container, cfg, cgroup=cgroup, app_cmd=app_cmd,
                          share_pids=share_pids, console_log=console_log)
        # the container's history (started, stop requested, init's exit, reboots, stopped)
        plan["event_log"] = os.path.join(logs, "lxpy.log")
        if mcg is not None:
            plan["monitor_cgroup"] = mcg.path
            plan["monitor_cgroup_dirs"] = [str(d) for d in mcg.dirs()]
            plan["cgroup_roots"] = [str(h.mount) for h in mcg.hierarchies]
        tmp = run_dir / ".plan.tmp"
        with open(tmp, "wb") as f:
            marshal.dump(plan, f)
        os.rename(tmp, run_dir / "plan")

        lxpy_root = str(Path(__file__).resolve().parent.parent.parent)
        if foreground or app_cmd is not None:
            # This process becomes the monitor; it owns the clean-up from here on.
            undo.pop_all()
            mode = "app" if app_cmd is not None else "foreground"
            sys.stdout.flush()
            sys.stderr.flush()
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                # The reporter: prints the one line if the start fails, then exits.
                os.close(w)
                os.close(lock_fd)
                data = _read_all(r)
                if data:
                    kind, msg = proto.decode(data)
                    if kind == "error":
                        err = _start_error(container, msg)
                        os.write(2, f"lxpy-{'execute' if app_cmd else 'start'}: {err}\n".encode())
                os._exit(0)
            os.close(r)
            from ..linux.proc import set_child_subreaper
            set_child_subreaper()          # kept across execve: the monitor reaps init
            pre = _prefork(plan, str(run_dir))
            if app_cmd is not None:
                # lxpy-execute: the monitor runs right here, without a second interpreter
                # start (~15-20 ms of every execute). Its memory does not matter as a
                # daemon's does (the bench's monitor PSS goal), nor is it long-lived as a
                # systemd unit's (-F execs the lean monitor below).
                from .monitor import main
                try:
                    main([str(run_dir), str(w), str(lock_fd), mode, pre])
                finally:
                    os._exit(1)
            for fd in (w, lock_fd):
                os.set_inheritable(fd, True)
            os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", _boot(), lxpy_root,
                                      str(run_dir), str(w), str(lock_fd), mode, pre])
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.setsid()
                if os.fork() != 0:
                    os._exit(0)
                _daemon_stdio(container, logfile)
                from ..linux.proc import set_child_subreaper
                set_child_subreaper()      # kept across execve: the monitor reaps init
                pre = _prefork(plan, str(run_dir), early=(w, lock_fd))
                if pre.startswith("A,"):        # reported already (see _early_handshake)
                    w = lock_fd = -1
                for fd in (w, lock_fd):
                    if fd >= 0:
                        os.set_inheritable(fd, True)
                os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", _boot(), lxpy_root,
                                          str(run_dir), str(w), str(lock_fd), "daemon", pre])
            finally:
                os._exit(1)
        os.close(w)
        os.waitpid(pid, 0)
        data = _read_all(r)
        os.close(r)
        undo.pop_all()
        os.close(lock_fd)
    if not data:
        cleanup_stale(container)
        raise RuntimeStartError(f"container {container.name!r}: the monitor died during the "
                                "start", "see the monitor log in the log directory")
    kind, msg = proto.decode(data)
    if kind == "error":
        raise _start_error(container, msg)
    return 0


def _prefork(plan: dict, run_dir: str, early: tuple[int, int] | None = None) -> str:
    """Fork the container's namespace helper (child.intermediate) from this process, just
    before it execs the monitor: everything the helper needs is imported here already, and
    the container is set up while the monitor's interpreter starts. The monitor adopts the
    helper (the same pid after execve) and the handshake socket, and finishes the start as
    if it had forked the helper itself. Returns the argument that hands them over
    ("sock,pid,go,notify,master:slave:path,..."), "" if the monitor is to fork the helper.
    notify is the guest's readiness socket (notify.Listener, bound here so that the helper
    mounts it for a systemd init), -1 for none.
    Without a network to set up or a user namespace to map (the monitor's part of the
    handshake), "go" is sent from here too: init execs without waiting for the monitor
    (go=1 tells the monitor).
    early: (status fd, lock fd) of a daemonized start; with go sent from here, this process
    also follows the rest of the handshake and reports to lxpy-start itself before it execs
    the monitor (_early_handshake)."""
    import _socket

    from ..linux.tty import openpty
    ptys: list[tuple[int, int, str]] = []
    notifier = None
    if not plan.get("app"):
        from . import notify
        try:
            notifier = notify.Listener(run_dir, plan.get("idmap_root"))
            plan["notify_socket"] = notifier.path
        except OSError as e:
            log.debug("notify socket: %s; the container starts without readiness", e)
    try:
        if not plan.get("app"):
            for _ in range(1 + int(plan.get("tty_max", 0))):
                ptys.append(openpty())
        mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    except OSError as e:
        log.debug("prefork: %s; the monitor forks the helper", e)
        for master, slave, _ in ptys:
            os.close(master)
            os.close(slave)
        if notifier is not None:
            notifier.close()
            plan.pop("notify_socket", None)
        return ""
    sys.stdout.flush()
    sys.stderr.flush()
    from .cgjoin import fork_payload
    # Born in the payload cgroup on cgroup2; it joins the v1 hierarchies itself (cheaply,
    # see cgjoin) while we exec the monitor.
    pid, born_in = fork_payload(plan)
    if pid == 0:
        try:
            import _signal as signal

            from . import child
            mine.close()
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                      signal.SIGCHLD):
                signal.signal(s, signal.SIG_DFL)
            child.intermediate(plan, theirs, [(p[0], p[2]) for p in ptys], born_in)
        finally:
            os._exit(1)
    theirs.close()
    go = not plan.get("net_setup") and not plan.get("idmap_uid")
    if go:
        proto.send(mine, "go")
        if early is not None:
            return _early_handshake(plan, run_dir, mine, pid, notifier, ptys, *early)
    fd = mine.detach()
    os.set_inheritable(fd, True)
    out = [str(fd), str(pid), "1" if go else "0", "-1"]
    if notifier is not None:
        nfd = notifier.sock.detach()
        os.set_inheritable(nfd, True)
        out[3] = str(nfd)
    for master, slave, path in ptys:
        os.set_inheritable(master, True)
        os.set_inheritable(slave, True)
        out.append(f"{master}:{slave}:{path}")
    return ",".join(out)


def _early_handshake(plan: dict, run_dir: str, mine, pid: int, notifier, ptys: list,
                     status_fd: int, lock_fd: int) -> str:
    """A daemonized start without a network or user namespace to set up: follow the helper's
    handshake here (the monitor's spawn() part of it) and, once init is exec'd, do what the
    monitor would do before reporting: bind the command socket, write the RUNNING state;
    then report "ok" to lxpy-start and release the lock. lxpy-start returns while the
    monitor's interpreter starts (~15-25 ms here): the state file names this process, which
    becomes the monitor in place (same pid and start time), and clients that connect
    meanwhile wait in the socket's backlog until it accepts them.
    Returns the monitor's handover argument: "A,listen,init,init_start,started,notify,
    ptys..." once init runs; "F,init,error,notify,ptys..." when the start failed (the
    monitor cleans up and reports, as if the failure were its own)."""
    import _socket
    import time

    from .state import _start_time, write_file
    init = 0
    mine.settimeout(float(plan.get("handshake_timeout", 30)))
    try:
        kind, msg = _recv(mine)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        if kind == "forked":
            init = int(msg["pid"])
            kind, msg = _recv(mine)
            if kind == "eof":           # its end was close-on-exec: init runs
                kind = "ok"
        elif kind != "error":
            kind, msg = "error", {"step": "fork init", "message":
                                  "the namespace helper exited before forking init"}
    except TimeoutError:
        kind, msg = "error", {"step": "handshake", "message": "the container did not answer in "
                              "time (handshake timeout)"}
    finally:
        mine.close()
    nfd = -1
    if notifier is not None:
        if kind == "ok":
            notifier.started(init)
        nfields = notifier.fields()
        nfd = notifier.sock.detach()
        os.set_inheritable(nfd, True)
    tail = [str(nfd)]
    for master, slave, path in ptys:
        os.set_inheritable(master, True)
        os.set_inheritable(slave, True)
        tail.append(f"{master}:{slave}:{path}")
    if kind != "ok":
        return ",".join(["F", str(init), proto.encode(kind, **msg).hex()] + tail)
    init_start = _start_time(init)
    started = time.time()
    sock_path = os.path.join(run_dir, state.SOCKET)
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    listener.bind(sock_path)
    os.chmod(sock_path, 0o600)
    listener.listen(64)
    write_file(run_dir, {
        "state": "RUNNING", "monitor_pid": os.getpid(),
        "monitor_start": _start_time(os.getpid()), "pid": init, "pid_start": init_start or "",
        "cgroup": plan.get("cgroup") or "", "console_log": plan.get("console_log") or "",
        "started": f"{started:.3f}", "monitor_cgroup": plan.get("monitor_cgroup") or "",
        "name": plan["name"], "lxpath": plan["lxpath"],
        **(nfields if notifier is not None else {})})
    try:
        os.write(status_fd, proto.encode("ok", pid=init))
    except OSError:
        pass
    os.close(status_fd)
    os.close(lock_fd)
    lfd = listener.detach()
    os.set_inheritable(lfd, True)
    return ",".join(["A", str(lfd), str(init), str(init_start or ""), f"{started:.6f}"] + tail)


def _recv(sock) -> tuple[str, dict[str, str]]:
    try:
        return proto.recv(sock)
    except ConnectionResetError:
        return "eof", {}


def _boot() -> str:
    from .monitor import BOOT
    return BOOT


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return out
        out += chunk


def _daemon_stdio(container, logfile: str | None) -> None:
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    try:
        from ..paths import log_dir
        d = log_dir(container.lxpath, container.name)
        os.makedirs(d, mode=0o750, exist_ok=True)
        fd = os.open(logfile or os.path.join(d, "monitor.log"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
    except OSError:
        os.dup2(null, 2)
    os.close(null)


def _start_error(container, msg: dict[str, str]) -> RuntimeStartError:
    err = int(msg.get("errno") or 0)
    text = msg.get("message") or "unknown failure"
    hint = None
    step = msg.get("step", "")
    if step.startswith("exec init"):
        hint = "check init.cmd in its config.toml and that the program exists in its rootfs"
    elif step.startswith("exec "):
        hint = "check the command and that it exists in the container's rootfs"
    elif err == errno.EPERM:
        hint = "lxpy-checkconfig tells which kernel features this host lacks"
    e = RuntimeStartError(f"container {container.name!r} failed to start: {text}", hint,
                          step=step or None, syscall=msg.get("syscall") or None,
                          errno=err or None, path=msg.get("path") or None)
    if step.startswith("exec ") and not step.startswith("exec init"):
        # lxpy-execute: a command that is not there (or not executable), as a shell says it
        e.exit_status = 127 if err == errno.ENOENT else 126 if err == errno.EACCES else 1
    return e

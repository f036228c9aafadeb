"""lxpy-start: validate, lock, prepare the host side, hand over to a monitor.

The CLI process does what needs the config (cgroup creation and limits, pre-start hooks,
network validation) and builds the start plan (plan.py), which it saves in the run dir.
The monitor is a fresh `python3 -I -S` process that reads the plan's fields; daemonized by
a double fork, or in place of this process with -F. It reports "ok pid=N" or a structured
error on a status pipe, then releases the container lock.

Just before the exec of the monitor, this process (already a child subreaper, with every
module the container side needs loaded) forks the namespace helper (child.intermediate)
and hands it over to the monitor, which has the same pid after execve (_prefork): the
container is set up, and without a network or user namespace init even runs, while the
monitor's interpreter starts. The monitor joins its own cgroup only after reporting.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from .. import cgroups
from ..container import Container
from ..errors import ConfigError, LockBusy, NetworkError, RuntimeStartError, StateError
from ..idmap import IdMap, resolve
from ..linux.proc import set_child_subreaper
from ..linux.tty import openpty
from ..net.plan import DEVICES
from ..net.plan import prepare as prepare_net
from ..net.setup import ensure_managed_bridge
from ..paths import log_dir, system_config
from ..status import running_neighbours
from ..storage import quota
from . import attach, notify, proto, state
from .cgjoin import fork_payload
from .monitor import BOOT, main
from .cleanup import cleanup_stale, take_lock
from .plan import Plan, build, describe

log = logging.getLogger("lxpy.runtime")


def _delegate(cg, uid: int, gid: int) -> None:
    """Give the container's root its cgroup (as systemd's Delegate= does), so an init in a
    user namespace can make and manage its own sub-cgroups (cgroups.DELEGATED: which
    files, on v1 and v2)."""
    cg.delegate(uid, gid)


def _hook_env(container, cfg, which: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"LXPY_NAME": container.name, "LXPY_PATH": str(container.lxpath),
                "LXPY_ROOTFS": str(container.rootfs), "LXPY_CONFIG_FILE":
                str(container.config_path), "LXPY_HOOK_TYPE": which})
    return env


def run_host_hooks(container, cfg, which: str, hooks) -> None:
    if not hooks:
        return
    for h in hooks:
        r = subprocess.run(["/bin/sh", "-c", h], env=_hook_env(container, cfg, which))
        if r.returncode != 0:
            raise RuntimeStartError(f"container {container.name!r}: {which} hook {h!r} exited "
                                    f"with status {r.returncode}", step=f"{which} hook")


def _check(container, cfg, allocate: bool = True) -> IdMap | None:
    """What must hold before anything is made; the container's id maps (None: privileged;
    allocate: see idmap.resolve)."""
    idmap = resolve(container, cfg, allocate=allocate)
    if idmap is None and "user" in cfg.namespaces.create:
        raise ConfigError(f"container {container.name!r}: a user namespace needs an id map",
                          "set idmap, or remove user from namespaces.create")
    if idmap is not None:
        if "user" in cfg.namespaces.share:
            raise ConfigError(f"container {container.name!r}: [idmap] needs a user namespace "
                              "of its own", "remove user from namespaces.share")
        if not any(inside == 0 for inside, _o, _n in idmap.uid):
            raise ConfigError(f"container {container.name!r}: idmap.uid maps no uid 0",
                              "map the container's root, like [[0, 100000, 65536]]")
        if not any(inside == 0 for inside, _o, _n in idmap.gid):
            raise ConfigError(f"container {container.name!r}: idmap.gid maps no gid 0",
                              "map the container's root group, like [[0, 100000, 65536]]")
    if "mnt" not in cfg.namespaces.create or "mnt" in cfg.namespaces.share:
        raise ConfigError(f"container {container.name!r}: it needs a mount namespace of its "
                          "own (its rootfs, /proc, /dev are mounted there)",
                          "add \"mnt\" to namespaces.create and remove it from "
                          "namespaces.share")
    if cfg.get("limits.disk") is not None:
        quota.check(container.name, container.dir, cfg)
    if cfg.rootfs.backend == "dir" and not container.rootfs.is_dir():
        raise ConfigError(f"container {container.name!r}: its rootfs {container.rootfs} is "
                          "not a directory", "check rootfs.path in its config.toml")
    return idmap


def start(container, foreground: bool = False, app_cmd: list[str] | None = None,
          logfile: str | None = None) -> int:
    """Start a container. Daemonized: returns 0 once init runs. Foreground (-F) and
    application containers (app_cmd): this process becomes the monitor (no return)."""
    container.require()
    cfg = container.config
    idmap = _check(container, cfg)
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
        plan = _prepare(container, cfg, idmap, undo, app_cmd)
        if foreground or app_cmd is not None:
            undo.pop_all()      # this process becomes the monitor: it owns the clean-up
            _become_monitor(container, plan, lock_fd)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.setsid()
                if os.fork() != 0:
                    os._exit(0)
                _daemon_stdio(container, logfile)
                set_child_subreaper()      # kept across execve: the monitor reaps init
                _exec_monitor(plan, w, lock_fd, "daemon", _prefork(plan))
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


def _share_pids(container, cfg) -> dict[str, int]:
    """The init pid of each container whose namespaces this one shares."""
    out = {}
    for nsname, who in cfg.namespaces.share.items():
        if who == "host":
            continue
        other = Container(who, container.lxpath)
        oinfo = state.query(other) if other.exists() else None
        if oinfo is None or not oinfo.pid or oinfo.state == "STOPPED":
            raise StateError(f"container {container.name!r} shares its {nsname} namespace "
                             f"with {who!r}, which is not running", f"start {who} first")
        out[who] = oinfo.pid
    return out


def _prepare(container, cfg, idmap: IdMap | None, undo: ExitStack,
             app_cmd: list[str] | None) -> Plan:
    """The host side (run dir, pre-start hooks, cgroups, network), each with its undo;
    the plan, saved in the run dir."""
    share_pids = _share_pids(container, cfg)
    run_dir = container.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "rootfs").mkdir(exist_ok=True)    # staging mount point of the rootfs
    undo.callback(cleanup_stale, container)
    run_host_hooks(container, cfg, "pre-start", cfg.hooks.pre_start)
    if cfg.get("limits.disk") is not None:
        quota.apply(container.name, container.dir, cfg)
    parent = system_config().cgroup_parent
    cg = cgroups.driver().create(container.name, parent)
    undo.callback(cg.destroy)
    cg.apply_limits(cfg)
    apply_devices = getattr(cg, "apply_devices", None)
    if apply_devices is not None:
        apply_devices(cfg)
    if idmap is not None:
        _delegate(cg, idmap.host_uid(0), idmap.host_gid(0))
    mcg = None
    if app_cmd is None:
        # The monitor gets a cgroup of its own, apart from the payload (as LXC does).
        # Not lxpy-execute's: it stays where its caller runs it, as any command does
        # (and saves two cgroup moves, each an RCU grace period, on its way).
        mcg = cgroups.driver().create_monitor(container.name, parent)
        undo.callback(mcg.destroy)
    if any(n.type in DEVICES for n in cfg.net):
        ensure_managed_bridge(cfg)
        net = prepare_net(cfg, container.name, container.lxpath, running_neighbours(container))
        for w in net.warnings:
            log.warning("%s: %s", container.name, w)
    ctx = attach.save_context(run_dir, cfg)
    p = build(container, cfg, idmap=idmap, cgroup=cg, monitor_cgroup=mcg, app_cmd=app_cmd,
              share_pids=share_pids, attach_context=ctx,
              logs=str(log_dir(container.lxpath, container.name)))
    p.save()
    return p


def dry_run(container) -> list[str]:
    """The plan lxpy-start would follow, as lines an admin reads; starts nothing, writes
    nothing (the cgroups are named, not made)."""
    container.require()
    cfg = container.config
    idmap = _check(container, cfg, allocate=False)
    drv = cgroups.driver()
    parent = drv.parent_path(system_config().cgroup_parent)
    cg, mcg = (drv.cgroup_class(drv, "/".join(x for x in (parent, name) if x))
               for name in (container.name, f"lxpy.monitor.{container.name}"))
    p = build(container, cfg, idmap=idmap, cgroup=cg, monitor_cgroup=mcg, app_cmd=None,
              share_pids=_share_pids(container, cfg), attach_context=attach.make_context(cfg),
              logs=str(log_dir(container.lxpath, container.name)))
    lines = describe(p)
    if any(n.type in DEVICES for n in cfg.net):
        at = lines.index(next(x for x in lines if x.startswith("network:"))) + 1
        try:
            net = prepare_net(cfg, container.name, container.lxpath,
                              running_neighbours(container))
        except NetworkError as e:     # the managed bridge comes up only at the real start
            lines[at:at] = [f"  not checked against the host now: {e}"]
        else:
            lines[at:at] = [f"  {x}" for x in net.describe()] + [
                f"  warning: {w}" for w in net.warnings]
    return lines


def _become_monitor(container, plan: Plan, lock_fd: int) -> None:
    """-F and lxpy-execute: this process becomes the monitor; a forked reporter prints
    the one line if the start fails. No return."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.close(lock_fd)
        data = _read_all(r)
        if data:
            kind, msg = proto.decode(data)
            if kind == "error":
                err = _start_error(container, msg)
                os.write(2, f"lxpy-{'execute' if plan.app else 'start'}: {err}\n".encode())
        os._exit(0)
    os.close(r)
    set_child_subreaper()          # kept across execve: the monitor reaps init
    pre = _prefork(plan)
    if plan.app:
        # lxpy-execute: the monitor runs right here, without a second interpreter
        # start (~15-20 ms of every execute). Its memory does not matter as a
        # daemon's does (the bench's monitor PSS goal), nor is it long-lived as a
        # systemd unit's (-F execs the lean monitor below).
        try:
            main([plan.run_dir, str(w), str(lock_fd), "app", pre])
        finally:
            os._exit(1)
    _exec_monitor(plan, w, lock_fd, "foreground", pre)


def _exec_monitor(plan: Plan, status_fd: int, lock_fd: int, mode: str, pre: str) -> None:
    """exec the lean monitor, named in ps and top as LXC's is (`[lxpy monitor] LXPATH
    NAME`, argv[0]; comm "lxpy monitor", see monitor.main)."""
    for fd in (status_fd, lock_fd):
        os.set_inheritable(fd, True)
    lxpy_root = str(Path(__file__).resolve().parent.parent.parent)
    os.execv(sys.executable, [f"[lxpy monitor] {plan.lxpath} {plan.name}", "-I", "-S", "-c",
                              BOOT, lxpy_root, plan.run_dir, str(status_fd), str(lock_fd),
                              mode, pre])


def _prefork(plan: Plan) -> str:
    """Fork the container's namespace helper (child.intermediate) from this process, just
    before it execs the monitor: everything the helper needs is imported here already, and
    the container is set up while the monitor's interpreter starts. The monitor adopts the
    helper (the same pid after execve) and the handshake socket, and finishes the start as
    if it had forked the helper itself. Returns the argument that hands them over
    ("sock,pid,go,notify,master:slave:path,..."), "" if the monitor is to fork the helper.
    notify is the guest's readiness socket (notify.Listener, bound here so that the helper
    mounts it for a systemd init), -1 for none.
    An unprivileged container's user namespace is mapped from here (_map_userns), so that
    its rootfs is idmapped and mounted while the monitor's interpreter starts. Without a
    network to set up or a user namespace (the monitor gives the container's root its ttys
    first), "go" is sent from here too: init execs without waiting for the monitor (go=1
    tells the monitor). ("go" is never sent ahead of a step that may fail: a SEQPACKET
    peer closed with unread data makes our end read ECONNRESET, not its error message.)"""
    ptys: list[tuple[int, int, str]] = []
    notifier = None
    if not plan.app:
        try:
            notifier = notify.Listener(plan.run_dir, plan.idmap_root)
        except OSError as e:
            log.debug("notify socket: %s; the container starts without readiness", e)
    try:
        if not plan.app:
            for _ in range(1 + plan.tty_max):
                ptys.append(openpty())
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    except OSError as e:
        log.debug("prefork: %s; the monitor forks the helper", e)
        for master, slave, _ in ptys:
            os.close(master)
            os.close(slave)
        if notifier is not None:
            notifier.close()
        return ""
    sys.stdout.flush()
    sys.stderr.flush()
    # Born in the payload cgroup on cgroup2; it joins the v1 hierarchies itself (cheaply,
    # see cgjoin) while we exec the monitor.
    pid, born_in = fork_payload(plan.cgroup_v2_dir)
    if pid == 0:
        try:
            from . import child  # PID 1's side: only in the child
            mine.close()
            child.intermediate(plan, theirs, [(p[0], p[2]) for p in ptys], born_in)
        finally:
            os._exit(1)
    theirs.close()
    if plan.idmap_uid:
        _map_userns(plan, mine)
    go = not plan.net_setup and not plan.idmap_uid
    if go:
        proto.send(mine, "go")
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


def _map_userns(plan: Plan, sock: socket.socket) -> None:
    """The helper's first message is "userns" (it unshared the user namespace): write its
    uid_map and gid_map, answer "mapped" (or "error", which the helper reports to the
    monitor). Anything else (its own failure) is left unread, for the monitor."""
    sock.settimeout(plan.handshake_timeout)
    try:
        kind, msg = proto.decode(sock.recv(65536, socket.MSG_PEEK))
        if kind != "userns":
            return
        sock.recv(65536)
        for name, mapping in (("uid_map", plan.idmap_uid), ("gid_map", plan.idmap_gid)):
            try:
                with open(f"/proc/{msg['pid']}/{name}", "wb", buffering=0) as f:
                    f.write("".join(f"{a} {b} {n}\n" for a, b, n in mapping).encode())
            except OSError as e:
                proto.send(sock, "error", message=f"write /proc/{msg['pid']}/{name}: "
                           f"{e.strerror}", errno=e.errno or 0)
                return
        proto.send(sock, "mapped")
    except (OSError, ValueError):     # the helper is gone, or timed out: the monitor tells
        pass
    finally:
        sock.settimeout(None)


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
    step = msg.get("step", "")
    if step.startswith("exec init"):
        hint = "check init.cmd in its config.toml and that the program exists in its rootfs"
    elif step.startswith("exec "):
        hint = "check the command and that it exists in the container's rootfs"
    elif err == errno.EPERM:
        hint = "lxpy-checkconfig tells which kernel features this host lacks"
    else:
        hint = None
    hint = msg.get("hint") or hint      # the storage layer's, from the idmap helper
    e = RuntimeStartError(f"container {container.name!r} failed to start: {text}", hint,
                          step=step or None, syscall=msg.get("syscall") or None,
                          errno=err or None, path=msg.get("path") or None)
    if step.startswith("exec ") and not step.startswith("exec init"):
        # lxpy-execute: a command that is not there (or not executable), as a shell says it
        e.exit_status = 127 if err == errno.ENOENT else 126 if err == errno.EACCES else 1
    return e

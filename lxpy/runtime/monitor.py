"""The per-container monitor: parent (subreaper) of the container's init, holder of its
console and ttys, server of its command socket, and the one that cleans up.

It runs as a fresh `python3 -I -S` process (see start.py) and imports as little as it can:
the plan it gets from lxpy-start (a marshal file in the run dir) has everything it needs,
so neither the config layer nor jinja2/pyroute2 are loaded here (nor enum, through the
signal and socket wrappers: the C modules _signal and _socket do). Work that needs heavy
modules (the namespace set-up, the network) runs in forked children that exit.

Command socket (<run_dir>/monitor.sock, SOCK_STREAM, messages framed by proto.frame):
    state                       -> state state=.. pid=.. cgroup=..
    subscribe                   -> state ..., then one "state" message per transition;
                                   EOF when the monitor exits (the container stopped)
    stop timeout=T kill=0|1     -> ok (the connection stays open until the monitor exits)
    reboot                      -> ok
    console tty=N rows= cols=   -> ok | error; then raw bytes both ways
    freeze | thaw               -> ok | error
    cgroup_get key=K            -> ok value=V | error
    cgroup_set key=K value=V    -> ok | error
"""

from __future__ import annotations

import _signal as signal  # not "signal": its enums cost the monitor memory
import _socket as socket  # not "socket": same reason
import marshal
import os
import select
import sys
import time

from . import notify, proto
from .cgjoin import join_self
from .hook import run_shell
from .state import start_time, write_file

POLL_IN = select.POLLIN | select.POLLPRI
POLL_ERR = select.POLLHUP | select.POLLERR | select.POLLNVAL


def log(msg: str) -> None:
    try:
        os.write(2, f"lxpy-monitor[{os.getpid()}]: {msg}\n".encode())
    except OSError:
        pass


EVENT_LOG_MAX = 1 << 20     # lxpy.log becomes lxpy.log.1 past this size (one backup)


_SIGNAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL",
             11: "SIGSEGV", 15: "SIGTERM"}


def _signame(n: int) -> str:
    """_signal has no Signals enum (the monitor does without the signal module)."""
    return _SIGNAMES.get(n) or f"signal {n} ({signal.strsignal(n) or 'unknown'})"


class StartFailed(Exception):
    def __init__(self, fields: dict[str, str]):
        super().__init__(fields.get("message", "start failed"))
        self.fields = fields


class Client:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = proto.Reader()
        self.tty: int | None = None          # attached to this tty (0 = console)
        self.subscribed = False
        self.waits_exit = False


class Monitor:
    def __init__(self, run_dir: str, status_fd: int, lock_fd: int, foreground: bool,
                 pre: str = ""):
        self.run_dir = run_dir
        # The namespace helper lxpy-start forked before exec'ing us (see start._prefork):
        # (handshake socket fd, its pid) and the ptys it was given; None: we fork it.
        self.pre: tuple[int, int] | None = None
        self.pre_go = False             # it was sent "go" already (no network, no userns)
        self.pre_ptys: list[tuple[int, int, str]] = []
        self.pre_notify = -1            # the readiness socket it bound (notify.Listener)
        if pre:
            sock, pid, go, notify_fd, *ptys = pre.split(",")
            self.pre = (int(sock), int(pid))
            self.pre_go = go == "1"
            self.pre_notify = int(notify_fd)
            for p in ptys:
                master, slave, path = p.split(":", 2)
                self.pre_ptys.append((int(master), int(slave), path))
        with open(os.path.join(run_dir, "plan"), "rb") as f:
            self.plan: dict = marshal.load(f)      # plan.Plan's fields (Plan.save)
        self.status_fd = status_fd
        self.lock_fd = lock_fd
        self.foreground = foreground
        self.state = "STARTING"
        self.init_pid = 0
        self.init_start: int | None = None
        self.pidfd = -1
        self.ptys: list[tuple[int, int, str]] = []     # (master, slave, path)
        self.holders: dict[int, Client] = {}           # tty -> client
        self.clients: dict[int, Client] = {}
        self.poll = select.poll()
        self.stop_requested = False
        self.stop_deadline: float | None = None
        self.killed = False
        self.reboot = False
        self.exit_status = 0
        self.log_fd = -1
        self.log_size = 0
        self.started = 0.0
        self.listener: socket.socket | None = None
        self.net_undo_pid = 0
        self.notifier = None        # notify.Listener: the guest's READY=1 (systemd)
        # autostart.restart: when init's deaths were (monotonic), when the next start is due
        self.failures: list[float] = []
        self.restarts = 0
        self.restart_why = ""       # the last death that brought a restart (lxpy-info)
        self.restart_at: float | None = None

    # -- state -------------------------------------------------------------------------
    def event(self, msg: str) -> None:
        """A line in the container's lxpy.log (paths.log_dir), as LXC keeps
        /var/log/lxc/<name>.log: what happened to the container and when. Opened for each
        line (a handful per start/stop), so logrotate or a removed file need no signal."""
        path = self.plan.get("event_log")
        if not path:
            return
        line = (time.strftime("%Y-%m-%dT%H:%M:%S%z") + f" {self.plan['name']}: {msg}\n")
        try:
            try:
                if os.stat(path).st_size > EVENT_LOG_MAX:
                    os.replace(path, path + ".1")
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, line.encode(errors="replace"))
            finally:
                os.close(fd)
        except OSError as e:
            log(f"{path}: {e.strerror}")

    def set_state(self, state: str, host_notify: bool = True) -> None:
        self.state = state
        if self.notifier is not None:
            if state == "RUNNING":
                self.notifier.started(self.init_pid)     # a new init: was it given the socket?
            elif state in ("STARTING", "STOPPING", "ABORTING"):
                self.notifier.stopped()
        write_file(self.run_dir, {
            "state": state,
            "monitor_pid": os.getpid(),
            "monitor_start": self.my_start,
            "pid": self.init_pid or "",
            "pid_start": self.init_start or "",
            "cgroup": self.plan.get("cgroup") or "",
            "console_log": self.plan.get("console_log") or "",
            "started": f"{self.started:.3f}" if self.started else "",
            "monitor_cgroup": self.plan.get("monitor_cgroup") or "",
            "name": self.plan["name"],
            "lxpath": self.plan["lxpath"],
            "restarts": self.restarts or "",
            "restart_why": self.restart_why,
            **(self.notifier.fields() if self.notifier is not None else {}),
        })
        msg = proto.frame("state", **self.state_fields())
        for c in list(self.clients.values()):
            if c.subscribed:
                self.send(c, msg)
        if self.foreground and host_notify:
            self.sd_notify(state)

    def sd_notify(self, state: str) -> None:
        """lxpy@.service (Type=notify, lxpy-start -F): READY once init runs, STOPPING at stop.
        A no-op when $NOTIFY_SOCKET is unset (see lxpy/sdnotify.py)."""
        from .. import sdnotify  # socket (and enum): only under systemd (-F)
        name = self.plan["name"]
        if state == "RUNNING":
            log(f"{name} running (init pid {self.init_pid})")      # stderr: the journal
            sdnotify.notify(ready=True, status=f"{name} running (init pid {self.init_pid})")
        elif state == "STOPPING" and not getattr(self, "_sd_stopping", False):
            self._sd_stopping = True            # once, however the stop came about
            log(f"stopping {name}")
            sdnotify.notify(stopping=True, status=f"stopping {name}",
                            extend_timeout=float(self.plan.get("stop_timeout", 60)) + 30)
        elif state == "STARTING":
            sdnotify.notify(status=f"starting {name}")

    def state_fields(self) -> dict:
        return {"state": self.state, "pid": self.init_pid or "", "cgroup":
                self.plan.get("cgroup") or "", "console_log": self.plan.get("console_log") or "",
                **(self.notifier.fields() if self.notifier is not None else {})}

    # -- start -------------------------------------------------------------------------
    def setup(self) -> None:
        # lxpy-start made us a child subreaper before exec (kept across execve), so that
        # init, forked by the intermediate child, is reparented to us: no ctypes here.
        from ..linux.tty import openpty  # fcntl, struct: only when lxpy-start made none
        self.my_start = start_time(os.getpid())
        if self.pre is not None:
            self.ptys = self.pre_ptys
        elif not self.plan.get("app"):
            for _ in range(1 + int(self.plan.get("tty_max", 0))):
                self.ptys.append(openpty())
        if not self.plan.get("app"):
            owner = self.plan.get("idmap_root")
            for master, _slave, path in self.ptys:
                os.set_blocking(master, False)
                if owner:      # the container's root (and its tty group) own its ttys
                    os.chown(path, owner[0], owner[1])
                self.poll.register(master, POLL_IN)
            if self.plan.get("console_log"):
                path = self.plan["console_log"]
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self.log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND |
                                      os.O_CLOEXEC, 0o600)
                self.log_size = os.fstat(self.log_fd).st_size
        sock_path = os.path.join(self.run_dir, "monitor.sock")
        self.listen_path = sock_path
        try:
            os.unlink(sock_path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.bind(sock_path)
        os.chmod(sock_path, 0o600)
        s.listen(64)
        s.setblocking(False)
        self.listener = s
        self.poll.register(s.fileno(), POLL_IN)
        if not self.plan.get("app"):
            self.notify_setup()
        self.set_state("STARTING")

    def notify_setup(self) -> None:
        """The socket the guest's systemd sends READY=1 to (see notify.py)."""
        try:
            if self.pre_notify >= 0:    # bound by lxpy-start, mounted by its helper already
                self.notifier = notify.Listener(self.run_dir, fd=self.pre_notify)
                self.pre_notify = -1
            else:
                self.notifier = notify.Listener(self.run_dir, self.plan.get("idmap_root"))
        except OSError as e:
            log(f"notify socket: {e}")       # the container starts without readiness
            return
        self.poll.register(self.notifier.fd, POLL_IN)

    def on_notify(self) -> None:
        if self.notifier.receive() and self.state in ("RUNNING", "FROZEN", "FREEZING"):
            self.set_state(self.state, host_notify=False)

    def spawn(self) -> None:
        """Fork the intermediate child, follow the handshake, leave init running."""
        plan = self.plan
        if self.pre is not None:       # forked by lxpy-start already, working meanwhile
            fd, pid = self.pre
            self.pre = None
            mine = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fd)
            theirs = None
        else:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = os.fork()
        if pid == 0:
            try:
                mine.close()
                if self.listener is not None:
                    self.listener.close()
                sys.path[:] = plan["sys_path"]
                # in this child only: PID 1's side (ctypes, dataclasses) and the typed plan
                from . import child
                from .plan import load
                child.intermediate(load(self.run_dir), theirs,
                                   [(p[0], p[2]) for p in self.ptys])
            finally:
                os._exit(1)
        if theirs is not None:
            theirs.close()
        mine.settimeout(float(plan.get("handshake_timeout", 30)))
        try:
            kind, msg = self._recv(mine)
            if kind == "userns":
                self.write_idmaps(int(msg["pid"]), mine)
                kind, msg = self._recv(mine)
            os.waitpid(pid, 0)
            if kind == "error":
                raise StartFailed(msg)
            if kind != "forked":
                raise StartFailed({"step": "fork init", "message":
                                   "the namespace helper exited before forking init"})
            self.init_pid = int(msg["pid"])
            self.pidfd = os.pidfd_open(self.init_pid)
            self.init_start = start_time(self.init_pid)
            if plan.get("net_setup"):
                self.net_setup()
            if self.pre_go:
                self.pre_go = False
            else:
                try:
                    proto.send(mine, "go")
                except OSError:
                    pass
            kind, msg = self._recv(mine)
            if kind == "error":
                raise StartFailed(msg)
        except TimeoutError:
            raise StartFailed({"step": "handshake", "message": "the container did not answer "
                               "in time (handshake timeout)"}) from None
        finally:
            mine.close()
        self.started = time.time()

    def drop_pre(self) -> None:
        """The start failed before the handshake with the helper lxpy-start forked: closing
        the socket makes it (and its PID 1, waiting for "go") give up."""
        if self.pre is None:
            return
        fd, pid = self.pre
        self.pre = None
        os.close(fd)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def write_idmaps(self, pid: int, sock) -> None:
        """uid_map/gid_map of the child's new user namespace (we are root on the host)."""
        for name, key in (("uid_map", "idmap_uid"), ("gid_map", "idmap_gid")):
            text = "".join(f"{a} {b} {c}\n" for a, b, c in self.plan[key])
            try:
                fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, text.encode())
                finally:
                    os.close(fd)
            except OSError as e:
                proto.send(sock, "error", message=f"write {name}: {e.strerror}")
                raise StartFailed({"step": "write uid/gid maps", "message":
                                   f"write /proc/{pid}/{name}: {e.strerror}",
                                   "errno": str(e.errno or 0)}) from None
        proto.send(sock, "mapped")

    def _recv(self, sock: socket.socket) -> tuple[str, dict[str, str]]:
        try:
            return proto.recv(sock)
        except ConnectionResetError:
            return "eof", {}

    def net_setup(self) -> None:
        """Run net.setup in a forked helper with the full sys.path (pyroute2 stays out of
        the monitor); the helper exits once the links are in place."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                sys.path[:] = self.plan["sys_path"]
                # in this helper only: the config layer and pyroute2 stay out of the monitor
                from pathlib import Path

                from ..config.loader import load
                from ..net.plan import prepare
                from ..net.setup import setup
                cfg = load(Path(self.plan["config_path"]))
                plan = prepare(cfg, self.plan["name"], Path(self.plan["lxpath"]))
                setup(plan, self.init_pid)   # its undo is teardown (by record)
                code = 0
            except BaseException as e:  # noqa: BLE001
                os.write(w, f"{e}".encode()[:4000])
            finally:
                os._exit(code)
        os.close(w)
        err = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            err += chunk
        os.close(r)
        _, st = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(st) != 0:
            raise StartFailed({"step": "network", "message": "network: " + (
                err.decode(errors="replace") or "the network helper failed")})

    def net_teardown(self) -> None:
        """net.teardown(name, lxpath) in a forked helper: host ends, forwards, DNS."""
        if not self.plan.get("net_setup"):
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sys.path[:] = self.plan["sys_path"]
                from ..net.setup import teardown  # helper only: pyroute2 stays out of the monitor
                teardown(self.plan["name"], self.plan["lxpath"])
                code = 0
            except BaseException as e:  # noqa: BLE001
                log(f"network teardown: {e}")
            finally:
                os._exit(code)
        os.waitpid(pid, 0)

    def report(self, kind: str, **fields: object) -> None:
        if self.status_fd >= 0:
            try:
                os.write(self.status_fd, proto.encode(kind, **fields))
            except OSError:
                pass
            os.close(self.status_fd)
            self.status_fd = -1
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    # -- running -----------------------------------------------------------------------
    def run(self) -> int:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(s, lambda *_: None)
        self.sigfd = r
        try:
            self.setup()
            self.spawn()
        except StartFailed as e:
            self.state = "ABORTING"
            self.drop_pre()
            self.cleanup(final=True)
            self.event(f"start failed: {e.fields.get('message', 'unknown error')}")
            self.report("error", **e.fields)
            step = e.fields.get("step", "")
            if self.plan.get("app") and step.startswith("exec "):
                # lxpy-execute of a missing (127) or not executable (126) command
                return {"2": 127, "13": 126}.get(e.fields.get("errno", ""), 1)
            return 1
        except BaseException as e:  # noqa: BLE001
            import traceback  # an unexpected failure only
            traceback.print_exception(e)
            self.state = "ABORTING"
            self.drop_pre()
            self.cleanup(final=True)
            self.report("error", step="monitor", message=f"{type(e).__name__}: {e}")
            self.event(f"start failed: {type(e).__name__}: {e}")
            return 1
        self.set_state("RUNNING")
        self.report("ok", pid=self.init_pid)
        self.event(f"started: init pid {self.init_pid}"
                   + (" (application container)" if self.plan.get("app") else ""))
        # Only now: moving a process between cgroups costs an RCU grace period (~10 ms),
        # which lxpy-start need not wait for.
        self.join_monitor_cgroup()
        self.poll.register(self.pidfd, POLL_IN)
        self.poll.register(r, POLL_IN)
        while True:
            timeout = None
            for due in (self.stop_deadline, self.restart_at):
                if due is not None:
                    left = max(0, int((due - time.monotonic()) * 1000) + 1)
                    timeout = left if timeout is None else min(timeout, left)
            try:
                events = self.poll.poll(timeout)
            except InterruptedError:
                continue
            if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
                self.stop_deadline = None
                self.event("still running at the stop timeout: killing it")
                self.kill_all()
            for fd, ev in events:
                if fd == self.pidfd:
                    if self.init_exited():
                        return self.exit_status
                elif fd == r:
                    self.on_signal()
                elif self.listener is not None and fd == self.listener.fileno():
                    self.accept()
                elif fd in self.clients:
                    self.on_client(self.clients[fd], ev)
                elif self.notifier is not None and fd == self.notifier.fd:
                    self.on_notify()
                else:
                    self.on_pty(fd, ev)
            if self.restart_at is not None and self.restart_pending_done():
                return self.exit_status

    def on_signal(self) -> None:
        try:
            data = os.read(self.sigfd, 512)
        except BlockingIOError:
            return
        for b in data:
            if self.plan.get("app") and b in (signal.SIGTERM, signal.SIGHUP):
                try:     # lxpy-execute: the command gets it (through its minimal init)
                    signal.pidfd_send_signal(self.pidfd, b)
                except OSError:
                    pass
            elif self.plan.get("app") and b == signal.SIGINT:
                pass     # the terminal sent it to the command too
            elif b in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self.request_stop(float(self.plan.get("stop_timeout", 60)), False)
            elif b == signal.SIGCHLD:
                self.reap_others()

    def reap_others(self) -> None:
        """Reap children other than init (hooks, orphans handed to us as subreaper)."""
        while True:
            try:
                res = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if res is None or res.si_pid == self.init_pid:
                return
            try:
                os.waitpid(res.si_pid, 0)
            except ChildProcessError:
                return

    def init_exited(self) -> bool:
        """Init is gone: clean up and stop, reboot, or restart it (autostart.restart). True
        when the monitor exits."""
        try:
            _, st = os.waitpid(self.init_pid, 0)
        except ChildProcessError:
            st = 0
        self.poll.unregister(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = -1
        reboot = (os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGHUP
                  and not self.stop_requested and not self.plan.get("app"))
        code = os.waitstatus_to_exitcode(st)
        clean = code == 0           # not a failure: autostart.restart = "on-failure" stays
        if code == -signal.SIGINT and self.own_pidns():
            how = "powered off (reboot(2) in its pid namespace)"
            clean = True
        elif code == -signal.SIGHUP and self.own_pidns():
            how = "asked for a reboot (reboot(2) in its pid namespace)"
        elif code < 0:
            how = f"was killed by {_signame(-code)}"
        else:
            how = f"exited with status {code}"
        self.event(f"init (pid {self.init_pid}) {how}")
        self.exit_status = 128 - code if code < 0 else code
        if not self.plan.get("app") and not reboot:
            self.exit_status = 0
        if reboot:
            self.init_gone()
            return self.respawn("reboot")
        policy = self.plan.get("restart") or "no"
        if policy != "no" and not self.stop_requested:
            if policy == "always" or not clean:
                return self.schedule_restart(policy, how)
            self.event(f"not restarted: autostart.restart = {policy} and init {how.split(' (')[0]}"
                       ", which is no failure")
        self.set_state("STOPPING")
        self.cleanup(final=True)
        return True

    def init_gone(self) -> None:
        """Between two inits (a reboot, a restart): what the last one left goes."""
        self.set_state("STARTING")
        self.reap_zombies()
        if not self.own_pidns():         # else the pid namespace took everything along
            self.kill_cgroup()
            try:
                self.cgroup_call("thaw")      # kill() may leave it frozen
            except Exception:  # noqa: BLE001
                pass
        self.stop_deadline = None
        self.init_pid = 0
        self.init_start = None
        self.net_teardown()

    def respawn(self, what: str) -> bool:
        """A new init in the same monitor (what: "reboot" or "restart"). True when that
        failed and the monitor exits."""
        try:
            self.spawn()
        except (StartFailed, OSError) as e:
            log(f"{what} failed: {e}")
            self.event(f"{what} failed: {e}")
            self.set_state("ABORTING")
            self.cleanup(final=True)
            self.exit_status = 1
            return True
        self.poll.register(self.pidfd, POLL_IN)
        self.event(f"{what}ed: init pid {self.init_pid}")      # in the history before it is
        self.set_state("RUNNING")                                # published
        return False

    def schedule_restart(self, policy: str, how: str) -> bool:
        """autostart.restart: a new init after a back-off, unless init died too often within
        autostart.restart_limit's window (then stop for good). True when the monitor exits."""
        now = time.monotonic()
        limit, window = self.plan.get("restart_limit") or (5, 300)
        self.failures = [t for t in self.failures if now - t < window] + [now]
        self.init_gone()
        if len(self.failures) > limit:
            msg = (f"gave up restarting: init died {len(self.failures)} times within {window} s "
                   f"(autostart.restart_limit = \"{limit}/{window}s\"); the container stays "
                   "stopped")
            log(msg)
            self.event(msg)
            self.set_state("STOPPING")
            self.cleanup(final=True)
            self.exit_status = 1        # lxpy@.service: failed, with this in the journal
            return True
        delay = min(300, int(self.plan.get("restart_delay", 1)) << (len(self.failures) - 1))
        msg = (f"restarting in {delay} s (autostart.restart = {policy}: init {how}; restart "
               f"{len(self.failures)} of at most {limit} within {window} s)")
        log(msg)
        self.event(msg)
        self.restart_at = now + delay
        self.restart_why = f"init {how}"
        return False

    def restart_pending_done(self) -> bool:
        """In the loop, while a restart waits: stop instead if asked to, restart when due.
        True when the monitor exits."""
        if self.stop_requested:
            self.restart_at = None
            self.event("restart cancelled: stop requested")
            self.set_state("STOPPING")
            self.cleanup(final=True)
            return True
        if time.monotonic() < self.restart_at:
            return False
        self.restart_at = None
        self.restarts += 1
        return self.respawn("restart")

    def reap_zombies(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def request_stop(self, timeout: float, kill: bool) -> None:
        if not self.stop_requested or kill:
            self.event("stop requested: " + ("kill" if kill or timeout <= 0 else
                       f"{timeout:g} s to shut down, then kill"))
        self.stop_requested = True
        if self.state in ("RUNNING", "FROZEN", "FREEZING"):
            if self.state != "RUNNING":
                self.cgroup_call("thaw")
            self.set_state("STOPPING")
        if kill or timeout <= 0:
            self.kill_all()
            return
        sig = signal.SIGTERM if self.plan.get("app") else int(self.plan["halt_signal"])
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except OSError:
            pass
        self.move_to_cgroup_roots()      # the monitor exits after this stop, whatever happens
        deadline = time.monotonic() + timeout
        if self.stop_deadline is None or deadline < self.stop_deadline:
            self.stop_deadline = deadline

    def kill_all(self) -> None:
        """SIGKILL init: with a pid namespace of its own, that takes every process of the
        container with it (the kernel's doing); otherwise the cgroup is killed too."""
        self.killed = True
        own_pidns = self.own_pidns()
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except OSError:
                pass
        if not own_pidns or self.pidfd < 0:
            self.kill_cgroup()

    def own_pidns(self) -> bool:
        return "pid" in self.plan["ns_create"] and "pid" not in (self.plan.get("ns_share") or {})

    def kill_cgroup(self) -> None:
        if self.plan.get("cgroup"):
            try:
                self.cgroup().kill()
            except Exception as e:  # noqa: BLE001
                log(f"cgroup kill: {e}")

    def rmdir_cgroup(self) -> bool:
        """Remove the (now empty) payload cgroup and what systemd made inside, bottom-up,
        without importing the cgroup layer. False if anything is still in use."""
        ok = True
        for procs in self.plan.get("cgroup_procs") or ():
            top = os.path.dirname(procs)
            for d, _subdirs, _files in os.walk(top, topdown=False):
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError:
                    ok = False
        return ok

    _cg = None

    def cgroup(self):
        if self._cg is None:
            from .. import cgroups  # pathlib, re: on demand, not in the lean monitor
            self._cg = cgroups.driver().open(self.plan["cgroup"])
        return self._cg

    def cgroup_call(self, what: str, *args):
        return getattr(self.cgroup(), what)(*args)

    # -- cleanup -----------------------------------------------------------------------
    def run_hooks(self, which: str) -> None:
        hooks = self.plan.get("hooks", {}).get(which) or ()
        if not hooks:
            return
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LXPY_NAME": self.plan["name"], "LXPY_PATH": self.plan["lxpath"],
               "LXPY_ROOTFS": self.plan["rootfs"], "LXPY_CONFIG_FILE": self.plan["config_path"],
               "LXPY_HOOK_TYPE": which.removesuffix("_monitor"),
               "LXPY_STATE": self.state}
        if self.init_pid:
            env["LXPY_PID"] = str(self.init_pid)
        for h in hooks:
            code = run_shell(h, env)
            if code != 0:
                log(f"{which} hook {h!r} exited with status {code}")

    def cleanup(self, final: bool) -> None:
        """Undo what the start set up; the mount and other namespaces went with init."""
        self.stop_deadline = None
        if self.pidfd >= 0:
            self.kill_all()
            try:
                os.waitpid(self.init_pid, 0)
            except ChildProcessError:
                pass
            os.close(self.pidfd)
            self.pidfd = -1
        self.reap_zombies()
        if self.init_pid or self.state != "ABORTING":
            self.run_hooks("stop")
        self.net_teardown()
        if self.plan.get("cgroup") and not self.rmdir_cgroup():
            try:
                cg = self.cgroup()
                cg.kill()
                cg.destroy()
            except Exception as e:  # noqa: BLE001
                log(f"cgroup cleanup: {e}")
        self.run_hooks("post_stop")
        for master, slave, _ in self.ptys:
            for fd in (master, slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.ptys = []
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1
        self.remove_run_dir()
        self.leave_monitor_cgroup()
        if self.state != "ABORTING":
            self.event("stopped")
        self.state = "STOPPED"
        msg = proto.frame("state", state="STOPPED")
        for c in list(self.clients.values()):
            if c.subscribed:
                self.send(c, msg)

    def join_monitor_cgroup(self) -> None:
        """Move to the monitor's own cgroup (made by lxpy-start), apart from the payload and
        from the caller's cgroup, as LXC does."""
        for d in self.plan.get("monitor_cgroup_dirs") or ():
            try:
                join_self(d)
            except OSError as e:
                log(f"monitor cgroup {d}: {e.strerror}")

    def leave_monitor_cgroup(self) -> None:
        """Move to the hierarchy roots and remove the monitor's own cgroup, then the parent
        cgroup (lxpy) if this was its last container (a start that races this makes it
        again: cgroups.Driver._create_unique)."""
        if not self.plan.get("monitor_cgroup_dirs"):
            return
        self.move_to_cgroup_roots()
        for d in self.plan["monitor_cgroup_dirs"]:
            try:
                os.rmdir(d)
            except OSError as e:
                if e.errno != 2:
                    log(f"monitor cgroup {d}: {e.strerror}")
            try:
                os.rmdir(os.path.dirname(d))
            except OSError:
                pass        # other containers in it, or gone already

    _left_cgroup = False

    def move_to_cgroup_roots(self) -> None:
        """Once; request_stop does it while the guest shuts down, as a cgroup.procs move
        (cgroup2; see cgjoin) waits for the kernel (an RCU grace period, ~10 ms)."""
        if self._left_cgroup or not self.plan.get("monitor_cgroup_dirs"):
            return
        self._left_cgroup = True
        for root in self.plan.get("cgroup_roots") or ():
            try:
                join_self(root)
            except OSError:
                pass

    def remove_run_dir(self) -> None:
        try:
            names = os.listdir(self.run_dir)
        except FileNotFoundError:
            names = []
        for name in names:
            if name != "rootfs":
                try:
                    os.unlink(os.path.join(self.run_dir, name))
                except OSError:
                    pass
        for d in (os.path.join(self.run_dir, "rootfs"), self.run_dir,
                  os.path.dirname(self.run_dir)):
            try:
                os.rmdir(d)
            except OSError:
                pass

    # -- clients -----------------------------------------------------------------------
    def accept(self) -> None:
        assert self.listener is not None
        try:
            fd, _ = self.listener._accept()
        except (BlockingIOError, InterruptedError):
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
        s.setblocking(False)
        c = Client(s)
        self.clients[s.fileno()] = c
        self.poll.register(s.fileno(), POLL_IN)

    def send(self, c: Client, data: bytes) -> None:
        try:
            c.sock.send(data)
        except (BlockingIOError, InterruptedError):
            pass   # a client that does not read loses output, the container never waits
        except OSError:
            self.drop(c)

    def drop(self, c: Client) -> None:
        fd = c.sock.fileno()
        if fd in self.clients:
            self.poll.unregister(fd)
            del self.clients[fd]
        if c.tty is not None and self.holders.get(c.tty) is c:
            del self.holders[c.tty]
        c.sock.close()

    def on_client(self, c: Client, ev: int) -> None:
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(c)
            return
        if c.tty is not None:
            master = self.ptys[c.tty][0]
            try:
                os.write(master, data)
            except OSError:
                pass
            return
        for kind, msg in c.reader.feed(data):
            self.handle(c, kind, msg)
            if c.tty is not None:
                rest = c.reader.buf
                c.reader.buf = b""
                if rest:
                    try:
                        os.write(self.ptys[c.tty][0], rest)
                    except OSError:
                        pass
                break

    def handle(self, c: Client, kind: str, msg: dict[str, str]) -> None:
        if kind == "state":
            self.send(c, proto.frame("state", **self.state_fields()))
        elif kind == "subscribe":
            c.subscribed = True
            self.send(c, proto.frame("state", **self.state_fields()))
        elif kind == "stop":
            self.send(c, proto.frame("ok"))
            self.request_stop(float(msg.get("timeout") or self.plan.get("stop_timeout", 60)),
                              msg.get("kill") == "1")
        elif kind == "reboot":
            if self.plan.get("app"):
                self.send(c, proto.frame("error", message="an application container cannot "
                                         "reboot"))
                return
            try:
                signal.pidfd_send_signal(self.pidfd, int(self.plan["reboot_signal"]))
            except OSError as e:
                self.send(c, proto.frame("error", message=f"reboot: {e.strerror}"))
                return
            self.send(c, proto.frame("ok"))
        elif kind == "console":
            n = int(msg.get("tty") or 0)
            if n < 0 or n >= len(self.ptys):
                self.send(c, proto.frame("error", message=f"there is no tty {n} (the container "
                                         f"has {max(0, len(self.ptys) - 1)}; 0 is the "
                                         "console)"))
                return
            holder = self.holders.get(n)
            if holder is not None:
                what = "the console" if n == 0 else f"tty {n}"
                self.send(c, proto.frame("error", message=f"{what} is in use by another "
                                         "lxpy-console"))
                return
            if msg.get("rows") and msg.get("cols"):
                try:
                    from ..linux.tty import set_winsize  # fcntl, struct: on demand
                    set_winsize(self.ptys[n][0], int(msg["rows"]), int(msg["cols"]))
                except (OSError, ValueError):
                    pass
            self.holders[n] = c
            c.tty = n
            self.send(c, proto.frame("ok"))
        elif kind == "winsize":
            try:
                n = int(msg.get("tty") or 0)
                from ..linux.tty import set_winsize  # fcntl, struct: on demand
                set_winsize(self.ptys[n][0], int(msg["rows"]), int(msg["cols"]))
                self.send(c, proto.frame("ok"))
            except (OSError, ValueError, KeyError, IndexError) as e:
                self.send(c, proto.frame("error", message=str(e)))
        elif kind in ("freeze", "thaw"):
            if not self.plan.get("cgroup"):
                self.send(c, proto.frame("error", message="the container has no cgroup"))
                return
            try:
                if kind == "freeze":
                    self.set_state("FREEZING")
                    self.cgroup_call("freeze")
                    self.set_state("FROZEN")
                else:
                    self.cgroup_call("thaw")
                    self.set_state("RUNNING")
            except Exception as e:  # noqa: BLE001
                self.set_state("RUNNING" if kind == "thaw" else self.state)
                self.send(c, proto.frame("error", message=str(e)))
                return
            self.send(c, proto.frame("ok"))
        elif kind in ("cgroup_get", "cgroup_set"):
            try:
                cg = self.cgroup()
                key = msg["key"]
                if kind == "cgroup_get":
                    value = cg.get(key)
                    self.send(c, proto.frame("ok", value=value))
                else:
                    if key.startswith("limits."):
                        cg.set_limit(key, msg["value"])
                    else:
                        cg.set(key, msg["value"])
                    self.send(c, proto.frame("ok"))
            except Exception as e:  # noqa: BLE001
                self.send(c, proto.frame("error", message=str(e)))
        else:
            self.send(c, proto.frame("error", message=f"unknown request {kind!r}"))

    def on_pty(self, fd: int, ev: int) -> None:
        n = next((i for i, p in enumerate(self.ptys) if p[0] == fd), None)
        if n is None:
            try:
                self.poll.unregister(fd)
            except KeyError:
                pass
            return
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return
        if n == 0 and self.log_fd >= 0:
            self.write_log(data)
        holder = self.holders.get(n)
        if holder is not None:
            self.send(holder, data)

    def write_log(self, data: bytes) -> None:
        limit = int(self.plan.get("console_log_size") or 0)
        if limit and self.log_size + len(data) > limit:
            path = self.plan["console_log"]
            try:
                os.rename(path, path + ".1")
                os.close(self.log_fd)
                self.log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND |
                                      os.O_CLOEXEC, 0o600)
                self.log_size = 0
            except OSError:
                pass
        try:
            self.log_size += os.write(self.log_fd, data)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run_dir, status_fd, lock_fd, mode = argv[0], int(argv[1]), int(argv[2]), argv[3]
    pre = argv[4] if len(argv) > 4 else ""
    fds = [status_fd, lock_fd]
    if pre:     # the fds in the handover argument (see Monitor.__init__)
        items = pre.split(",")
        for item in items[:1] + items[3:]:
            fds += [int(x) for x in item.split(":")[:2]]
    for fd in fds:
        if fd >= 0:
            os.set_inheritable(fd, False)
    try:    # prctl(PR_SET_NAME) without ctypes: what top and ps -o comm show
        with open("/proc/self/comm", "w") as f:
            f.write("lxpy monitor")
    except OSError:
        pass
    m = Monitor(run_dir, status_fd, lock_fd, mode == "foreground", pre)
    code = m.run()
    sys.stdout.flush()
    os._exit(code)


BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from lxpy.runtime.monitor import main; main()")

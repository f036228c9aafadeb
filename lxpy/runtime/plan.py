"""The start plan: what lxpy-start resolves from the config and hands to the container's
PID 1 (by fork: the namespace helper is forked from lxpy-start, see start._prefork) and to
the monitor (a marshal file of its fields in the run dir: the lean monitor imports neither
dataclasses nor this module). A reboot's new PID 1 is forked by the monitor, which has no
typed plan: its helper child reads the pickle lxpy-start left in the run dir (root's, 0600).

build() makes it, describe() prints it (lxpy-start --dry-run).
"""

from __future__ import annotations

import dataclasses
import marshal
import os
import pickle
import sys
from dataclasses import dataclass

from .. import lxcfs
from ..config.schema import restart_limit
from ..config.signals import parse_signal
from ..errors import RuntimeStartError
from ..idmap import IdMap
from ..linux import mount as m
from ..net.plan import DEVICES
from . import mounts as ops
from . import security

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PICKLE = "plan.pickle"      # the typed plan, for the helper of a reboot
MONITOR = "plan"            # its fields (marshal), for the monitor

DEV_NODES = (  # name, major, minor
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
    ("tty", 5, 0),
)
EXTRA_DEVICES = {"fuse": ("fuse", 10, 229), "tun": ("net/tun", 10, 200),
                 "kvm": ("kvm", 10, 232), "loop": ("loop-control", 10, 237)}


@dataclass(frozen=True)
class Plan:
    name: str
    lxpath: str
    dir: str
    config_path: str
    rootfs: str
    run_dir: str
    staging: str                        # where the rootfs is mounted before pivot_root
    app: bool                           # lxpy-execute: init_cmd is the command
    hostname: str
    init_cmd: tuple[str, ...]
    init_cwd: str
    init_uid: int
    init_gid: int
    env: dict[str, str]
    ns_create: tuple[str, ...]
    ns_share: dict[str, str]            # namespace -> "host" or the container sharing it
    share_pids: dict[str, int]          # that container -> its init's pid
    idmap_uid: tuple[tuple[int, int, int], ...]
    idmap_gid: tuple[tuple[int, int, int], ...]
    idmap_root: tuple[int, int] | None  # host uid of its root, host gid of its tty group
    cgroup: str
    cgroup_procs: tuple[str, ...]       # the payload cgroup's cgroup.procs on each hierarchy
    cgroup_v2_dir: str
    monitor_cgroup: str
    monitor_cgroup_dirs: tuple[str, ...]
    cgroup_roots: tuple[str, ...]
    mounts: tuple[ops.Op, ...]          # PID 1's, in order (PivotRoot among them)
    net_setup: bool                     # the monitor sets up links once PID 1 is forked
    late_sysctls: tuple[ops.Sysctl, ...]    # net.*: once the network is there
    prlimits: dict[str, tuple[int, int]]
    security_policy: dict | None        # security.resolve(), seccomp compiled to BPF
    hooks_start: tuple[str, ...]
    hooks: dict[str, tuple[str, ...]]   # stop, post_stop: the monitor's
    halt_signal: int
    reboot_signal: int
    stop_timeout: int
    tty_max: int
    console_log: str
    console_log_size: int
    event_log: str
    sys_path: tuple[str, ...]
    handshake_timeout: int = 30
    # autostart.restart: the monitor's policy when init dies ("no" for lxpy-execute)
    restart: str = "no"
    restart_delay: int = 1
    restart_limit: tuple[int, int] = (5, 300)     # restarts, in seconds

    def own(self, ns: str) -> bool:
        """A namespace of its own, not shared with the host or another container."""
        return ns in self.ns_create and ns not in self.ns_share

    def save(self) -> None:
        """The monitor's marshal file and the pickle (both root's, 0600, in the run dir)."""
        for name, data in ((PICKLE, pickle.dumps(self)),
                           (MONITOR, marshal.dumps(dataclasses.asdict(self)))):
            tmp = os.path.join(self.run_dir, f".{name}.tmp")
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600),
                      "wb") as f:
                f.write(data)
            os.rename(tmp, os.path.join(self.run_dir, name))


def load(run_dir: str) -> Plan:
    with open(os.path.join(run_dir, PICKLE), "rb") as f:
        return pickle.load(f)


def host_id(mapping, inside: int) -> int:
    for a, b, n in mapping:
        if a <= inside < a + n:
            return b + inside - a
    return 0


def _env(cfg, tty_max: int) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "TERM": "linux", "HOME": "/", "container": "lxpy"}
    if tty_max:
        env["container_ttys"] = " ".join(f"tty{i}" for i in range(1, tty_max + 1))
    env.update(dict(cfg.environment))
    return env


def _mounts(container, cfg, *, userns: bool, app: bool, tty_max: int, share: dict, cgroup,
            init_cmd: tuple, env: dict) -> tuple[ops.Op, ...]:
    """PID 1's mount operations, in the order it runs them. userns: an unprivileged
    container (its rootfs and bind mounts idmapped by the namespace helper)."""
    root = str(container.run_dir / "rootfs")
    create = set(cfg.namespaces.create) - set(share)
    backend = cfg.rootfs.backend
    rootfs = ops.Rootfs(backend, str(container.dir), (
        ("backend", backend), ("path", str(cfg.rootfs.path)),
        ("lower", str(cfg.rootfs.lower or "")), ("origin", str(cfg.rootfs.origin or ""))),
        str(container.rootfs), root, idmapped=userns)
    sysctls = [ops.Sysctl(k, str(v), f"{root}/proc") for k, v in dict(cfg.security.sysctl).items()
               if not k.startswith("net.")]
    devices = [*DEV_NODES] + [EXTRA_DEVICES[d] for d in cfg.devices.allow]
    nodes = [ops.DevNode(n, major, minor, userns) for n, major, minor in devices]
    ptys = [] if app else [ops.Pty(i, f"/dev/tty{i}" if i else "/dev/console")
                           for i in range(1 + tty_max)]
    readonly = list(cfg.security.readonly_paths)
    warn = "unprivileged container: " if userns else ""
    nsne, nse = m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC, m.MS_NOSUID | m.MS_NOEXEC
    host_sys = "net" in cfg.namespaces.create and "net" not in create
    out = [
        ops.Private(), rootfs, ops.RootfsDirs(root), ops.Mount("proc", "/proc", nsne, root=root),
        *sysctls,
        ops.Bind("/sys", "/sys", root=root) if host_sys else
        ops.Mount("sysfs", "/sys", nsne | m.MS_RDONLY, root=root),
        *_lxcfs(container, cfg, root),
        ops.PivotRoot(root),
        ops.Mount("tmpfs", "/dev", nse, "mode=755,size=65536k,nr_inodes=16384", source="none"),
        *([] if userns else nodes),
        ops.Mount("devpts", "/dev/pts", nse, "newinstance,ptmxmode=0666,mode=0620,gid=5,"
                  f"max={int(cfg.tty.ptys)}", mode=0o755),
        ops.Mount("tmpfs", "/dev/shm", m.MS_NOSUID | m.MS_NODEV, "mode=1777,size=65536k",
                  mode=0o1777, source="shm"),
        *([ops.Mount("mqueue", "/dev/mqueue", nsne, mode=0o755)] if "ipc" in create else []),
        ops.Links((("/dev/ptmx", "pts/ptmx"), ("/dev/fd", "/proc/self/fd"),
                   ("/dev/stdin", "/proc/self/fd/0"), ("/dev/stdout", "/proc/self/fd/1"),
                   ("/dev/stderr", "/proc/self/fd/2"))),
        *ptys, *(nodes if userns else []),
        *([] if app else [ops.BootId(warn=warn and warn + "the host's boot id shows through")]),
        *(ops.Bind(p, p) for p in readonly),
        *([ops.Bind("/proc/sys/net", "/proc/sys/net", readonly=False)]
          if "net" in create and "/proc/sys" in readonly else []),
        *(ops.Mask(p) for p in cfg.security.masked_paths),
    ]
    if cgroup is not None and "mnt" in create:
        # In a user namespace the kernel lets its root mount cgroup2 and the host's existing
        # v1 hierarchies (name=systemd among them) when the cgroup namespace is its own too:
        # each mount's root is then the container's cgroup, delegated to its root
        # (start._delegate). Without one, it refuses (EPERM): systemd then finds no cgroups.
        own_cgroupns = "cgroup" in create
        out.append(ops.CgroupFs(tuple(tuple(x) for x in cgroup.container_mounts()),
                                warn="" if own_cgroupns else warn and warn +
                                "no cgroup namespace of its own, so no cgroup filesystem "
                                "inside (add cgroup to namespaces.create)"))
    out += [ops.UserMount(_source(container, mnt), mnt.target, mnt.type, tuple(mnt.options),
                          unprivileged=userns) for mnt in cfg.mount]
    if not app:
        out.append(ops.NotifySocket(str(container.run_dir / "notify"), init_cmd,
                                    tuple(env.items())))
    return tuple(out)


def _lxcfs(container, cfg, root: str) -> list[ops.Op]:
    """proc.lxcfs: lxcfs's /proc and /sys files over the container's (lxpy.lxcfs)."""
    want, path = cfg.proc.lxcfs, cfg.proc.lxcfs_path
    if want is False:
        return []
    if not lxcfs.live(path):
        if want == "auto":
            return []
        raise RuntimeStartError(f"container {container.name!r}: proc.lxcfs is true but lxcfs "
                                f"is not running at {path}",
                                f"start it (systemctl start lxcfs, or lxcfs {path}), or set "
                                "proc.lxcfs = \"auto\"")
    return [ops.LxcfsBind(src, target, root, required=want is True)
            for src, target in lxcfs.binds(path)]


def _source(container, mnt) -> str:
    if mnt.type == "bind" and not os.path.isabs(mnt.source):
        return os.path.join(container.dir, mnt.source)
    return mnt.source


def build(container, cfg, *, idmap: IdMap | None, cgroup, monitor_cgroup,
          app_cmd: list[str] | None, share_pids: dict[str, int], logs: str,
          attach_context: dict) -> Plan:
    """The plan of a start. idmap: lxpy.idmap.resolve()'s maps (None: privileged);
    cgroup, monitor_cgroup: cgroups.Cgroup objects or None; attach_context:
    attach.make_context(cfg)."""
    nets = list(cfg.net)
    share = dict(cfg.namespaces.share)
    if nets and all(n.type == "none" for n in nets):
        share.setdefault("net", "host")
    app = app_cmd is not None
    tty_max = 0 if app else int(cfg.tty.max)
    env = _env(cfg, tty_max)
    init_cmd = tuple(app_cmd) if app else tuple(cfg.init.cmd)
    idmap_uid = tuple(tuple(x) for x in idmap.uid) if idmap else ()
    idmap_gid = tuple(tuple(x) for x in idmap.gid) if idmap else ()
    return Plan(
        name=container.name, lxpath=str(container.lxpath), dir=str(container.dir),
        config_path=str(container.config_path), rootfs=str(container.rootfs),
        run_dir=str(container.run_dir), staging=str(container.run_dir / "rootfs"), app=app,
        hostname=cfg.hostname or container.name, init_cmd=init_cmd,
        init_cwd=cfg.init.cwd, init_uid=int(cfg.init.uid), init_gid=int(cfg.init.gid), env=env,
        ns_create=tuple(cfg.namespaces.create), ns_share=share,
        share_pids={k: int(v) for k, v in share_pids.items()},
        idmap_uid=idmap_uid, idmap_gid=idmap_gid,
        idmap_root=(idmap.host_uid(0), host_id(idmap_gid, 5)) if idmap else None,
        cgroup=cgroup.path if cgroup is not None else "",
        cgroup_procs=tuple(str(d / "cgroup.procs") for d in cgroup.dirs()) if cgroup else (),
        cgroup_v2_dir=next((str(h.path(cgroup.path)) for h in cgroup.hierarchies
                            if h.version == 2), "") if cgroup else "",
        monitor_cgroup=monitor_cgroup.path if monitor_cgroup is not None else "",
        monitor_cgroup_dirs=tuple(str(d) for d in monitor_cgroup.dirs())
        if monitor_cgroup is not None else (),
        cgroup_roots=tuple(str(h.mount) for h in monitor_cgroup.hierarchies)
        if monitor_cgroup is not None else (),
        mounts=_mounts(container, cfg, userns=idmap is not None, app=app, tty_max=tty_max,
                       share=share, cgroup=cgroup, init_cmd=init_cmd, env=env),
        net_setup=any(n.type in DEVICES for n in nets),
        late_sysctls=tuple(ops.Sysctl(k, str(v)) for k, v in dict(cfg.security.sysctl).items()
                           if k.startswith("net.")),
        prlimits={k: tuple(v) for k, v in dict(cfg.security.prlimits).items()},
        # the resolved policy (seccomp compiled to BPF), for PID 1 and for lxpy-attach
        security_policy=attach_context.get("security"),
        hooks_start=tuple(cfg.hooks.start),
        hooks={"stop": tuple(cfg.hooks.stop), "post_stop": tuple(cfg.hooks.post_stop)},
        halt_signal=parse_signal(cfg.init.halt_signal),
        reboot_signal=parse_signal(cfg.init.reboot_signal),
        stop_timeout=int(cfg.init.stop_timeout), tty_max=tty_max,
        console_log=os.path.join(logs, "console.log") if cfg.console.log and not app else "",
        console_log_size=int(cfg.console.log_size),
        # the container's history (started, stop requested, init's exit, reboots, stopped)
        event_log=os.path.join(logs, "lxpy.log"),
        sys_path=tuple(p for p in sys.path if p),
        restart="no" if app else cfg.autostart.restart,
        restart_delay=int(cfg.autostart.restart_delay),
        restart_limit=restart_limit(cfg.autostart.restart_limit))


def describe(plan: Plan) -> list[str]:
    """The plan as an admin reads it (lxpy-start --dry-run)."""
    own = [n for n in plan.ns_create if n not in plan.ns_share]
    shared = [f"{n} with {who}" for n, who in plan.ns_share.items()]
    lines = [f"container {plan.name} in {plan.lxpath}",
             f"namespaces: {' '.join(own) or '-'}"
             + (f" (shared: {', '.join(shared)})" if shared else "")]
    if plan.idmap_uid:
        lines += ["id map: uid " + ", ".join(" ".join(map(str, x)) for x in plan.idmap_uid)
                  + "; gid " + ", ".join(" ".join(map(str, x)) for x in plan.idmap_gid)]
    else:
        lines += ["id map: none (privileged: its root is the host's)"]
    lines += [f"cgroup: {plan.cgroup or '-'}"
              + (f" (monitor: {plan.monitor_cgroup})" if plan.monitor_cgroup else ""),
              f"network: {'links set up by the monitor' if plan.net_setup else 'no links'}",
              "mounts:", *(f"  {op.describe()}" for op in plan.mounts),
              f"hostname: {plan.hostname}",
              f"init: {' '.join(plan.init_cmd)} (cwd {plan.init_cwd}, uid {plan.init_uid}, "
              f"gid {plan.init_gid})",
              "environment:", *(f"  {k}={v}" for k, v in plan.env.items())]
    lines += [f"once the network is up: {op.describe()}" for op in plan.late_sysctls]
    lines += [f"prlimit {k}: {soft} {hard}" for k, (soft, hard) in plan.prlimits.items()]
    lines += [f"start hook: {h}" for h in plan.hooks_start]
    if plan.restart != "no":
        n, secs = plan.restart_limit
        lines += [f"restart: {plan.restart} (after {plan.restart_delay} s, doubling; gives up "
                  f"after {n} restarts in {secs} s)"]
    if plan.security_policy:
        lines += security.describe(plan.security_policy)
    return lines

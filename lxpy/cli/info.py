"""lxpy-info: what a container is and how it is doing."""

from __future__ import annotations

import json
import sys

from lxpy import hostlimits, idmap, lxcfs, storage
from lxpy.container import Container
from lxpy.errors import ConfigError, LxpyError
from lxpy.lifecycle.depends import fallback_config
from lxpy.status import addresses, cgroup_stats, state_of
from lxpy.storage import quota
from lxpy.storage.base import rootfs_dir

HELP = "Show a container's state, pid, rootfs, backend, disk and resource use, addresses."


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-s", "--state", action="store_true", help="only the state")
    p.add_argument("-p", "--pid", action="store_true", help="only the init pid")
    p.add_argument("-H", "--no-humanize", action="store_true", help="raw numbers")
    p.add_argument("--no-size", action="store_true", help="skip the disk usage (faster)")


def _human(n, raw: bool) -> str:
    if n is None:
        return "-"
    if raw or not isinstance(n, (int, float)):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def gather(c, with_size: bool = True, skip_loopback: bool = False) -> dict:
    st = state_of(c)
    info: dict = {"name": c.name, "state": st.state, "pid": st.pid}
    try:
        cfg = c.config
    except ConfigError as e:        # a broken config never hides a container
        cfg = fallback_config(c)
        info["config_error"] = e.message
        info["config_hint"] = e.hint
    else:
        info.update({
            "hostname": cfg.hostname or c.name,
            "template": cfg.template or None,
        })
    info.update({
        "path": str(c.dir),
        "config": str(c.config_path),
        "rootfs": str(rootfs_dir(c.dir, cfg)),
        "backend": cfg.rootfs.backend,
        "lower": cfg.rootfs.lower or None,
        "origin": cfg.rootfs.origin or None,
    })
    if "config_error" not in info:
        info.update({
            "config_files": list(cfg.files),
            "autostart": {"enabled": cfg.autostart.enabled, "order": cfg.autostart.order,
                          "delay": cfg.autostart.delay, "groups": list(cfg.autostart.groups)},
            "idmap": idmap.describe(c, cfg),
            "limits": {k.removeprefix("limits."): v for k, v in cfg.values.items()
                       if k.startswith("limits.") and v not in (None, {}, ())},
        })
    if st.extra:
        for k in ("cgroup", "started", "console_log"):
            if st.extra.get(k) is not None:
                info[k] = st.extra[k]
        f = st.extra.get("extra") or {}          # the state file's fields
        if st.state != "STOPPED" and f.get("restarts") and "config_error" not in info:
            # autostart.restart: how often the monitor brought it back (lxpy.log says why)
            info["restarts"] = int(f["restarts"])
            info["restart_policy"] = cfg.autostart.restart
            info["restart_why"] = f.get("restart_why") or None
        if st.state != "STOPPED" and f.get("notify") == "1":
            # the guest's systemd sent READY=1 on the notify socket (lxpy-wait -s READY)
            info["ready"] = f.get("ready") == "1"
            info["guest_status"] = f.get("status") or None
            if info["ready"] and st.state == "RUNNING":
                # is-system-running inside; only when degraded, its failed units' journal
                info["guest"] = hostlimits.diagnose(c)
    if with_size:
        try:
            info["disk_usage"] = storage.get(cfg.rootfs.backend).usage(c.dir, cfg)
        except Exception:  # noqa: BLE001 - size is informational
            info["disk_usage"] = None
        if "config_error" not in info and cfg.get("limits.disk") is not None:
            try:
                info["disk_quota"] = quota.state(c.dir, cfg)
            except LxpyError as e:
                info["disk_quota"] = {"error": e.message}
    info["resources"] = cgroup_stats(c, st)
    # skip_loopback: the text output leaves lo out, so a netns with only lo needs no dump
    info["interfaces"] = addresses(st.pid, skip_loopback) if st.pid else {}
    # its lxcfs binds (proc.lxcfs): stale once lxcfs stopped or restarted
    view = lxcfs.view(st.pid) if st.pid and st.state != "STOPPED" else None
    if view is not None:
        info["proc_view"] = view
    return info


def _guest_lines(guest: dict | None) -> list[tuple[str, str]]:
    """The guest's systemd state; when degraded, its failed units and a host limit to blame."""
    if not guest:
        return []
    out = [("Guest", guest["state"] + (f" (failed: {', '.join(guest['failed'])})"
                                       if guest["failed"] else ""))]
    cause = guest.get("host_limit")
    if cause:
        said = cause["message"]
        if not said.startswith(cause["unit"]):
            said = f"{cause['unit']}: {said}"
        out.append(("Degraded by", f"the host's {cause['key']} ({cause['value']}): {said} "
                                   "-> raise it (lxpy-checkconfig says to what)"))
    return out


def _idmap_lines(m: dict) -> list[tuple[str, str]]:
    """Privileged: yes; or no, the setting, and the ids it holds (0-65535 -> 1065536-1131071)."""
    if m["privileged"]:
        return [("Privileged", "yes (idmap = \"none\": root inside is root on the host)")]
    if m.get("error"):
        return [("Privileged", "no"), ("Id map", f"{m['mode']}: {m['error']}")]
    if m["uid"] is None:
        return [("Privileged", "no"), ("Id map", f"{m['mode']}: no block yet (given at start)")]

    def ranges(triples: list) -> str:
        return ", ".join(f"{a}-{a + n - 1} -> {b}-{b + n - 1}" if n > 1 else f"{a} -> {b}"
                         for a, b, n in triples)
    return [("Privileged", "no"), ("Id map", m["mode"]), ("Uid map", ranges(m["uid"])),
            ("Gid map", ranges(m["gid"]))]


def run(args) -> int:
    c = Container(args.name, args.lxpath).require()
    if args.state or args.pid:
        st = state_of(c)
        if args.state:
            print(f"State: {st.state}" if not args.pid else f"State: {st.state}")
        if args.pid:
            print(f"PID: {st.pid or '-'}")
        return 0
    info = gather(c, with_size=not args.no_size, skip_loopback=not args.json)
    if args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        print()
        return 0
    raw = args.no_humanize
    lines = [("Name", info["name"]), ("State", info["state"]), ("PID", info["pid"] or "-")]
    if "config_error" in info:
        lines.append(("Config error", info["config_error"]))
        if info["config_hint"]:
            lines.append(("Hint", info["config_hint"]))
    else:
        lines += [("Hostname", info["hostname"]), ("Template", info["template"] or "-")]
    lines += [("Path", info["path"]), ("Rootfs", info["rootfs"]), ("Backend", info["backend"])]
    if info["lower"]:
        lines.append(("Lower", info["lower"]))
    if info["origin"]:
        lines.append(("Origin", info["origin"]))
    if "disk_usage" in info:
        lines.append(("Disk use", _human(info["disk_usage"], raw)))
    q = info.get("disk_quota")
    if q:
        lines.append(("Disk limit", q["error"] if "error" in q else
                      f"{_human(q['used'], raw)} used of {_human(q['limit'], raw)} ({q['by']})"))
    if "autostart" in info:
        a = info["autostart"]
        lines.append(("Autostart", f"{'yes' if a['enabled'] else 'no'} (order {a['order']}, "
                                   f"delay {a['delay']}s, groups {','.join(a['groups']) or '-'})"))
        lines += _idmap_lines(info["idmap"])
    for k, v in info.get("limits", {}).items():
        lines.append((f"Limit {k}", _human(v, raw) if k.startswith(("memory", "disk")) else v))
    if "restarts" in info:
        last = f"; last: {info['restart_why']}" if info["restart_why"] else ""
        lines.append(("Restarts", f"{info['restarts']} (autostart.restart = "
                                  f"{info['restart_policy']}{last})"))
    if "ready" in info:
        status = f" ({info['guest_status']})" if info["guest_status"] else ""
        lines.append(("Ready", ("yes" if info["ready"] else "no, booting") + status))
    lines += _guest_lines(info.get("guest"))
    if "cgroup" in info:
        lines.append(("Cgroup", info["cgroup"]))
    r = info["resources"]
    shown = [("memory_current", "Memory use"), ("memory_limit", "Memory limit"),
             ("memory_peak", "Memory peak"), ("swap_current", "Swap use"),
             ("oom_kills", "OOM kills"), ("cpu_usage_ns", "CPU use"),
             ("pids_current", "Tasks"), ("pids_limit", "Task limit"),
             ("io_read_bytes", "I/O read"), ("io_write_bytes", "I/O written"),
             ("freezer_state", "Freezer")]
    for k, label in shown:
        v = r.get(k)
        if v is None:
            continue
        if k == "cpu_usage_ns" and not raw:
            v = f"{v / 1e9:.2f} seconds"
        elif k.startswith(("memory", "swap", "io_")):
            v = _human(v, raw)
        lines.append((label, v))
    view = info.get("proc_view")
    if view is not None:
        lines.append(("Proc view", f"stale: {view['why']}; {lxcfs.REFRESH}" if view["stale"]
                      else f"lxcfs at {view['lxcfs']}"))
    for ifname, a in info["interfaces"].items():
        if ifname == "lo":
            continue
        addrs = ", ".join(a.get("ipv4", []) + a.get("ipv6", [])) or "-"
        rx, tx = _human(a.get("rx_bytes"), raw), _human(a.get("tx_bytes"), raw)
        lines.append((f"Link {ifname}", f"{a.get('mac', '-')} {addrs} rx {rx} tx {tx}"))
    w = max(len(k) for k, _ in lines) + 1
    for k, v in lines:
        print(f"{(k + ':').ljust(w)} {v}")
    return 0

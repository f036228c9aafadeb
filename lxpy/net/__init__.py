"""Container networking: plan (validate everything), then set up from the host side.

    plan = net.prepare(cfg, name, lxpath)   # NetworkError if anything is wrong; nothing made
    undo = net.setup(plan, pid)             # pid: a process in the container's new netns
    fwd = net.forwards_up(plan, pid)        # published ports of the config (net.N.forward)
    ...
    fwd.close(); undo.close()               # at stop (both are ExitStacks)

pyroute2 is imported only by setup() (lxpy.net.pr); prepare(), addresses() and
loopback_up() speak rtnetlink directly (lxpy.net.rtnl), so listing commands and
containers without interfaces never pay for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NetworkError
from .iface import HostView, IfacePlan

log = logging.getLogger("lxpy.net")

__all__ = ["Plan", "IfacePlan", "prepare", "setup", "loopback_up", "addresses",
           "cleanup_stale", "teardown", "forwards_up", "forwards_down", "host_name_for"]


@dataclass
class Plan:
    container: str
    lxpath: Path
    ifaces: list[IfacePlan] = field(default_factory=list)
    share_host: bool = False          # type "none": the container uses the host's netns
    warnings: list[str] = field(default_factory=list)

    @property
    def has_devices(self) -> bool:
        return any(p.type in ("veth", "macvlan", "phys") for p in self.ifaces)

    def describe(self) -> list[str]:
        out = []
        for p in self.ifaces:
            s = f"{p.key()}: {p.type} {p.name}"
            if p.link:
                s += f" on {p.link}"
            if p.host_name and p.type == "veth":
                s += f" (host end {p.host_name})"
            if p.ipv4 or p.ipv6:
                s += " " + " ".join(p.ipv4 + p.ipv6)
            if p.dhcp:
                s += " dhcp" + (f" (lease {p.reserve4[0]})" if p.reserve4 else "")
            out.append(s)
        return out


def run_root() -> Path:
    from ..paths import RUN_ROOT
    return RUN_ROOT / "net"


def _lxhash(lxpath: Path | str) -> str:
    return hashlib.sha256(os.fsencode(os.path.realpath(lxpath))).hexdigest()[:12]


def host_name_for(name: str, lxpath: Path | str, index: int) -> str:
    """The host end of a veth: lx + name (truncated) + 4 hex of the lxpath/name + index."""
    h = hashlib.sha1(os.fsencode(f"{os.path.realpath(lxpath)}/{name}")).hexdigest()[:4]
    suffix = f"{h}{index}"
    return f"lx{name[:15 - 2 - len(suffix)]}{suffix}"


def _fill_mac(mac: str, seed: str = "") -> str:
    """Fill the xx digits lxpy-create left: from seed (the same MAC, so the same DHCP
    lease, at every start), or at random without one."""
    if not mac:
        return ""
    parts = mac.split(":")
    src = hashlib.sha256(seed.encode()).digest() if seed else os.urandom(6)
    out = [f"{src[i]:02x}" if x == "xx" else x for i, x in enumerate(parts)]
    if parts[0] == "xx":  # locally administered, unicast
        out[0] = f"{(int(out[0], 16) & 0xFC) | 0x02:02x}"
    return ":".join(out)


_PORT_RE = re.compile(r"^(tcp|udp)/(\d{1,5}):(\d{1,5})$")


def parse_forward(spec: str) -> tuple[str, int, int]:
    m = _PORT_RE.match(spec)
    if not m:
        raise NetworkError(f"{spec!r} is not a port forward (like tcp/8080:80)")
    proto, hp, cp = m.group(1), int(m.group(2)), int(m.group(3))
    for port in (hp, cp):
        if not 1 <= port <= 65535:
            raise NetworkError(f"{spec!r}: port {port} is out of range (1-65535)")
    return proto, hp, cp


# ---------------------------------------------------------------------------
# Records of what is set up, so later prepare() calls see running containers.

def _records_dir() -> Path:
    return run_root() / "containers"


def _pid_in_netns(pid: int, ino: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == ino
    except OSError:
        return False


def _live_records() -> list[dict[str, Any]]:
    d = _records_dir()
    out = []
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if _pid_in_netns(int(rec.get("pid", 0)), int(rec.get("netns", 0))):
            out.append(rec)
        else:
            _unlink(f)      # its container is gone (a killed monitor, a forked helper)
    if not out:
        prune(d)
    return out


def on_bridge(bridge: str) -> list[tuple[str, list[str]]]:
    """Running containers (of any lxpath) with a veth on bridge: [(label, [host ends])],
    label like 'web' or 'web' (in /srv/lx)."""
    from ..paths import default_lxpath
    dflt = os.path.realpath(default_lxpath())
    out = []
    for rec in _live_records():
        ends = [i.get("host", "") for i in rec.get("ifaces", [])
                if i.get("type") == "veth" and i.get("link") == bridge and i.get("host")]
        if ends:
            where = rec.get("lxpath") or ""
            label = f"'{rec.get('container')}'" + (
                f" (in {where})" if where and os.path.realpath(where) != dflt else "")
            out.append((label, ends))
    return out


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for attempt in range(5):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(json.dumps(data, indent=1))
            break
        except FileNotFoundError:   # prune() took the empty directory meanwhile
            if attempt == 4:
                raise
    os.replace(tmp, path)


@contextmanager
def dir_lock(d: Path) -> Iterator[None]:
    """flock on the directory d itself (no lock file left behind). The holder removes d
    on the way out when it is empty (prune), so a waiter checks that what it locked is
    still the directory there, else it locks the new one."""
    while True:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st, mine = os.stat(d), os.fstat(fd)
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        prune(d)
        os.close(fd)


def prune(d: Path) -> None:
    """Remove d, then run_root(), when they are empty: once the last container, device
    and forward record is gone nothing of lxpy's network stays under /run. A writer that
    made the directory just before it went tries again (_write_json, phys._write_state);
    forward's lock re-checks the directory it locked."""
    for p in (d, run_root()):
        try:
            os.rmdir(p)
        except OSError:
            return


# ---------------------------------------------------------------------------
# prepare


def _ip(cidr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_interface(cidr).ip


def _running_others(name: str, lxpath: Path) -> dict[str, dict[str, Any]]:
    """Other running containers of lxpath: {name: {"addrs": set, "macs": set}}."""
    others: dict[str, dict[str, Any]] = {}
    lh = _lxhash(lxpath)
    for rec in _live_records():
        if rec.get("lxhash") == lh and rec.get("container") == name:
            continue
        # containers of other lxpaths may share the bridge: they count too
        label = f"'{rec['container']}'" if rec.get("lxhash") == lh else \
            f"'{rec['container']}' (in {rec.get('lxpath')})"
        o = others.setdefault(label, {"addrs": set(), "macs": set()})
        o["addrs"].update(rec.get("addrs", []))
        o["macs"].update(m for m in rec.get("macs", []) if m)
    # Containers the runtime says are running (also those set up before a reboot of lxpy-net).
    try:
        from ..container import Container
        from ..status import state_of
        for c in Container.all(lxpath):
            if c.name == name or f"'{c.name}'" in others:
                continue
            try:
                if state_of(c).state not in ("RUNNING", "FROZEN", "FREEZING", "STARTING"):
                    continue
                cfg = c.config
            except Exception:  # noqa: BLE001 - a broken neighbour must not block a start
                continue
            o = {"addrs": set(), "macs": set()}
            for e in cfg.net:
                o["addrs"].update(str(_ip(a)) for a in tuple(e.ipv4) + tuple(e.ipv6))
                if e.hwaddr and "xx" not in e.hwaddr:
                    o["macs"].add(e.hwaddr.lower())
            others[f"'{c.name}'"] = o
    except ImportError:
        pass
    return others


def ensure_managed_bridge(cfg: Any) -> bool:
    """Start the managed bridge if a veth of cfg sits on it and it is not up yet.

    The managed bridge is lxpy's own, as lxcbr0 is LXC's: lxpy-start brings it up on
    demand (lxpy-net start is idempotent; lxpy-net.service does it at boot)."""
    from ..paths import system_config
    from . import rtnl
    sc = system_config()
    if not any(e.type == "veth" and e.link == sc.bridge for e in cfg.net):
        return False
    if sc.bridge in rtnl.by_name(with_addresses=False):
        return False
    from . import bridge
    log.warning("starting the managed bridge %s (lxpy-net start)", sc.bridge)
    bridge.start()
    return True


def prepare(cfg: Any, name: str, lxpath: Path | str | None = None) -> Plan:
    """Validate the [[net]] entries of cfg against the host; return what setup() will do."""
    from ..paths import default_lxpath, system_config
    from . import iface, rtnl
    lxpath = Path(lxpath) if lxpath else default_lxpath()
    plan = Plan(container=name, lxpath=lxpath)
    entries = tuple(cfg.net)
    if not entries:
        return plan
    types = [e.type for e in entries]
    if "none" in types:
        if len(entries) > 1:
            raise NetworkError("net: type none (the host's network) cannot be combined with "
                               "other [[net]] entries")
        plan.share_host = True
        plan.warnings.append("net type none: the container shares the host's network "
                             "(it can reconfigure the host's interfaces)")
        plan.ifaces.append(IfacePlan(index=0, type="none", name=""))
        return plan
    sc = system_config()
    managed_net = ipaddress.ip_network(sc.subnet, strict=False)
    hv = HostView(rtnl.by_name())
    names: dict[str, str] = {}
    seen_addrs: dict[str, str] = {}
    seen_macs: dict[str, str] = {}
    for i, e in enumerate(entries):
        t = iface.get(e.type)
        key = f"net.{i}"
        p = IfacePlan(index=i, type=e.type, name=e.name or "eth0", link=e.link or "",
                      hwaddr=_fill_mac(e.hwaddr or "",
                                       f"{os.path.realpath(lxpath)}/{name}/{i}"),
                      mtu=int(e.mtu or 0),
                      mode=e.macvlan_mode or "bridge", dhcp=bool(e.dhcp))
        p.extra["container"] = name
        if e.type == "empty":
            plan.ifaces.append(p)
            continue
        if p.name == "lo":
            raise NetworkError(f"{key}.name: 'lo' is the loopback; pick another name (eth0)")
        if p.name in names:
            raise NetworkError(f"{key}.name: {p.name!r} is already used by {names[p.name]}",
                               f"give {key}.name another name")
        names[p.name] = key
        p.managed = e.type == "veth" and p.link == sc.bridge
        if e.type == "veth":
            p.host_name = e.veth_host or host_name_for(name, lxpath, i)
            p.tmp_name = "lxt" + os.urandom(5).hex()
        elif e.type == "macvlan":
            p.tmp_name = "lxt" + os.urandom(5).hex()
        else:
            p.host_name = p.link
            p.tmp_name = p.link
        v4 = tuple(e.ipv4)
        if p.dhcp:
            p.reserve4 = v4
            if v4 and not p.managed:
                plan.warnings.append(f"{key}: dhcp with ipv4 {v4[0]} reserves a lease only on "
                                     f"the managed bridge {sc.bridge}; it is ignored on "
                                     f"{p.link or 'an unattached veth'}")
        else:
            p.ipv4 = v4
        p.ipv6 = tuple(e.ipv6)
        # the managed bridge's subnet
        if p.managed:
            for a in v4:
                ip = _ip(a)
                if ip not in managed_net:
                    raise NetworkError(f"{key}.ipv4: {a} is outside the subnet {managed_net} of "
                                       f"the managed bridge {sc.bridge}",
                                       f"pick an address in {managed_net}")
                if ip in (managed_net.network_address, managed_net.broadcast_address):
                    raise NetworkError(f"{key}.ipv4: {a} is not a host address of {managed_net}")
        # gateways
        gw4 = e.gateway4 or ""
        link_lk = hv.get(p.link) if p.link else None
        bridge_v4 = [a for a in (link_lk.ipv4 if link_lk else [])]
        if gw4 == "auto" or (not gw4 and p.managed and p.ipv4):
            if e.type == "veth" and bridge_v4:
                gw4 = str(_ip(bridge_v4[0]))
            elif gw4 == "auto":
                raise NetworkError(f"{key}.gateway4: auto needs the bridge {p.link or '?'} to "
                                   "have an IPv4 address", f"set {key}.gateway4 to an address")
            else:
                gw4 = ""
        p.gateway4 = gw4
        gw6 = e.gateway6 or ""
        if gw6 == "auto":
            bridge_v6 = [a for a in (link_lk.ipv6 if link_lk else []) if not a.startswith("fe80")]
            if not bridge_v6:
                raise NetworkError(f"{key}.gateway6: auto needs the bridge {p.link or '?'} to "
                                   "have an IPv6 address", f"set {key}.gateway6 to an address")
            gw6 = str(_ip(bridge_v6[0]))
        p.gateway6 = gw6
        if p.gateway4 and not p.ipv4 and not p.dhcp:
            raise NetworkError(f"{key}.gateway4: a gateway needs an address on the interface",
                               f"set {key}.ipv4 (or {key}.dhcp = true and no gateway)")
        if p.gateway4 and p.ipv4 and not any(
                ipaddress.ip_address(p.gateway4) in ipaddress.ip_interface(a).network
                for a in p.ipv4):
            raise NetworkError(f"{key}.gateway4: {p.gateway4} is not in the subnet of "
                               f"{', '.join(p.ipv4)}", "a gateway must be on the link")
        if p.gateway6 and p.ipv6 and not any(
                ipaddress.ip_address(p.gateway6) in ipaddress.ip_interface(a).network
                for a in p.ipv6):
            raise NetworkError(f"{key}.gateway6: {p.gateway6} is not in the subnet of "
                               f"{', '.join(p.ipv6)}", "a gateway must be on the link")
        # forwards
        fw = []
        for spec in tuple(e.forward or ()):
            proto, hp, cp = parse_forward(spec)
            if not (v4 or p.ipv6):
                raise NetworkError(f"{key}.forward {spec}: a forward needs a fixed address",
                                   f"set {key}.ipv4 (with dhcp = true it becomes a static "
                                   "lease)")
            fw.append((proto, hp, cp))
        p.forwards = tuple(fw)
        # duplicates inside the plan
        for a in v4 + p.ipv6:
            ip = str(_ip(a))
            if ip in seen_addrs:
                raise NetworkError(f"{key}: address {ip} is already given to {seen_addrs[ip]}")
            seen_addrs[ip] = key
        if p.hwaddr:
            if p.hwaddr in seen_macs:
                raise NetworkError(f"{key}.hwaddr: {p.hwaddr} is already used by "
                                   f"{seen_macs[p.hwaddr]}")
            seen_macs[p.hwaddr] = key
        t.check(p, hv)
        plan.ifaces.append(p)
    # host names and duplicates among the plan's veths
    hosts = [p.host_name for p in plan.ifaces if p.type == "veth"]
    if len(set(hosts)) != len(hosts):
        raise NetworkError("net: two veth entries have the same host end name",
                           "set distinct net.N.veth_host")
    # against the host
    host_addrs = {}
    host_macs = {}
    for lk in hv.links.values():
        for a in lk.ipv4 + lk.ipv6:
            host_addrs[str(_ip(a))] = lk.name
        if lk.mac and lk.mac != "00:00:00:00:00:00":
            host_macs[lk.mac] = lk.name
    for ip, key in seen_addrs.items():
        if ip in host_addrs:
            raise NetworkError(f"{key}: address {ip} is already used on the host "
                               f"(interface {host_addrs[ip]})", "pick another address")
    for mac, key in seen_macs.items():
        if mac in host_macs and not any(p.type == "phys" and p.link == host_macs[mac]
                                        for p in plan.ifaces):
            raise NetworkError(f"{key}.hwaddr: MAC {mac} is already used on the host "
                               f"(interface {host_macs[mac]})",
                               f"use another {key}.hwaddr (xx digits are filled at random)")
    # against the other running containers of this lxpath
    others = _running_others(name, lxpath)
    for other, o in others.items():
        for ip, key in seen_addrs.items():
            if ip in o["addrs"]:
                raise NetworkError(f"{key}: address {ip} is already used by running container "
                                   f"{other}", "pick another address")
        for mac, key in seen_macs.items():
            if mac in o["macs"]:
                raise NetworkError(f"{key}.hwaddr: MAC {mac} is already used by running "
                                   f"container {other}", f"change {key}.hwaddr")
    # a static address the bridge's DHCP server has leased to someone else
    if any(p.managed for p in plan.ifaces):
        from . import dnsmasq
        mine = {p.hwaddr for p in plan.ifaces}
        for lease in dnsmasq.leases(sc.bridge):
            key = seen_addrs.get(lease["ip"])
            if key and lease["mac"] not in mine:
                plan.warnings.append(f"{key}: {lease['ip']} is also leased by DHCP on "
                                     f"{sc.bridge} to {lease['hostname'] or lease['mac']}; "
                                     "pick an address outside the DHCP range")
    # forwards against the ones in place
    if any(p.forwards for p in plan.ifaces):
        from . import forward
        forward.check_free(plan)
    return plan


# ---------------------------------------------------------------------------
# setup


def _nl_error(e: Exception, what: str) -> NetworkError:
    code = getattr(e, "code", None)
    msg = os.strerror(code) if isinstance(code, int) and code > 0 else str(e)
    return NetworkError(f"{what}: {msg}")


def setup(plan: Plan, pid: int) -> ExitStack:
    """Create the plan's devices for the netns of pid and configure them before init runs.

    Returns an ExitStack whose close() undoes it all (host ends, given-back phys devices,
    DNS/lease registration); on error everything done so far is undone and NetworkError
    raised."""
    stack = ExitStack()
    if plan.share_host:
        return stack
    try:
        same = os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError as e:
        raise NetworkError(f"network setup: process {pid} is gone ({e.strerror})") from None
    if same:
        raise NetworkError(f"network setup: process {pid} shares the host's network "
                           "namespace", "the container must unshare its netns first")
    try:
        _setup(plan, pid, stack)
    except BaseException as e:
        stack.close()
        if isinstance(e, NetworkError):
            raise
        if isinstance(e, Exception) and type(e).__name__ == "NetlinkError":
            raise _nl_error(e, f"network setup of {plan.container}") from None
        raise
    return stack


def _setup(plan: Plan, pid: int, stack: ExitStack) -> None:
    from . import iface
    devices = [p for p in plan.ifaces if p.type in ("veth", "macvlan", "phys")]
    if not devices:
        loopback_up(pid)
        _register(plan, pid, stack)
        return
    from . import rtnl
    for p in devices:
        t = iface.get(p.type)
        try:
            t.create(p, pid, stack)
        except NetworkError:
            raise
        except OSError as e:
            raise NetworkError(f"{p.key()}: cannot set up {p.type} "
                               f"{p.host_name or p.tmp_name}: {e.strerror or e}") from None
        except Exception as e:
            if type(e).__name__ == "NetlinkError":
                raise _nl_error(e, f"{p.key()}: cannot create {p.type} "
                                f"{p.host_name or p.tmp_name}") from None
            raise
    try:
        ns = rtnl.open_socket(pid)
    except OSError as e:
        raise NetworkError(f"cannot enter the network namespace of pid {pid}: "
                           f"{e.strerror or e}") from None
    with ns:
        try:
            rtnl.set_link(ns, 1, up=True, what="bring lo up")
        except OSError as e:
            raise NetworkError(f"cannot bring lo up in the container: {e.strerror}") from None
        for p in devices:
            try:
                idx = rtnl.link_index(ns, p.tmp_name)
                if idx is None:
                    raise NetworkError(f"{p.key()}: {p.tmp_name} did not arrive in the "
                                       "container's network namespace")
                rtnl.set_link(ns, idx, up=True, name=p.name if p.tmp_name != p.name else "",
                              what=f"{p.key()}: rename {p.tmp_name} to {p.name} and bring "
                              "it up")
                for a in p.ipv4 + p.ipv6:
                    rtnl.add_address(ns, idx, a)
                if p.gateway4:
                    rtnl.add_default_route(ns, p.gateway4, idx)
                if p.gateway6:
                    rtnl.add_default_route(ns, p.gateway6, idx)
            except OSError as e:
                raise NetworkError(f"{p.key()}: cannot configure {p.name} in the container: "
                                   f"{e.strerror or e}") from None
    _register(plan, pid, stack)
    if any(p.forwards for p in plan.ifaces):
        from . import forward
        stack.enter_context(forward.up(plan, pid))


def _register(plan: Plan, pid: int, stack: ExitStack) -> None:
    """Record the container's addresses (for duplicate checks) and tell the managed
    bridge's DNS about static addresses."""
    try:
        ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return
    addrs, macs = [], []
    for p in plan.ifaces:
        addrs += [str(_ip(a)) for a in p.ipv4 + p.ipv6 + p.reserve4]
        if p.hwaddr:
            macs.append(p.hwaddr)
    rec = {"container": plan.container, "lxpath": str(plan.lxpath),
           "lxhash": _lxhash(plan.lxpath), "pid": pid, "netns": ino, "addrs": addrs,
           "macs": macs,
           "ifaces": [{"name": p.name, "type": p.type, "link": p.link, "host": p.host_name,
                       "managed": p.managed, "ipv4": list(p.ipv4), "ipv6": list(p.ipv6),
                       "reserve4": list(p.reserve4), "hwaddr": p.hwaddr}
                      for p in plan.ifaces]}
    path = _records_dir() / f"{_lxhash(plan.lxpath)}-{plan.container}.json"
    _write_json(path, rec)
    stack.callback(_unlink, path)
    if any(p.managed for p in plan.ifaces):
        from . import dnsmasq
        dnsmasq.refresh_for_containers()
        stack.callback(dnsmasq.refresh_for_containers)


def _unlink(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


def loopback_up(pid: int) -> None:
    """Bring lo up in the netns of pid (cheap: no pyroute2)."""
    from . import rtnl
    try:
        rtnl.link_up(pid, 1)
    except OSError as e:
        raise NetworkError(f"cannot bring lo up in the container (pid {pid}): "
                           f"{e.strerror or e}") from None


def addresses(pid: int) -> dict[str, dict[str, Any]]:
    """{ifname: {"mac", "ipv4": [cidr...], "ipv6": [...], "rx_bytes", "tx_bytes", "up"}}
    of the netns of pid (one netlink dump, no pyroute2)."""
    from . import rtnl
    out: dict[str, dict[str, Any]] = {}
    for lk in rtnl.links(pid).values():
        out[lk.name] = {"mac": lk.mac, "ipv4": lk.ipv4, "ipv6": lk.ipv6,
                        "rx_bytes": lk.rx_bytes, "tx_bytes": lk.tx_bytes, "up": lk.up,
                        "mtu": lk.mtu}
    return out


def cleanup_stale() -> dict[str, list[str]]:
    """Undo what dead containers left (a monitor that was SIGKILLed): phys devices back
    under their own names, records, DNS entries and forwards of gone containers."""
    from . import phys
    done: dict[str, list[str]] = {"phys": phys.cleanup_stale(), "records": [], "forwards": []}
    d = _records_dir()
    changed_managed = False
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            _unlink(f)
            continue
        if not _pid_in_netns(int(rec.get("pid", 0)), int(rec.get("netns", 0))):
            _unlink(f)
            done["records"].append(rec.get("container", f.stem))
            changed_managed |= any(i.get("managed") for i in rec.get("ifaces", []))
    prune(d)
    from . import forward
    done["forwards"] = forward.cleanup_stale()
    if changed_managed:
        from . import dnsmasq
        with suppress(Exception):
            dnsmasq.refresh_for_containers()
    return done


def teardown(name: str, lxpath: Path | str | None = None, wait: float = 3.0) -> list[str]:
    """Undo what setup() made for container `name`, from its record alone: for a
    monitor that lost the ExitStack (a forked helper ran setup) or was killed. Host
    ends go, phys devices come back under their names, config forwards and DNS
    entries go. Safe to call twice, or when nothing was set up."""
    from ..paths import default_lxpath
    lxpath = Path(lxpath) if lxpath else default_lxpath()
    path = _records_dir() / f"{_lxhash(lxpath)}-{name}.json"
    done: list[str] = []
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        rec = {}
    from . import forward
    done += [f"forward {x}" for x in forward.remove_container(name, lxpath)]
    ifaces = rec.get("ifaces", [])
    if any(i.get("type") in ("veth", "phys") for i in ifaces):
        from . import phys, pr, rtnl
        for i in ifaces:
            if i.get("type") == "veth" and i.get("host"):
                if i["host"] in rtnl.by_name(with_addresses=False):
                    pr.delete_link(i["host"])
                    done.append(f"veth {i['host']}")
            elif i.get("type") == "phys" and i.get("link"):
                alive = _pid_in_netns(int(rec.get("pid", 0)), int(rec.get("netns", 0)))
                if phys.give_back(i["link"], pid=int(rec["pid"]) if alive else None,
                                  wait=wait):
                    done.append(f"phys {i['link']}")
    if rec:
        _unlink(path)
        prune(path.parent)
        if any(i.get("managed") for i in ifaces):
            from . import dnsmasq
            with suppress(Exception):
                dnsmasq.refresh_for_containers()
    return done


def forwards_up(plan: Plan, pid: int) -> ExitStack:
    """Publish the net.N.forward ports of the plan; close() removes them. (setup() does
    this already; for a runtime that wants them later, e.g. after a restart.)"""
    from . import forward
    return forward.up(plan, pid)


def forwards_down(plan: Plan) -> None:
    from . import forward
    forward.down(plan)

"""Making a plan's interfaces on the host, and removing them.

    undo = setup(plan, pid)      # pid: a process in the container's new netns
    ...
    undo.close()                 # at stop (an ExitStack); or teardown(name, lxpath)

veth and the configuration inside the netns speak rtnetlink directly (lxpy.net.rtnl);
pyroute2 is imported only by macvlan, phys and the managed bridge (lxpy.net.pr).
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import NetworkError
from . import antispoof, bridge, dnsmasq, forward, phys, pr, records, rtnl, tc
from .iface import IfacePlan
from .plan import DEVICES, HOST_END, Plan, ip_of, type_of

log = logging.getLogger("lxpy.net")


def ensure_managed_bridge(cfg: Any) -> bool:
    """Start the managed bridge if a veth of cfg sits on it and it is not up yet.

    The managed bridge is lxpy's own, as lxcbr0 is LXC's: lxpy-start brings it up on
    demand (lxpy-net start is idempotent; lxpy-net.service does it at boot)."""
    sc = paths.system_config()
    if not any(e.type == "veth" and e.link == sc.bridge for e in cfg.net):
        return False
    if sc.bridge in rtnl.by_name(with_addresses=False):
        return False
    log.warning("starting the managed bridge %s (lxpy-net start)", sc.bridge)
    bridge.start()
    return True


def _nl_error(e: Exception, what: str) -> NetworkError:
    code = getattr(e, "code", None)
    msg = os.strerror(code) if isinstance(code, int) and code > 0 else str(e)
    return NetworkError(f"{what}: {msg}")


def setup(plan: Plan, pid: int) -> ExitStack:
    """Create the plan's devices for the netns of pid and configure them before init runs.

    Returns an ExitStack whose close() undoes it all (host ends, given-back phys devices,
    DNS/lease registration, forwards); on error everything done so far is undone and
    NetworkError raised."""
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
    devices = [p for p in plan.ifaces if p.type in DEVICES]
    if not devices:
        loopback_up(pid)
        _register(plan, pid, stack)
        return
    for p in devices:
        try:
            type_of(p.type).create(p, pid, stack)
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
                for gw in (p.gateway4, p.gateway6):
                    if gw:
                        rtnl.add_route(ns, "default", idx, gw, onlink=p.onlink)
            except OSError as e:
                raise NetworkError(f"{p.key()}: cannot configure {p.name} in the container: "
                                   f"{e.strerror or e}") from None
    for p in devices:
        _host_side(p, stack)
    _register(plan, pid, stack)
    if plan.forwards:
        stack.enter_context(forward.up(plan, pid))


def _host_side(p: IfacePlan, stack: ExitStack) -> None:
    """The host's part once the device is in place: the type's own (routes, proxy ARP),
    then rate limits and anti-spoofing on the host end."""
    try:
        type_of(p.type).host_side(p, stack)
    except OSError as e:
        raise NetworkError(f"{p.key()}: cannot set up the host side of {p.host_name}: "
                           f"{e.strerror or e}") from None
    if p.ingress or p.egress:
        if p.egress:
            stack.callback(tc.remove, p.host_name)
        tc.apply(p.host_name, p.ingress, p.egress, f"{p.key()}: rate limits on {p.host_name}")
    if antispoof.apply(p):
        stack.callback(antispoof.remove, p.host_name)


def _register(plan: Plan, pid: int, stack: ExitStack) -> None:
    """Record the container's addresses (for duplicate checks) and tell the managed
    bridge's DNS about static addresses."""
    try:
        ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return
    rec = {"container": plan.container, "lxpath": str(plan.lxpath),
           "lxhash": records.lxhash(plan.lxpath), "pid": pid, "netns": ino,
           "addrs": [ip_of(a) for p in plan.ifaces for a in p.ipv4 + p.ipv6 + p.reserve4],
           "macs": [p.hwaddr for p in plan.ifaces if p.hwaddr],
           "ifaces": [p.record() for p in plan.ifaces]}
    path = records.container_file(plan.container, plan.lxpath)
    records.write_json(path, rec)
    stack.callback(records.unlink, path)
    if any(p.managed for p in plan.ifaces):
        dnsmasq.refresh_for_containers()
        stack.callback(dnsmasq.refresh_for_containers)


def loopback_up(pid: int) -> None:
    """Bring lo up in the netns of pid (cheap: no pyroute2)."""
    try:
        rtnl.link_up(pid, 1)
    except OSError as e:
        raise NetworkError(f"cannot bring lo up in the container (pid {pid}): "
                           f"{e.strerror or e}") from None


def _refresh_dns(recs: list[dict[str, Any]]) -> None:
    """Rewrite the managed bridge's DNS and leases when one of recs was on it."""
    if any(i.get("managed") for r in recs for i in r.get("ifaces", [])):
        with suppress(Exception):
            dnsmasq.refresh_for_containers()


def cleanup_stale() -> dict[str, list[str]]:
    """Undo what dead containers left (a monitor that was SIGKILLed): phys devices back
    under their own names, records, ifb devices, filter tables, proxy neighbours, DNS
    entries and forwards of gone containers."""
    done: dict[str, list[str]] = {"phys": phys.cleanup_stale()}
    _live, dead = records.containers()
    done["records"] = [r.get("container", "?") for r in dead]
    done["host ends"] = [x for r in dead for i in r.get("ifaces", []) for x in _host_extras(i)]
    done["forwards"] = forward.cleanup_stale()
    _refresh_dns(dead)
    return done


def _host_extras(i: dict[str, Any]) -> list[str]:
    """Undo, from a record's iface, what outlives its host end: the type's own (proxy
    neighbours), the ifb device of an egress limit, the filter table."""
    done = type_of(i.get("type", "none")).teardown(i)
    if i.get("ifb") and tc.remove(i["host"]):
        done.append(f"ifb {tc.ifb_name(i['host'])}")
    if i.get("filter") and antispoof.remove(i["host"]):
        done.append(f"nft {antispoof.FAMILY} {antispoof.table_name(i['host'])}")
    return done


def teardown(name: str, lxpath: Path | str | None = None, wait: float = 3.0) -> list[str]:
    """Undo what setup() made for container `name`, from its record alone: for a
    monitor that lost the ExitStack (a forked helper ran setup) or was killed. Host
    ends go, phys devices come back under their names, config forwards and DNS
    entries go. Safe to call twice, or when nothing was set up."""
    lxpath = Path(lxpath) if lxpath else paths.default_lxpath()
    path = records.container_file(name, lxpath)
    rec = records.load(path)
    done = [f"forward {x}" for x in forward.remove_container(name, lxpath)]
    alive = records.alive(rec)
    host = rtnl.by_name(with_addresses=False) if rec.get("ifaces") else {}
    for i in rec.get("ifaces", []):
        done += _host_extras(i)
        if i.get("type") in HOST_END and i.get("host") in host:
            pr.delete_link(i["host"])
            done.append(f"veth {i['host']}")
        elif i.get("type") == "phys" and i.get("link"):
            if phys.give_back(i["link"], pid=int(rec["pid"]) if alive else None, wait=wait):
                done.append(f"phys {i['link']}")
    if rec:
        records.forget(path)
        _refresh_dns([rec])
    return done

"""lxpy-net: the managed bridge (address, dnsmasq, NAT) — start, stop, status.

start records what it made in /run/lxpy/net/<bridge>/state.json; stop removes
exactly that (a bridge that existed before start is left, only our address goes)."""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import time
from contextlib import ExitStack, suppress
from typing import Any

from .. import paths
from ..errors import NetworkError
from . import antispoof, dnsmasq, forward, nft, pr, records, rtnl, sysctl

FAMILY = "inet"


def table_name(bridge: str) -> str:
    return f"lxpy-{bridge}"


def _settings() -> dict[str, Any]:
    sc = paths.system_config()
    try:
        net = ipaddress.ip_network(sc.subnet, strict=False)
    except ValueError:
        raise NetworkError(f"{sc.source}: net.subnet {sc.subnet!r} is not a subnet "
                           "(like 10.0.3.0/24)") from None
    if net.version != 4 or net.prefixlen > 30:
        raise NetworkError(f"{sc.source}: net.subnet {sc.subnet!r}: use an IPv4 subnet of "
                           "at least 4 addresses (like 10.0.3.0/24)")
    if not 1 <= len(sc.bridge) <= 15:
        raise NetworkError(f"{sc.source}: net.bridge {sc.bridge!r}: 1 to 15 characters")
    gw = next(net.hosts())
    dhcp_range = sc.dhcp_range
    if dhcp_range == "10.0.3.2,10.0.3.254" and str(net) != "10.0.3.0/24":
        # the default range follows a changed subnet
        hosts = list(net.hosts()) if net.num_addresses <= 65536 else None
        first = hosts[1] if hosts else net.network_address + 2
        last = hosts[-1] if hosts else net.broadcast_address - 1
        dhcp_range = f"{first},{last}"
    v6 = None
    if sc.ipv6:
        h = hashlib.sha256(sc.bridge.encode()).digest()
        v6 = ipaddress.IPv6Network((b"\xfd" + h[:7] + b"\0" * 8, 64))
    return {"bridge": sc.bridge, "subnet": str(net), "gateway": str(gw),
            "address": f"{gw}/{net.prefixlen}", "dhcp_range": dhcp_range,
            "domain": sc.domain, "ipv6": str(v6) if v6 else None,
            "address6": f"{v6.network_address + 1}/64" if v6 else None, "source": sc.source}


def _bridge_mac(bridge: str) -> str:
    h = hashlib.sha256(b"lxpy-bridge:" + bridge.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


def ruleset(s: dict[str, Any]) -> str:
    br = nft.quote(s["bridge"])
    lines = [
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f"    ip saddr {s['subnet']} ip daddr != {s['subnet']} masquerade",
    ]
    if s.get("ipv6"):
        lines.append(f"    ip6 saddr {s['ipv6']} ip6 daddr != {s['ipv6']} masquerade")
    lines += [
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        f"    iifname {br} accept",
        f"    oifname {br} ct state established,related accept",
        "  }",
    ]
    return "\n".join(lines)


def _locked():
    """One lxpy-net start/stop at a time (see dir_lock: on /run/lxpy/net itself)."""
    return records.dir_lock(records.run_root())


def start() -> dict[str, Any]:
    """Bring the managed bridge up (idempotent). Returns its status."""
    with _locked():
        _start()
    return status()


def _start() -> None:
    s = _settings()
    br = s["bridge"]
    d = dnsmasq.state_dir(br)
    old = dnsmasq.state(br)
    st: dict[str, Any] = dict(old) if old else {"created_bridge": False, "added_addresses": []}
    st.update({k: s[k] for k in ("bridge", "subnet", "gateway", "address", "dhcp_range",
                                 "domain", "ipv6", "address6")})
    st["table"] = f"{FAMILY} {table_name(br)}"
    # validated before anything is made
    cmd = dnsmasq.command(br, s["gateway"], s["subnet"], s["dhcp_range"], s["domain"],
                          s["ipv6"].split("/")[0] if s["ipv6"] else None)
    with ExitStack() as undo:
        fresh = not d.exists()
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        if fresh:
            undo.callback(shutil.rmtree, d, True)
        with pr.host() as ipr:
            idx = pr.index(ipr, br)
            if idx is None:
                pr.add_link(ipr, br, "bridge")
                undo.callback(pr.delete_link, br)
                st["created_bridge"] = True
                idx = pr.require_index(ipr, br)
                ipr.link("set", index=idx, address=_bridge_mac(br))
            else:
                kind = ipr.get_links(idx)[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
                if kind != "bridge":
                    raise NetworkError(f"{br} exists and is not a bridge ({kind or 'device'})",
                                       f"set net.bridge in {s['source']} to another name")
            have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                    for a in ipr.get_addr(index=idx)}
            for a in [s["address"]] + ([s["address6"]] if s["address6"] else []):
                if str(ipaddress.ip_interface(a)) not in {str(ipaddress.ip_interface(h))
                                                         for h in have}:
                    with rtnl.open_socket(None) as sock:
                        rtnl.add_address(sock, idx, a)
                    if a not in st["added_addresses"]:
                        st["added_addresses"].append(a)
            ipr.link("set", index=idx, state="up")
            _reattach(ipr, idx, br)
        # forwarding, and loopback-sourced packets allowed out of the bridge (forwards)
        if "ip_forward_before" not in st:
            st["ip_forward_before"] = sysctl.get("net/ipv4/ip_forward")
            if st["ip_forward_before"] not in (None, "1"):
                undo.callback(sysctl.set, "net/ipv4/ip_forward", st["ip_forward_before"])
        sysctl.set("net/ipv4/ip_forward", "1")
        sysctl.set(sysctl.conf_key("ipv4", br, "route_localnet"), "1")
        if s["ipv6"]:
            if "ip6_forward_before" not in st:
                st["ip6_forward_before"] = sysctl.get("net/ipv6/conf/all/forwarding")
                if st["ip6_forward_before"] not in (None, "1"):
                    undo.callback(sysctl.set, "net/ipv6/conf/all/forwarding",
                                  st["ip6_forward_before"])
            sysctl.set("net/ipv6/conf/all/forwarding", "1")
        nft.replace_table(FAMILY, table_name(br), ruleset(s))
        if not old:
            undo.callback(nft.delete_table, FAMILY, table_name(br))
        _save(br, st)
        dnsmasq.refresh(br)
        if not dnsmasq.running_pid(br):
            st["dnsmasq_pid"] = dnsmasq.start(br, cmd)
            _save(br, st)
        undo.pop_all()


def _reattach(ipr: Any, idx: int, br: str) -> None:
    """Put the host ends of running containers back on the bridge (it was stopped with
    --force under them, or deleted by hand)."""
    for _label, ends in records.on_bridge(br):
        for end in ends:
            hidx = pr.index(ipr, end)
            if hidx is None:
                continue
            master = ipr.get_links(hidx)[0].get_attr("IFLA_MASTER")
            if master is None:
                ipr.link("set", index=hidx, master=idx, state="up")


def _save(bridge: str, st: dict[str, Any]) -> None:
    records.write_json(dnsmasq.state_dir(bridge) / "state.json", st)


def stop(force: bool = False) -> list[str]:
    """Remove what start made. Returns what was removed. Refused while running
    containers have a veth on the bridge, unless force (their host ends are left
    unattached; start puts them back)."""
    with _locked():
        if not force:
            br = _settings()["bridge"]
            users = [label for label, _ends in records.on_bridge(br)]
            if users and br in _link_names():
                many = len(users) > 1
                raise NetworkError(f"{br} is in use by running container"
                                   f"{'s' if many else ''} {', '.join(users)}",
                                   f"stop {'them' if many else 'it'} first, or use "
                                   "lxpy-net stop --force")
        return _stop()


def _link_names() -> set[str]:
    return set(rtnl.by_name(with_addresses=False))


def _stop() -> list[str]:
    s = _settings()
    br = s["bridge"]
    d = dnsmasq.state_dir(br)
    st = dnsmasq.state(br)
    done = []
    if dnsmasq.stop(br):
        done.append("dnsmasq")
    if nft.table_exists(FAMILY, table_name(br)):
        nft.delete_table(FAMILY, table_name(br))
        done.append(f"nft table {FAMILY} {table_name(br)}")
    if st:
        with pr.host() as ipr:
            idx = pr.index(ipr, br)
            if idx is not None and st.get("created_bridge"):
                ipr.link("del", index=idx)
                done.append(f"bridge {br}")
            elif idx is not None:
                for a in st.get("added_addresses", []):
                    iface = ipaddress.ip_interface(a)
                    with suppress(Exception):
                        ipr.addr("del", index=idx, address=str(iface.ip),
                                 prefixlen=iface.network.prefixlen)
                        done.append(f"address {a}")
        others = [x for x in d.parent.iterdir() if x.is_dir() and x != d
                  and (x / "state.json").exists()] if d.parent.is_dir() else []
        if not others:
            before = st.get("ip_forward_before")
            if before is not None and before != "1":
                sysctl.set("net/ipv4/ip_forward", before)
            b6 = st.get("ip6_forward_before")
            if b6 is not None and b6 != "1":
                sysctl.set("net/ipv6/conf/all/forwarding", b6)
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
        done.append(str(d))
    return done


def status() -> dict[str, Any]:
    s = _settings()
    br = s["bridge"]
    links = rtnl.by_name()
    lk = links.get(br)
    st = dnsmasq.state(br)
    pid = dnsmasq.running_pid(br)
    now = time.time()
    out: dict[str, Any] = {
        "bridge": br,
        "running": bool(st) and lk is not None and pid is not None,
        "exists": lk is not None,
        "up": bool(lk and lk.up),
        "addresses": (lk.ipv4 + lk.ipv6) if lk else [],
        "ports": sorted(x.name for x in links.values() if lk and x.master == lk.index),
        "subnet": s["subnet"],
        "dhcp_range": s["dhcp_range"],
        "domain": s["domain"],
        "dnsmasq_pid": pid,
        "leases": [dict(x, expires_in=max(0, int(x["expires"] - now)))
                   for x in dnsmasq.leases(br)],
        "nat_table": f"{FAMILY} {table_name(br)}" if nft.table_exists(
            FAMILY, table_name(br)) else None,
        "nat_rules": [],
        "forwards": forward.list_all(),
        "filters": antispoof.live(),
    }
    if out["nat_table"]:
        text = nft.list_table(FAMILY, table_name(br)) or ""
        out["nat_rules"] = [ln.strip() for ln in text.splitlines()
                            if ln.strip() and not ln.strip().startswith(("table", "chain",
                                                                         "type", "}"))]
    return out

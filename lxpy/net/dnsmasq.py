"""dnsmasq for the managed bridge: DHCP (with static leases), DNS for container names.

Files, all under /run/lxpy/net/<bridge>/: dnsmasq.pid, dnsmasq.leases, dhcp-hosts
(static leases: MAC,address,name), hosts (names of static-address containers).
Both lists are rewritten from the containers' configs and the running containers'
records, then dnsmasq re-reads them on SIGHUP."""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from .. import paths
from ..container import Container
from ..errors import NetworkError
from . import records


def state_dir(bridge: str) -> Path:
    return records.run_root() / bridge


def pid_file(bridge: str) -> Path:
    return state_dir(bridge) / "dnsmasq.pid"


def lease_file(bridge: str) -> Path:
    return state_dir(bridge) / "dnsmasq.leases"


def hosts_file(bridge: str) -> Path:
    return state_dir(bridge) / "hosts"


def dhcp_hosts_file(bridge: str) -> Path:
    return state_dir(bridge) / "dhcp-hosts"


def running_pid(bridge: str) -> int | None:
    try:
        pid = int(pid_file(bridge).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if comm != "dnsmasq" or str(pid_file(bridge)).encode() not in cmdline:
        return None
    return pid


def _user() -> str:
    for u in ("dnsmasq", "nobody"):
        with suppress(KeyError):
            pwd.getpwnam(u)
            return u
    return "root"


def command(bridge: str, gateway: str, subnet: str, dhcp_range: str, domain: str,
            ipv6_prefix: str | None = None) -> list[str]:
    net = ipaddress.ip_network(subnet, strict=False)
    lo, _, hi = dhcp_range.partition(",")
    if not hi:
        raise NetworkError(f"net.dhcp_range {dhcp_range!r}: give FIRST,LAST (like "
                           "10.0.3.2,10.0.3.254)")
    try:
        first, last = ipaddress.ip_address(lo.strip()), ipaddress.ip_address(hi.strip())
    except ValueError:
        raise NetworkError(f"net.dhcp_range {dhcp_range!r}: not two IPv4 addresses") from None
    if first not in net or last not in net or int(last) < int(first):
        raise NetworkError(f"net.dhcp_range {dhcp_range!r} is not a range inside {net}")
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    cmd = [exe, "--conf-file=/dev/null", f"--user={_user()}", "--strict-order",
           "--bind-interfaces", f"--pid-file={pid_file(bridge)}",
           f"--listen-address={gateway}", f"--interface={bridge}", "--except-interface=lo",
           f"--dhcp-range={first},{last},{net.netmask},1h",
           f"--dhcp-lease-max={int(last) - int(first) + 1}", "--dhcp-no-override",
           "--dhcp-authoritative", "--no-ping",
           f"--dhcp-leasefile={lease_file(bridge)}",
           f"--dhcp-hostsfile={dhcp_hosts_file(bridge)}",
           f"--addn-hosts={hosts_file(bridge)}"]
    if domain:
        cmd += [f"--domain={domain}", f"--local=/{domain}/", "--expand-hosts"]
    if ipv6_prefix:
        cmd += ["--enable-ra", f"--dhcp-range={ipv6_prefix},ra-stateless,ra-names"]
    return cmd


def start(bridge: str, cmd: list[str]) -> int:
    """Run dnsmasq (it daemonizes) and return its pid."""
    for f in (hosts_file(bridge), dhcp_hosts_file(bridge)):
        if not f.exists():
            f.write_text("")
            f.chmod(0o644)
    lease_file(bridge).touch()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NetworkError("dnsmasq is not installed", "apt install dnsmasq-base") from None
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise NetworkError(f"dnsmasq did not start: {msg}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = running_pid(bridge)
        if pid:
            return pid
        time.sleep(0.02)
    raise NetworkError("dnsmasq started but wrote no pid file")


def stop(bridge: str) -> bool:
    pid = running_pid(bridge)
    if not pid:
        return False
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                break
        except (OSError, IndexError):
            break
        time.sleep(0.02)
    else:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def leases(bridge: str) -> list[dict[str, Any]]:
    out = []
    try:
        lines = lease_file(bridge).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        f = line.split()
        if len(f) >= 4:
            out.append({"expires": int(f[0]) if f[0].isdigit() else 0, "mac": f[1],
                        "ip": f[2], "hostname": "" if f[3] == "*" else f[3]})
    return out


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return True


def _static_entries(bridge: str) -> tuple[list[str], list[str]]:
    """(dhcp-hosts lines, hosts lines) from configs and running containers' records."""
    dhcp: dict[str, str] = {}
    hosts: dict[str, str] = {}
    # reservations asked for in the configs of the system lxpath (stopped ones too)
    with suppress(Exception):
        for c in Container.all():
            try:
                cfg = c.config
            except Exception:  # noqa: BLE001 - skip a broken config
                continue
            for e in cfg.net:
                if e.type == "veth" and e.link == bridge and e.dhcp and e.ipv4:
                    ip = str(ipaddress.ip_interface(e.ipv4[0]).ip)
                    mac = e.hwaddr if e.hwaddr and "xx" not in e.hwaddr else ""
                    dhcp[c.name] = f"{mac},{ip},{c.name}" if mac else f"{c.name},{ip}"
    for rec in records.containers()[0]:
        name = rec.get("container", "")
        for i in rec.get("ifaces", []):
            if not i.get("managed") or i.get("link") != bridge:
                continue
            mac = i.get("hwaddr", "")
            if i.get("reserve4"):
                ip = str(ipaddress.ip_interface(i["reserve4"][0]).ip)
                dhcp[name] = f"{mac},{ip},{name}" if mac else f"{name},{ip}"
            for a in i.get("ipv4", []) + i.get("ipv6", []):
                ip = str(ipaddress.ip_interface(a).ip)
                hosts[f"{ip} {name}"] = ""
                if ":" not in ip and mac:
                    # keep dnsmasq from leasing a static address to someone else
                    dhcp.setdefault(name, f"{mac},{ip},{name}")
    return sorted(dhcp.values()), sorted(hosts)


def refresh(bridge: str) -> None:
    d = state_dir(bridge)
    if not d.is_dir():
        return
    dhcp, hosts = _static_entries(bridge)
    changed = _write_if_changed(dhcp_hosts_file(bridge), "".join(x + "\n" for x in dhcp))
    changed |= _write_if_changed(hosts_file(bridge), "".join(x + "\n" for x in hosts))
    pid = running_pid(bridge)
    if changed and pid:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)


def refresh_for_containers() -> None:
    """Rewrite the managed bridge's static lists (after a container came or went)."""
    refresh(paths.system_config().bridge)


def state(bridge: str) -> dict[str, Any]:
    return records.load(state_dir(bridge) / "state.json")

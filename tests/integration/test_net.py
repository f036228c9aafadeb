"""lxpy.net against the real kernel: veth/macvlan/phys/empty into network namespaces the
tests make (a `unshare -n sleep` process stands for a container), bad input, and the
managed bridge (lxpy-net: dnsmasq DHCP + DNS, NAT, forwards). Every test uses its own
bridge name and subnet, never lxpybr0 / 10.0.3.0/24."""

from __future__ import annotations

import http.server
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from lxpy import paths
from lxpy.config import validate
from lxpy.errors import NetworkError
from lxpy.net import forward, records, rtnl
from lxpy.net.plan import host_name_for, prepare
from lxpy.net.setup import cleanup_stale, loopback_up, setup, teardown
from tests.conftest import wait_for

pytestmark = pytest.mark.root

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def host_links() -> set[str]:
    return set(rtnl.by_name(with_addresses=False))


def in_ns(pid: int, *cmd: str, check=True, timeout=30, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], capture_output=True,
                       text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} in netns of {pid} exited {r.returncode}: "
                             f"{r.stdout}{r.stderr}")
    return r


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def rand_subnet() -> str:
    return f"10.{random.randint(180, 250)}.{random.randint(0, 255)}"


@pytest.fixture
def netns():
    """Factory: a process alone in a new netns (a container's stand-in). Killed after."""
    procs: list[subprocess.Popen] = []

    def make() -> int:
        p = subprocess.Popen(["unshare", "-n", "--", "sleep", "3600"])
        procs.append(p)
        wait_for(lambda: os.path.exists(f"/proc/{p.pid}/ns/net") and os.stat(
            f"/proc/{p.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino,
            what="the netns")
        return p.pid

    yield make
    for p in procs:
        # everything else started in the netns (servers, udhcpc) goes with it
        for pid in _pids_in_netns(p.pid):
            if pid != p.pid:
                with _suppress():
                    os.kill(pid, 9)
        p.kill()
        p.wait()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return True


def _pids_in_netns(pid: int) -> list[int]:
    try:
        ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return []
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with _suppress():
                if os.stat(f"/proc/{d}/ns/net").st_ino == ino:
                    out.append(int(d))
    return out


@pytest.fixture
def undos():
    """Collects what setup/forward.up return; closes them even on failure."""
    stacks = []
    yield stacks
    for s in reversed(stacks):
        s.close()


@pytest.fixture
def bridge(unique):
    """An unmanaged bridge with a host address: (name, prefix 'a.b.c')."""
    name = "lxpyb" + unique[1:7]
    sub = rand_subnet()
    ip("link", "add", name, "type", "bridge")
    try:
        ip("addr", "add", f"{sub}.1/24", "dev", name)
        ip("link", "set", name, "up")
        yield name, sub
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def sysconf(tmp_path, unique, monkeypatch):
    """An lxpy.toml of our own; returns a function writing [net] keys into it."""
    path = tmp_path / "lxpy.toml"

    def write(**keys) -> Path:
        lines = ["[net]"] + [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
        path.write_text("\n".join(lines) + "\n")
        monkeypatch.setenv("LXPY_CONFIG", str(path))
        paths.system_config.cache_clear()
        return path

    write(bridge="lxpyn" + unique[1:7], subnet=f"{rand_subnet()}.0/24",
          dhcp_range="10.255.255.2,10.255.255.3")
    yield write
    paths.system_config.cache_clear()


def cfg_of(*entries: dict, forward: list[dict] = ()):
    return validate({"net": list(entries), "forward": list(forward)}, "test")


# ---------------------------------------------------------------------------
# Interfaces


def test_veth_static_address_is_up_and_reachable(bridge, netns, undos, lxpath, sysconf):
    br, sub = bridge
    pid = netns()
    cfg = cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.50/24"], "gateway4": "auto",
                  "ipv6": ["fd42:1::50/64"], "hwaddr": "00:16:3e:xx:xx:xx", "mtu": 1400})
    plan = prepare(cfg, "web1", lxpath)
    undos.append(setup(plan, pid))
    host_end = plan.ifaces[0].host_name
    links = rtnl.by_name()
    assert links[host_end].master == links[br].index
    # inside: eth0 with the address, the MAC prefix and MTU, lo up, default route
    addrs = rtnl.addresses(pid)
    assert f"{sub}.50/24" in addrs["eth0"]["ipv4"]
    assert "fd42:1::50/64" in addrs["eth0"]["ipv6"]
    assert addrs["eth0"]["mac"].startswith("00:16:3e:")
    assert addrs["eth0"]["mtu"] == 1400 and addrs["lo"]["up"]
    assert f"default via {sub}.1" in in_ns(pid, "ip", "route").stdout
    # reachable both ways at once
    in_ns(pid, BUSYBOX, "ping", "-c1", "-W5", f"{sub}.1")
    srv = subprocess.Popen(["nsenter", "-t", str(pid), "-n", BUSYBOX, "nc", "-l", "-p", "7777",
                            "-e", "echo", "hello-from-web1"])
    try:
        def talk():
            try:
                with socket.create_connection((f"{sub}.50", 7777), timeout=2) as s:
                    return s.recv(100)
            except OSError:
                return None
        assert b"hello-from-web1" in wait_for(talk, what="tcp to the container")
    finally:
        srv.kill()
        srv.wait()
    # rx/tx counters moved
    assert rtnl.addresses(pid)["eth0"]["rx_bytes"] > 0


def test_veth_setup_does_not_import_pyroute2(bridge, netns, lxpath, sysconf):
    """The common start path (veth, static addresses) speaks rtnetlink itself."""
    br, sub = bridge
    pid = netns()
    code = f"""
import sys
from lxpy.config import validate
from lxpy.net import plan, rtnl, setup
cfg = validate({{"net": [{{"type": "veth", "link": "{br}", "ipv4": ["{sub}.55/24"],
                          "gateway4": "auto"}}]}}, "t")
undo = setup.setup(plan.prepare(cfg, "lean", "{lxpath}"), {pid})
print("pyroute2" in sys.modules, rtnl.addresses({pid})["eth0"]["ipv4"])
undo.close()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[0] == "False" and f"{sub}.55/24" in out


def test_host_end_goes_when_the_netns_dies(bridge, netns, lxpath, sysconf):
    br, sub = bridge
    p = subprocess.Popen(["unshare", "-n", "--", "sleep", "3600"])
    try:
        wait_for(lambda: os.stat(f"/proc/{p.pid}/ns/net").st_ino
                 != os.stat("/proc/self/ns/net").st_ino)
        plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.51/24"]}),
                       "dies1", lxpath)
        undo = setup(plan, p.pid)
        assert plan.ifaces[0].host_name in host_links()
    finally:
        p.kill()    # the monitor would be SIGKILLed too: nobody runs undo
        p.wait()
    wait_for(lambda: plan.ifaces[0].host_name not in host_links(), what="host end to vanish")
    undo.close()    # harmless afterwards
    cleanup_stale()
    assert not list((records.run_root() / "containers").glob("*-dies1.json"))


def test_undo_removes_host_end_and_record(bridge, netns, lxpath, sysconf):
    br, sub = bridge
    pid = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.52/24"]}),
                   "undo1", lxpath)
    undo = setup(plan, pid)
    assert plan.ifaces[0].host_name in host_links()
    undo.close()
    assert plan.ifaces[0].host_name not in host_links()
    assert "eth0" not in rtnl.addresses(pid)
    setup(plan, pid)
    assert teardown("undo1", lxpath) == [f"veth {plan.ifaces[0].host_name}"]
    assert plan.ifaces[0].host_name not in host_links()


def test_empty_has_only_lo_up(netns, lxpath, sysconf):
    pid = netns()
    plan = prepare(cfg_of({"type": "empty"}), "empty1", lxpath)
    assert not plan.has_devices
    setup(plan, pid).close()
    a = rtnl.addresses(pid)
    assert list(a) == ["lo"] and a["lo"]["up"] and "127.0.0.1/8" in a["lo"]["ipv4"]
    pid2 = netns()
    loopback_up(pid2)
    assert rtnl.addresses(pid2)["lo"]["up"]


def test_none_shares_the_host(lxpath, sysconf):
    plan = prepare(cfg_of({"type": "none"}), "host1", lxpath)
    assert plan.share_host and plan.warnings
    with pytest.raises(NetworkError):
        prepare(cfg_of({"type": "none"}, {"type": "empty"}), "host1", lxpath)


def test_macvlan_modes_and_traffic(bridge, netns, undos, lxpath, sysconf):
    br, sub = bridge
    a, b = netns(), netns()
    for pid, n, mode in ((a, 60, "bridge"), (b, 61, "bridge")):
        plan = prepare(cfg_of({"type": "macvlan", "link": br, "macvlan_mode": mode,
                               "ipv4": [f"{sub}.{n}/24"]}), f"mv{n}", lxpath)
        undos.append(setup(plan, pid))
    assert "macvlan mode bridge" in in_ns(a, "ip", "-d", "link", "show", "eth0").stdout
    in_ns(a, BUSYBOX, "ping", "-c1", "-W5", f"{sub}.61")
    pid = netns()
    plan = prepare(cfg_of({"type": "macvlan", "link": br, "macvlan_mode": "private",
                           "name": "mv0"}), "mvp", lxpath)
    undos.append(setup(plan, pid))
    assert "macvlan mode private" in in_ns(pid, "ip", "-d", "link", "show", "mv0").stdout


def test_phys_moves_in_and_comes_back_with_its_name(netns, unique, lxpath, sysconf):
    dev, peer = "lxpyp" + unique[1:7], "lxpyq" + unique[1:7]
    ip("link", "add", dev, "type", "veth", "peer", "name", peer)
    try:
        mac = rtnl.by_name()[dev].mac
        pid = netns()
        plan = prepare(cfg_of({"type": "phys", "link": dev, "name": "eth1",
                               "ipv4": ["192.168.250.2/24"]}), "phys1", lxpath)
        undo = setup(plan, pid)
        assert dev not in host_links()
        inside = rtnl.addresses(pid)
        assert inside["eth1"]["mac"] == mac and "192.168.250.2/24" in inside["eth1"]["ipv4"]
        # in use: a second container cannot have it
        with pytest.raises(NetworkError, match="does not exist|in use"):
            prepare(cfg_of({"type": "phys", "link": dev}), "phys2", lxpath)
        undo.close()
        back = rtnl.by_name()
        assert dev in back and back[dev].mac == mac
        assert "eth1" not in rtnl.addresses(pid)
        # again, given back by teardown() from the records (no ExitStack at hand)
        plan = prepare(cfg_of({"type": "phys", "link": dev, "name": "eth1"}), "phys1",
                       lxpath)
        setup(plan, pid)
        assert dev not in host_links()
        assert "phys " + dev in teardown("phys1", lxpath)
        assert dev in host_links() and "eth1" not in rtnl.addresses(pid)
    finally:
        subprocess.run(["ip", "link", "del", dev], capture_output=True)


# ---------------------------------------------------------------------------
# Bad input: one line, and nothing made


def _fails(cfg, name, lxpath, match):
    before = host_links()
    with pytest.raises(NetworkError) as ei:
        prepare(cfg, name, lxpath)
    msg = str(ei.value)
    assert "\n" not in msg and match in msg, msg
    assert host_links() == before
    return msg


def test_bad_input(bridge, netns, undos, lxpath, sysconf, unique):
    br, sub = bridge
    _fails(cfg_of({"type": "veth", "link": "lxpynope" + unique[1:6]}), "bad", lxpath,
           "does not exist")
    _fails(cfg_of({"type": "phys", "link": "lxpynope" + unique[1:6]}), "bad", lxpath,
           "does not exist")
    _fails(cfg_of({"type": "macvlan", "link": "lxpynope" + unique[1:6]}), "bad", lxpath,
           "does not exist")
    # phys device in use: a bridge port, or one with host addresses
    pdev = "lxpyu" + unique[1:7]
    ip("link", "add", pdev, "type", "veth", "peer", "name", "lxpyv" + unique[1:7])
    try:
        ip("link", "set", pdev, "master", br)
        _fails(cfg_of({"type": "phys", "link": pdev}), "bad", lxpath, "in use")
    finally:
        subprocess.run(["ip", "link", "del", pdev], capture_output=True)
    _fails(cfg_of({"type": "phys", "link": "eth0"} if "eth0" in host_links() else
                  {"type": "phys", "link": br}), "bad", lxpath, "")
    # the same address twice in one config, the host's own address, a gateway off-link
    _fails(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.70/24"]},
                  {"type": "veth", "link": br, "name": "eth1", "ipv4": [f"{sub}.70/24"]}),
           "bad", lxpath, "already given")
    _fails(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.1/24"]}), "bad", lxpath,
           "already used on the host")
    _fails(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.71/24"],
                   "gateway4": "192.168.77.1"}), "bad", lxpath, "not in the subnet")
    # MAC of a host interface
    host_mac = next(lk.mac for lk in rtnl.by_name().values()
                    if lk.mac not in ("", "00:00:00:00:00:00"))
    _fails(cfg_of({"type": "veth", "link": br, "hwaddr": host_mac}), "bad", lxpath,
           "already used on the host")
    # duplicates with a running container of the same lxpath
    pid = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.72/24"],
                           "hwaddr": "00:16:3e:11:22:33"}), "first", lxpath)
    undos.append(setup(plan, pid))
    _fails(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.72/24"]}), "second", lxpath,
           "running container 'first'")
    _fails(cfg_of({"type": "veth", "link": br, "hwaddr": "00:16:3e:11:22:33"}), "second",
           lxpath, "running container 'first'")
    # ... and of another lxpath sharing the bridge
    _fails(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.72/24"]}), "first",
           lxpath.parent / "elsewhere", f"running container 'first' (in {lxpath})")
    # an existing host end name
    _fails(cfg_of({"type": "veth", "link": br, "veth_host": br}), "second", lxpath,
           "already exists")
    # outside the managed bridge's subnet (the managed bridge here is our test bridge)
    sysconf(bridge=br, subnet=f"{sub}.0/24", dhcp_range=f"{sub}.100,{sub}.200")
    _fails(cfg_of({"type": "veth", "link": br, "ipv4": ["172.31.250.5/24"]}), "bad", lxpath,
           "outside the subnet")
    # a failure half-way through setup undoes what was made
    pid2 = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.73/24"]},
                          {"type": "veth", "link": br, "name": "eth1",
                           "veth_host": "lxpyh" + unique[1:7]}), "half", lxpath)
    ip("link", "add", "lxpyh" + unique[1:7], "type", "bridge")   # taken meanwhile
    try:
        before = host_links()
        with pytest.raises(NetworkError):
            setup(plan, pid2)
        assert host_links() == before
        assert "eth0" not in rtnl.addresses(pid2)
    finally:
        subprocess.run(["ip", "link", "del", "lxpyh" + unique[1:7]], capture_output=True)


def test_setup_refuses_the_host_netns(bridge, lxpath, sysconf):
    br, sub = bridge
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.80/24"]}),
                   "hostns", lxpath)
    before = host_links()
    with pytest.raises(NetworkError, match="shares the host"):
        setup(plan, os.getpid())
    assert host_links() == before


def test_bad_input_cli_one_line(lxpy, lxpath, sysconf):
    r = lxpy("net", "forward", "add", "nosuch", "tcp", "8080:80", check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = lxpy("net", "forward", "add", "nosuch", "tcp", "80:x", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = lxpy("net", "bogus", check=False)
    assert r.returncode == 2


# ---------------------------------------------------------------------------
# The managed bridge


@pytest.fixture
def managed(sysconf, unique, lxpy):
    """lxpy-net start with our own bridge and subnet; stop afterwards, checking that
    nothing is left."""
    yield from _managed(sysconf, unique, lxpy)


@pytest.fixture
def managed6(sysconf, unique, lxpy):
    yield from _managed(sysconf, unique, lxpy, ipv6=True)


def _managed(sysconf, unique, lxpy, **extra):
    br = "lxpyt" + unique[1:7]
    sub = rand_subnet()
    sysconf(bridge=br, subnet=f"{sub}.0/24", dhcp_range=f"{sub}.100,{sub}.150",
            domain="lxpytest", **extra)
    r = lxpy("net", "start", lxpath=False, check=False)
    try:
        assert r.returncode == 0, r.stderr
        yield br, sub
    finally:
        lxpy("net", "stop", "--force", lxpath=False, check=False)
        subprocess.run(["ip", "link", "del", br], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", f"lxpy-{br}"], capture_output=True)


def assert_managed_gone(br: str) -> None:
    assert br not in host_links()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert f"lxpy-{br}" not in tables
    assert not (records.run_root() / br).exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"/run/lxpy/net/{br}/" not in ps


def udhcpc(pid: int, tmp_path: Path, hostname: str) -> str:
    script = tmp_path / "udhcpc.sh"
    script.write_text(f"""#!/bin/sh
case "$1" in
  bound|renew)
    {BUSYBOX} ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && {BUSYBOX} ip route add default via "${{router%% *}}"
    echo "$ip" > {tmp_path}/lease-$interface-{hostname}
    ;;
esac
exit 0
""")
    script.chmod(0o755)
    in_ns(pid, BUSYBOX, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1",
          "-s", str(script), "-x", f"hostname:{hostname}", timeout=60)
    return (tmp_path / f"lease-eth0-{hostname}").read_text().strip()


def with_resolv(pid: int, tmp_path: Path, dns: str, *cmd: str) -> subprocess.CompletedProcess:
    """Run cmd in the netns of pid with /etc/resolv.conf pointing at dns (private mount)."""
    rc = tmp_path / f"resolv-{pid}.conf"
    rc.write_text(f"nameserver {dns}\n")
    sh = f"mount --bind {rc} /etc/resolv.conf && exec {' '.join(cmd)}"
    return in_ns(pid, "unshare", "-m", "--propagation", "private", "sh", "-c", sh,
                 check=False)


def test_managed_bridge_dhcp_dns_and_host_server(managed, netns, undos, lxpath, tmp_path,
                                                 lxpy):
    br, sub = managed
    st = json.loads(lxpy("net", "status", "--format", "json", lxpath=False).stdout)
    assert st["running"] and f"{sub}.1/24" in st["addresses"] and st["dnsmasq_pid"]
    assert any("masquerade" in r for r in st["nat_rules"])
    # idempotent
    lxpy("net", "start", lxpath=False)
    a, b = netns(), netns()
    leased = {}
    for pid, name in ((a, "dhcpa"), (b, "dhcpb")):
        plan = prepare(cfg_of({"type": "veth", "link": br, "dhcp": True,
                               "hwaddr": "00:16:3e:xx:xx:xx"}), name, lxpath)
        undos.append(setup(plan, pid))
        leased[name] = udhcpc(pid, tmp_path, name)
        lo, hi = 100, 150
        assert leased[name].startswith(f"{sub}.") and lo <= int(leased[name].split(".")[3]) <= hi
    assert f"{leased['dhcpa']}/24" in rtnl.addresses(a)["eth0"]["ipv4"]
    # by address, and by name through the bridge's DNS
    in_ns(a, BUSYBOX, "ping", "-c1", "-W5", leased["dhcpb"])
    r = with_resolv(a, tmp_path, f"{sub}.1", BUSYBOX, "ping", "-c1", "-W5", "dhcpb")
    assert r.returncode == 0 and leased["dhcpb"] in r.stdout, r.stdout + r.stderr
    r = with_resolv(b, tmp_path, f"{sub}.1", BUSYBOX, "ping", "-c1", "-W5", "dhcpa.lxpytest")
    assert r.returncode == 0 and leased["dhcpa"] in r.stdout, r.stdout + r.stderr
    leases = json.loads(lxpy("net", "status", "--format", "json", lxpath=False).stdout)["leases"]
    assert {x["hostname"] for x in leases} >= {"dhcpa", "dhcpb"}
    # a container that asks for a static lease (dhcp + ipv4) gets exactly that address
    d = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "dhcp": True,
                           "ipv4": [f"{sub}.33/24"], "hwaddr": "00:16:3e:xx:xx:xx"}),
                   "reserved", lxpath)
    undos.append(setup(plan, d))
    hosts = (records.run_root() / br / "dhcp-hosts").read_text()
    assert f"{plan.ifaces[0].hwaddr},{sub}.33,reserved" in hosts
    assert udhcpc(d, tmp_path, "reserved") == f"{sub}.33"
    # a static container on the managed bridge is known by name too
    c = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.20/24"]}),
                   "static1", lxpath)
    assert plan.ifaces[0].gateway4 == f"{sub}.1"     # the bridge, by default
    undos.append(setup(plan, c))
    assert f"{sub}.20 static1" in (records.run_root() / br / "hosts").read_text()
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(
        with_resolv(a, tmp_path, f"{sub}.1", BUSYBOX, "ping", "-c1", "-W5", "static1")),
        what="static1 in the bridge's DNS (dnsmasq re-reads its hosts on SIGHUP)")
    assert f"{sub}.20" in r.stdout
    # a server on the host's bridge address answers the container
    token = f"host-server-{os.getpid()}"
    httpd = _serve(f"{sub}.1", token)
    try:
        r = in_ns(a, BUSYBOX, "wget", "-q", "-O", "-",
                  f"http://{sub}.1:{httpd.server_address[1]}/")
        assert token in r.stdout
    finally:
        httpd.shutdown()
        httpd.server_close()


def _serve(addr: str, token: str, family=socket.AF_INET) -> http.server.HTTPServer:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{token} {self.client_address[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class S(http.server.HTTPServer):
        address_family = family

    srv = S((addr, 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def other_machine(netns, unique):
    """A netns behind the host on its own link: (pid, its address, the host's address)."""
    pid = netns()
    h, o = "lxpyo" + unique[1:7], "lxpyr" + unique[1:7]
    sub = rand_subnet()
    ip("link", "add", h, "type", "veth", "peer", "name", o)
    try:
        ip("addr", "add", f"{sub}.1/24", "dev", h)
        ip("link", "set", h, "up")
        ip("link", "set", o, "netns", str(pid))
        in_ns(pid, "ip", "link", "set", "lo", "up")
        in_ns(pid, "ip", "addr", "add", f"{sub}.2/24", "dev", o)
        in_ns(pid, "ip", "link", "set", o, "up")
        in_ns(pid, "ip", "route", "add", "default", "via", f"{sub}.1")
        yield pid, f"{sub}.2", f"{sub}.1"
    finally:
        subprocess.run(["ip", "link", "del", h], capture_output=True)


def test_nat_masquerades_the_container(managed, netns, undos, lxpath, other_machine):
    br, sub = managed
    spid, saddr, host_side = other_machine
    c = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.30/24"]}),
                   "natc", lxpath)
    undos.append(setup(plan, c))
    # a server in the other netns that answers with the address it sees
    srv = subprocess.Popen(["nsenter", "-t", str(spid), "-n", sys.executable, "-c", f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{saddr}", 9099)); s.listen(5)
while True:
    c, a = s.accept(); c.sendall(("peer=" + a[0] + "\\n").encode()); c.close()
"""])
    try:
        def ask():
            r = in_ns(c, BUSYBOX, "nc", "-w", "3", saddr, "9099", check=False,
                      stdin=subprocess.DEVNULL)
            return r.stdout if "peer=" in r.stdout else None
        out = wait_for(ask, what="the server behind the host")
        assert f"peer={host_side}" in out, out      # masqueraded, not {sub}.30
    finally:
        srv.kill()
        srv.wait()


def _write_container(lxpath: Path, name: str, entries: list[dict]) -> None:
    d = lxpath / name
    d.mkdir()
    lines = []
    for e in entries:
        lines.append("[[net]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in e.items()]
    (d / "config.toml").write_text("\n".join(lines) + "\n")


def test_forward_from_host_and_other_machine(managed, netns, undos, lxpath, lxpy,
                                             other_machine, tmp_path):
    br, sub = managed
    opid, _oaddr, host_side = other_machine
    name = "fwd1"
    _write_container(lxpath, name, [{"type": "veth", "link": br, "ipv4": [f"{sub}.40/24"]}])
    c = netns()
    from lxpy.container import Container
    plan = prepare(Container(name, lxpath).config, name, lxpath)
    undos.append(setup(plan, c))
    www = tmp_path / "www"
    www.mkdir()
    token = f"container-{os.getpid()}"
    (www / "index.html").write_text(token)
    srv = subprocess.Popen(["nsenter", "-t", str(c), "-n", BUSYBOX, "httpd", "-f", "-p", "80",
                            "-h", str(www)])
    hp = random.randint(20000, 29999)
    try:
        lxpy("net", "forward", "add", name, "tcp", f"{hp}:80")
        listed = json.loads(lxpy("net", "forward", "list", "--format", "json").stdout)
        assert any(f["host_port"] == hp and f["container"] == name and f["active"]
                   for f in listed)

        def get(url):
            try:
                return urllib.request.urlopen(url, timeout=3).read().decode()
            except OSError:
                return None
        # from the host: loopback and the bridge address
        assert token in wait_for(lambda: get(f"http://127.0.0.1:{hp}/"), what="loopback fwd")
        assert token in wait_for(lambda: get(f"http://{sub}.1:{hp}/"), what="bridge fwd")
        # from another machine, to the host's address on its link
        r = in_ns(opid, BUSYBOX, "wget", "-q", "-O", "-",
                  f"http://{host_side}:{hp}/")
        assert token in r.stdout
        # a neighbour on the same bridge through the host's address (hairpin)
        nb = netns()
        undos.append(setup(prepare(cfg_of(
            {"type": "veth", "link": br, "ipv4": [f"{sub}.45/24"]}), "nb", lxpath), nb))
        r = in_ns(nb, BUSYBOX, "wget", "-q", "-O", "-", f"http://{sub}.1:{hp}/")
        assert token in r.stdout
        lxpy("net", "forward", "remove", name, "tcp", str(hp))
        assert get(f"http://127.0.0.1:{hp}/") is None
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True,
                                text=True).stdout
        assert "lxpy-forward" not in tables or forward.list_all()
    finally:
        srv.kill()
        srv.wait()
        lxpy("net", "forward", "remove", name, "tcp", str(hp), check=False)


def test_forward_add_refuses_a_twin_and_a_host_service(managed, lxpath, lxpy):
    br, sub = managed
    _write_container(lxpath, "fwr", [{"type": "veth", "link": br, "ipv4": [f"{sub}.43/24"]}])
    hp = random.randint(20000, 29999)
    lxpy("net", "forward", "add", "fwr", "tcp", f"{hp}:80")
    before = (lxpath / "fwr/config.toml").read_text()
    # the same host port again, to another target: refused, the config stays
    r = lxpy("net", "forward", "add", "fwr", "tcp", f"{hp}:8080", check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"fwr already forwards tcp {hp}" in r.stderr
    assert f"lxpy-net forward rm fwr tcp {hp}" in r.stderr
    assert (lxpath / "fwr/config.toml").read_text() == before
    lxpy("net", "forward", "rm", "fwr", "tcp", str(hp))
    assert "[[forward]]" not in (lxpath / "fwr/config.toml").read_text()
    # a host port a host service listens on (any local address): refused at start
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((addr, 0))
            s.listen()
            port = s.getsockname()[1]
            with pytest.raises(NetworkError, match="in use on the host"):
                prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.44/24"]},
                               forward=[{"listen": port, "port": 80}]), "fwr2", lxpath)


def test_config_forwards_come_and_go(managed, netns, undos, lxpath, tmp_path):
    br, sub = managed
    hp = random.randint(30000, 39999)
    c = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.41/24"]},
                          forward=[{"listen": hp, "port": 8000}]), "cfwd", lxpath)
    undos.append(setup(plan, c))      # setup publishes the config's forwards
    srv = subprocess.Popen(["nsenter", "-t", str(c), "-n", BUSYBOX, "nc", "-ll", "-p", "8000",
                            "-e", "echo", "cfg-forward-ok"])
    try:
        def talk():
            try:
                with socket.create_connection(("127.0.0.1", hp), timeout=2) as s:
                    return s.recv(100)
            except OSError:
                return None
        assert b"cfg-forward-ok" in wait_for(talk, what="config forward")
        # the same host port for another container is refused
        with pytest.raises(NetworkError, match="already forwarded"):
            prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.42/24"]},
                           forward=[{"listen": hp, "port": 80}]), "other", lxpath)
    finally:
        srv.kill()
        srv.wait()
    # the monitor may have lost setup's undo (forked helper): teardown works from records
    assert f"forward tcp {hp}" in teardown("cfwd", lxpath)
    assert not any(f["host_port"] == hp for f in forward.list_all())
    assert teardown("cfwd", lxpath) == []


def test_ipv6_bridge_static_address_and_forward(managed6, netns, undos, lxpath, lxpy):
    br, sub = managed6
    st = json.loads(lxpy("net", "status", "--format", "json", lxpath=False).stdout)
    v6 = next(a for a in st["addresses"] if a.startswith("fd"))
    prefix = v6.split("::")[0]
    hp = random.randint(40000, 49999)
    c = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.44/24"],
                           "ipv6": [f"{prefix}::44/64"], "gateway6": "auto"},
                          forward=[{"listen": hp, "port": 80}]), "six", lxpath)
    assert plan.ifaces[0].gateway6 == v6.split("/")[0]
    undos.append(setup(plan, c))
    assert f"default via {v6.split('/')[0]}" in in_ns(c, "ip", "-6", "route").stdout
    in_ns(c, BUSYBOX, "ping", "-c1", "-W5", v6.split("/")[0])
    srv = subprocess.Popen(["nsenter", "-t", str(c), "-n", BUSYBOX, "nc", "-ll", "-p", "80",
                            "-e", "echo", "six-ok"])
    try:
        def talk(host):
            try:
                with socket.create_connection((host, hp), timeout=2) as s:
                    return s.recv(100)
            except OSError:
                return None
        assert b"six-ok" in wait_for(lambda: talk(v6.split("/")[0]), what="v6 forward")
        assert b"six-ok" in wait_for(lambda: talk("127.0.0.1"), what="v4 forward")
    finally:
        srv.kill()
        srv.wait()
    undos.pop().close()
    lxpy("net", "stop", lxpath=False)
    assert_managed_gone(br)


def test_stop_leaves_nothing(managed, netns, lxpath, tmp_path, lxpy):
    br, sub = managed
    pid = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "dhcp": True}), "stopc", lxpath)
    undo = setup(plan, pid)
    udhcpc(pid, tmp_path, "stopc")
    assert (records.run_root() / br / "dnsmasq.leases").read_text()
    undo.close()
    lxpy("net", "stop", lxpath=False)
    assert_managed_gone(br)
    # and stop again is harmless
    assert lxpy("net", "stop", lxpath=False).returncode == 0


def test_stop_refused_under_running_containers_force_and_start_reattach(managed, netns,
                                                                        undos, lxpath, lxpy):
    br, sub = managed
    pid = netns()
    plan = prepare(cfg_of({"type": "veth", "link": br, "ipv4": [f"{sub}.47/24"]}),
                   "inuse", lxpath)
    undos.append(setup(plan, pid))
    end = plan.ifaces[0].host_name
    in_ns(pid, BUSYBOX, "ping", "-c1", "-W5", f"{sub}.1")
    r = lxpy("net", "stop", lxpath=False, check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "'inuse'" in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    st = json.loads(lxpy("net", "status", "--format", "json", lxpath=False).stdout)
    assert st["running"] and end in st["ports"]
    # --force goes ahead: the bridge goes, the host end stays, unattached
    lxpy("net", "stop", "--force", lxpath=False)
    links = rtnl.by_name()
    assert br not in links and end in links and not links[end].master
    # start puts it back on the bridge: the container reaches the host again
    lxpy("net", "start", lxpath=False)
    links = rtnl.by_name()
    assert links[end].master == links[br].index
    in_ns(pid, BUSYBOX, "ping", "-c1", "-W5", f"{sub}.1")
    undos.pop().close()
    lxpy("net", "stop", lxpath=False)
    assert_managed_gone(br)


# ---------------------------------------------------------------------------
# End to end with lxpy-start


def _busybox_container(lxpath: Path, name: str, net_toml: str) -> None:
    d = lxpath / name
    r = d / "rootfs"
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (r / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, r / "bin/busybox")
    for applet in ("sh", "nc", "sleep", "echo", "ip"):
        os.symlink("busybox", r / "bin" / applet)
    os.symlink("/bin/busybox", r / "sbin/init")
    (r / "etc/inittab").write_text("::respawn:/bin/nc -ll -p 7777 -e /bin/echo lxpy-e2e\n")
    (d / "config.toml").write_text(
        f'hostname = "{name}"\n[init]\ncmd = ["/sbin/init"]\nhalt_signal = "SIGUSR2"\n'
        f"stop_timeout = 10\n{net_toml}")


def test_static_container_reachable_when_start_returns(bridge, lxpy, lxpath, sysconf):
    br, sub = bridge
    _busybox_container(lxpath, "e2e", f'[[net]]\ntype = "veth"\nlink = "{br}"\n'
                                      f'ipv4 = ["{sub}.9/24"]\ngateway4 = "auto"\n'
                                      'hwaddr = "00:16:3e:xx:xx:xx"\n')
    lxpy("start", "-n", "e2e")
    try:
        # no retry: the address is up before init runs
        subprocess.run([BUSYBOX, "ping", "-c1", "-W5", f"{sub}.9"], check=True,
                       capture_output=True, timeout=30)

        def talk():
            try:
                with socket.create_connection((f"{sub}.9", 7777), timeout=2) as s:
                    return s.recv(100)
            except OSError:
                return None
        assert b"lxpy-e2e" in wait_for(talk, what="the container's server")
        ends = [n for n, lk in rtnl.by_name().items()
                if lk.master == rtnl.by_name()[br].index]
        assert len(ends) == 1
    finally:
        lxpy("stop", "-n", "e2e", "-k", check=False)
        # the monitor runs setup in a helper that drops the undo stack: records go here
        teardown("e2e", lxpath)
        cleanup_stale()
    wait_for(lambda: not any(lk.master == rtnl.by_name()[br].index
                             for lk in rtnl.by_name().values()), what="the host end to go")


def test_cleanup_stale_renames_a_returned_phys_device(unique):
    """The kernel gives a phys device back as devN when the netns dies under a killed
    monitor; cleanup_stale() finds it by MAC and gives it its name back."""
    from lxpy.net import phys
    orig, tmpname, peer = "lxpyg" + unique[1:7], "dev" + unique[1:7], "lxpyk" + unique[1:7]
    ip("link", "add", tmpname, "type", "veth", "peer", "name", peer)
    try:
        mac = rtnl.by_name()[tmpname].mac
        d = phys.state_dir()
        d.mkdir(parents=True, exist_ok=True)
        gone = subprocess.Popen(["unshare", "-n", "--", "true"])
        gone.wait()
        (d / f"{orig}.json").write_text(json.dumps(
            {"name": orig, "mac": mac, "address": mac, "netns": 1, "container": "x",
             "index": -1}))
        assert orig in cleanup_stale()["phys"]
        links = rtnl.by_name()
        assert orig in links and links[orig].mac == mac and tmpname not in links
        assert not (d / f"{orig}.json").exists()
    finally:
        subprocess.run(["ip", "link", "del", orig], capture_output=True)
        subprocess.run(["ip", "link", "del", tmpname], capture_output=True)


def test_start_refuses_a_name_that_is_not_a_bridge(sysconf, unique, lxpy):
    dev, peer = "lxpyx" + unique[1:7], "lxpyy" + unique[1:7]
    ip("link", "add", dev, "type", "veth", "peer", "name", peer)
    try:
        sysconf(bridge=dev, subnet=f"{rand_subnet()}.0/24", dhcp_range="10.0.3.2,10.0.3.254")
        r = lxpy("net", "start", lxpath=False, check=False)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "not a bridge" in r.stderr
        assert not (records.run_root() / dev).exists()
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True,
                                text=True).stdout
        assert f"lxpy-{dev}" not in tables
        sysconf(bridge="lxpyz" + unique[1:7], subnet="10.1.2.0/24",
                dhcp_range="10.9.9.1,10.9.9.5")
        fwd = Path("/proc/sys/net/ipv4/ip_forward").read_text()
        r = lxpy("net", "start", lxpath=False, check=False)
        assert r.returncode == 1 and "dhcp_range" in r.stderr, r.stderr
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == fwd
        assert "lxpyz" + unique[1:7] not in host_links()
        assert not (records.run_root() / ("lxpyz" + unique[1:7])).exists()
    finally:
        subprocess.run(["ip", "link", "del", dev], capture_output=True)


def test_dhcp_container_lease_shows_in_ls(managed, lxpy, lxpath):
    """lxpy-start of a busybox container asking DHCP on the managed bridge: the lease
    shows in lxpy-ls -f and lxpy-net status; stop + lxpy-net stop leave nothing."""
    br, sub = managed
    _busybox_container(lxpath, "dh", f'[[net]]\ntype = "veth"\nlink = "{br}"\ndhcp = true\n'
                                     'hwaddr = "00:16:3e:xx:xx:xx"\n')
    r = lxpath / "dh" / "rootfs"
    os.symlink("busybox", r / "bin" / "udhcpc")
    (r / "bin/dhcp.sh").write_text(
        '#!/bin/sh\ncase "$1" in bound|renew) ip addr add "$ip/$mask" dev "$interface";;'
        "\nesac\nexit 0\n")
    (r / "bin/dhcp.sh").chmod(0o755)
    (r / "etc/inittab").write_text(
        "::respawn:/bin/udhcpc -f -i eth0 -s /bin/dhcp.sh -x hostname:dh\n"
        "::respawn:/bin/nc -ll -p 7777 -e /bin/echo lxpy-e2e\n")
    lxpy("start", "-n", "dh")
    try:
        def leased():
            rows = json.loads(lxpy("ls", "-f", "--format", "json").stdout)
            return next((x for x in rows[0].get("ipv4", []) if x.startswith(f"{sub}.")), None)
        addr = wait_for(leased, what="the lease in lxpy-ls -f")
        st = json.loads(lxpy("net", "status", "--format", "json", lxpath=False).stdout)
        assert any(x["ip"] == addr and x["hostname"] == "dh" for x in st["leases"])
        # a forward is config, set up at every start: the lease it goes to becomes the
        # container's reserved one (net.0.ipv4 with dhcp on), and the admin is told
        r = lxpy("net", "forward", "add", "dh", "tcp", "50000:7777")
        assert f"lease {addr} is now reserved" in r.stderr, r.stderr
        text = (lxpath / "dh/config.toml").read_text()
        assert "[[forward]]" in text and f'ipv4 = ["{addr}/24"]' in text, text
        with socket.create_connection(("127.0.0.1", 50000), timeout=10) as conn:
            assert conn.makefile().readline().strip() == "lxpy-e2e"
    finally:
        lxpy("stop", "-n", "dh", "-k", check=False)
        teardown("dh", lxpath)
        cleanup_stale()
    lxpy("net", "stop", lxpath=False)
    assert_managed_gone(br)


def _state_file(lxpath: Path, name: str) -> dict[str, str]:
    p = paths.run_dir(lxpath, name) / "state"
    try:
        return dict(ln.split("=", 1) for ln in p.read_text().splitlines() if "=" in ln)
    except FileNotFoundError:
        return {}


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except (OSError, IndexError):
        return True


def test_start_after_a_killed_monitor_on_the_managed_bridge(managed, lxpy, lxpath):
    """Issue #3: monitor and init SIGKILLed (a crash) under a veth container on the
    managed bridge: the first lxpy-start works (the stale clean-up must not leave the
    interface types half-known), the container has its network and forward again, and
    stop leaves nothing."""
    br, sub = managed
    hp = random.randint(20000, 29999)
    _busybox_container(lxpath, "crash", f'[[net]]\ntype = "veth"\nlink = "{br}"\n'
                                        f'ipv4 = ["{sub}.33/24"]\n'
                                        f'[[forward]]\nlisten = {hp}\nport = 7777\n')
    host_end = host_name_for("crash", lxpath, 0)

    def talk(addr, port):
        try:
            with socket.create_connection((addr, port), timeout=2) as s:
                return s.recv(100)
        except OSError:
            return None
    lxpy("start", "-n", "crash")
    try:
        assert b"lxpy-e2e" in wait_for(lambda: talk(f"{sub}.33", 7777), what="the server")
        st = _state_file(lxpath, "crash")
        os.kill(int(st["monitor_pid"]), 9)
        wait_for(lambda: _gone(int(st["monitor_pid"])), what="the monitor to die")
        os.kill(int(st["pid"]), 9)
        wait_for(lambda: host_end not in host_links(), what="the netns to die")
        # the record and the forward of the dead container are still there (not live)
        assert any(f["host_port"] == hp for _p, f in records.load_all(forward.state_dir()))
        assert not any(f["host_port"] == hp for f in forward.list_all())
        r = lxpy("start", "-n", "crash", check=False)
        assert r.returncode == 0, r.stderr
        assert b"lxpy-e2e" in wait_for(lambda: talk(f"{sub}.33", 7777), what="the server")
        assert b"lxpy-e2e" in wait_for(lambda: talk("127.0.0.1", hp), what="the forward")
        assert [f["host_port"] for f in forward.list_all()].count(hp) == 1
        ports = [n for n, lk in rtnl.by_name().items()
                 if lk.master == rtnl.by_name()[br].index]
        assert ports == [host_end]
        lxpy("stop", "-n", "crash", "-k")
    finally:
        lxpy("stop", "-n", "crash", "-k", check=False)
    wait_for(lambda: host_end not in host_links(), what="the host end to go")
    assert not any(f["host_port"] == hp for f in forward.list_all())
    assert not list((records.run_root() / "containers").glob("*-crash.json"))
    assert not paths.run_dir(lxpath, "crash").exists()

"""Network for hosting (issue 17) against the real kernel, with real containers
(busybox, lxpy-start): rate limits measured with iperf3, a spoofed source dropped and
counted, a routed container reached from another netns without a bridge, ipvlan/vlan's
clear error on this kernel, and [[forward]] entries surviving stop, /run emptied and
start, refused to a second container."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys

import pytest

from lxpy import paths
from lxpy.net import antispoof, forward, records, tc
from lxpy.net.plan import host_name_for
from tests.conftest import wait_for

from .test_net import _busybox_container, _state_file, host_links, in_ns, ip, rand_subnet
from .test_net import bridge, netns  # noqa: F401 - fixtures (F811 where they are used)

pytestmark = pytest.mark.root
IPERF3 = shutil.which("iperf3")


def _net(**e) -> str:
    return "[[net]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in e.items())


def _pid(lxpath, name) -> int:
    return int(_state_file(lxpath, name)["pid"])


def _talk(addr: str, port: int) -> bytes | None:
    try:
        with socket.create_connection((addr, port), timeout=2) as s:
            return s.recv(100)
    except OSError:
        return None


def _tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def _iperf(pid: int, server: str, reverse: bool) -> float:
    """Mbit/s iperf3 measures from the netns of pid to a one-shot server on the host (a
    run that reports an error, as on a loaded host, is tried again with a new server)."""
    def once() -> float | None:
        port = random.randint(40000, 49999)
        srv = subprocess.Popen([IPERF3, "-s", "-1", "-B", server, "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r = in_ns(pid, IPERF3, "-c", server, "-p", str(port), "-t", "4", "-J",
                      "--connect-timeout", "2000", *(["-R"] if reverse else []),
                      check=False, timeout=60)
        finally:
            srv.kill()
            srv.wait()
        try:
            return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
        except (ValueError, KeyError):
            return None
    return wait_for(once, timeout=120, what="an iperf3 run to the host")


@pytest.mark.skipif(IPERF3 is None, reason="iperf3 is not installed (apt install iperf3)")
def test_rate_limits_measured_with_iperf3(bridge, lxpy, lxpath):  # noqa: F811
    br, sub = bridge
    _busybox_container(lxpath, "lim", _net(type="veth", link=br, ipv4=[f"{sub}.20/24"],
                                           egress="10mbit", ingress="20mbit"))
    host_end = host_name_for("lim", lxpath, 0)
    lxpy("start", "-n", "lim")
    try:
        pid = _pid(lxpath, "lim")
        sent = _iperf(pid, f"{sub}.1", reverse=False)      # what the container sends
        got = _iperf(pid, f"{sub}.1", reverse=True)        # what it receives
        print(f"egress 10mbit: {sent:.2f} Mbit/s; ingress 20mbit: {got:.2f} Mbit/s")
        assert 5 < sent <= 11, sent
        assert 10 < got <= 22, got
        assert tc.ifb_name(host_end) in host_links()
    finally:
        lxpy("stop", "-n", "lim", "-k")
    assert not {host_end, tc.ifb_name(host_end)} & host_links()


@pytest.mark.parametrize("fam", [4, 6])
def test_spoofed_sources_are_dropped_and_counted(bridge, lxpy, lxpath, fam):  # noqa: F811
    br, sub = bridge
    sub6 = f"fd{random.randint(0, 255):02x}:{random.randint(0, 65535):x}::"
    if fam == 6:
        ip("-6", "addr", "add", f"{sub6}1/64", "dev", br, "nodad")
        own, spoofed, host, af = f"{sub6}30", f"{sub6}99", f"{sub6}1", "AF_INET6"
        entry = _net(type="veth", link=br, ipv6=[f"{own}/64"], ipv6_filtering=True)
    else:
        own, spoofed, host, af = f"{sub}.30", f"{sub}.99", f"{sub}.1", "AF_INET"
        entry = _net(type="veth", link=br, ipv4=[f"{own}/24"], ipv4_filtering=True)
    _busybox_container(lxpath, "spf", entry)
    host_end = host_name_for("spf", lxpath, 0)
    table = antispoof.table_name(host_end)
    lxpy("start", "-n", "spf")
    try:
        pid = _pid(lxpath, "spf")
        assert f"table netdev {table}" in _tables()
        with socket.socket(getattr(socket, af), socket.SOCK_DGRAM) as rx:
            rx.bind((host, 0))
            rx.settimeout(0.2)
            port = rx.getsockname()[1]

            def send(src: str, token: str) -> None:
                in_ns(pid, sys.executable, "-c",
                      f"import socket; s = socket.socket(socket.{af}, socket.SOCK_DGRAM); "
                      f"s.bind(('{src}', 0)); s.sendto(b'{token}', ('{host}', {port}))")

            def heard(token: str) -> bool:
                send(own, token)
                try:
                    return rx.recv(100) == token.encode()
                except TimeoutError:
                    return False
            # its own address passes (and resolves the host's MAC for what follows)
            wait_for(lambda: heard("own"), what="a datagram from the container's address")
            before = antispoof.dropped(host_end)
            # another address (root inside adds one): dropped, counted
            in_ns(pid, "ip", f"-{fam}", "addr", "add", f"{spoofed}/{fam == 4 and 32 or 128}",
                  "dev", "eth0", *(["nodad"] if fam == 6 else []))
            send(spoofed, "spoofed")
            wait_for(lambda: antispoof.dropped(host_end) > before, what="the drop counter")
            with pytest.raises(TimeoutError):
                while True:
                    assert rx.recv(100) != b"spoofed"
            # another MAC: dropped too (address filtering implies mac_filtering)
            in_ns(pid, "ip", "link", "set", "eth0", "address", "02:00:00:00:00:99")
            before = antispoof.dropped(host_end)
            send(own, "othermac")
            wait_for(lambda: antispoof.dropped(host_end) > before, what="the MAC drop")
        listed = subprocess.run(["nft", "list", "table", "netdev", table], capture_output=True,
                                text=True).stdout
        assert "counter packets" in listed and "drop" in listed
        st = json.loads(lxpy("net", "status", "--format", "json", lxpath=False).stdout)
        assert any(f["host"] == host_end and f["dropped"] >= 2 for f in st["filters"])
        assert f"{host_end}: " in lxpy("net", "status", lxpath=False).stdout
    finally:
        lxpy("stop", "-n", "spf", "-k")
    assert f"{table}" not in _tables()


@pytest.fixture
def client_net(netns, unique):  # noqa: F811
    """Another network namespace linked to the host by a veth pair (no bridge):
    (pid, host side, IPv4 prefix 'a.b.c', IPv6 prefix 'fdxx:..'; the client is .2 / ::2,
    the host side .1 / ::1)."""
    pid = netns()
    host_side, peer = "lxpyc" + unique[1:7], "lxpyp" + unique[1:7]
    sub = rand_subnet()
    sub6 = f"fd{random.randint(0, 255):02x}:{random.randint(0, 65535):x}:{unique[1:5]}:1"
    ip("link", "add", host_side, "type", "veth", "peer", "name", peer)
    try:
        ip("link", "set", peer, "netns", str(pid))
        ip("addr", "add", f"{sub}.1/24", "dev", host_side)
        ip("-6", "addr", "add", f"{sub6}::1/64", "dev", host_side, "nodad")
        ip("link", "set", host_side, "up")
        in_ns(pid, "ip", "addr", "add", f"{sub}.2/24", "dev", peer)
        in_ns(pid, "ip", "-6", "addr", "add", f"{sub6}::2/64", "dev", peer, "nodad")
        in_ns(pid, "ip", "link", "set", peer, "up")
        in_ns(pid, "ip", "link", "set", "lo", "up")
        in_ns(pid, "ip", "route", "add", "default", "via", f"{sub}.1")
        in_ns(pid, "ip", "-6", "route", "add", "default", "via", f"{sub6}::1")
        yield pid, host_side, sub, sub6
    finally:
        subprocess.run(["ip", "link", "del", host_side], capture_output=True)


def _from(pid: int, addr: str, port: int) -> str | None:
    """What a server at addr:port says to a client in the netns of pid."""
    r = in_ns(pid, sys.executable, "-c", "import socket; s = socket.create_connection("
              f"({addr!r}, {port}), timeout=3); print(s.recv(100))", check=False)
    return r.stdout or None


def test_routed_containers_reached_from_another_netns(client_net, lxpy, lxpath):
    """Two routed containers (their host ends both hold 169.254.0.1): the client, on a
    link of the host, reaches each through proxy ARP/NDP, over IPv4 and IPv6; one stopping
    leaves the other reachable, and takes its routes and proxy entries along."""
    cpid, host_side, sub, sub6 = client_net
    for n, name in ((50, "rt"), (51, "rt2")):
        _busybox_container(lxpath, name, _net(type="routed", link=host_side,
                                              ipv4=[f"{sub}.{n}/32"],
                                              ipv6=[f"{sub6}::{n}/128"]))
    ends = [host_name_for(n, lxpath, 0) for n in ("rt", "rt2")]
    lxpy("start", "-n", "rt")
    lxpy("start", "-n", "rt2")
    try:
        pid = _pid(lxpath, "rt")
        routes = in_ns(pid, "ip", "route").stdout
        assert "default via 169.254.0.1 dev eth0" in routes and "onlink" in routes
        assert "default via fe80::1 dev eth0" in in_ns(pid, "ip", "-6", "route").stdout
        # no bridge: the host end is nobody's port, the host routes the /32 to it
        assert f"{sub}.50 dev {ends[0]}" in subprocess.run(
            ["ip", "route"], capture_output=True, text=True).stdout
        proxies = subprocess.run(["ip", "neigh", "show", "proxy"], capture_output=True,
                                 text=True).stdout
        assert f"{sub}.50 dev {host_side}" in proxies and f"{sub6}::50 dev {host_side}" in proxies
        # the client, on the host's link, reaches the containers' servers
        for addr in (f"{sub}.50", f"{sub6}::50", f"{sub}.51", f"{sub6}::51"):
            assert "lxpy-e2e" in wait_for(lambda a=addr: _from(cpid, a, 7777),
                                          what=f"the routed container at {addr}")
        lxpy("stop", "-n", "rt")
        assert "lxpy-e2e" in wait_for(lambda: _from(cpid, f"{sub}.51", 7777),
                                      what="the other routed container")
    finally:
        lxpy("stop", "-n", "rt", "-k", check=False)
        lxpy("stop", "-n", "rt2", "-k", check=False)
    assert not set(ends) & host_links()
    assert sub not in subprocess.run(["ip", "neigh", "show", "proxy"], capture_output=True,
                                     text=True).stdout


@pytest.mark.parametrize("kind,extra,module", [("ipvlan", {}, "ipvlan"),
                                               ("vlan", {"vlan": 7}, "8021q")])
def test_ipvlan_and_vlan_name_the_missing_kernel_module(lxpy, lxpath, kind, extra, module):
    """This kernel has neither link kind (KERNEL-NOTES): a start fails in one line naming
    the module, and leaves nothing."""
    if kind in _kinds():
        pytest.skip(f"this kernel has {kind}: test_{kind}_carries_traffic runs instead")
    _busybox_container(lxpath, kind, _net(type=kind, link="lo", ipv4=["192.0.2.9/24"],
                                          **extra))
    before = host_links()
    r = lxpy("start", "-n", kind, check=False)
    assert r.returncode == 1, r.stderr
    assert f"no {kind} support (kernel module {module})" in r.stderr
    assert "Traceback" not in r.stderr
    assert host_links() == before
    assert not paths.run_dir(lxpath, kind).exists()


def _kinds() -> set[str]:
    """The link kinds of vlan and ipvlan this kernel makes (on an ethernet device)."""
    have = set()
    subprocess.run(["ip", "link", "add", "lxpyk0", "type", "veth", "peer", "name", "lxpyk1"],
                   check=True, capture_output=True)
    try:
        for kind, args in (("ipvlan", []), ("vlan", ["id", "5"])):
            r = subprocess.run(["ip", "link", "add", "lxpyk2", "link", "lxpyk0", "type", kind,
                                *args], capture_output=True)
            if r.returncode == 0:
                have.add(kind)
                subprocess.run(["ip", "link", "del", "lxpyk2"], capture_output=True)
    finally:
        subprocess.run(["ip", "link", "del", "lxpyk0"], capture_output=True)
    return have


@pytest.mark.parametrize("kind", ["ipvlan", "vlan"])
def test_ipvlan_and_vlan_carry_traffic(lxpy, lxpath, unique, kind):
    """On a kernel with the link kind (tests/vm/test_net_vm.py runs this in a Debian guest):
    a container on a VLAN, or an ipvlan (l2), of one end of a veth pair is reached from the
    host through the other end."""
    if kind not in _kinds():
        pytest.skip(f"this kernel cannot make {kind} links (tests/vm/test_net_vm.py runs "
                    "this in a guest that can)")
    a, b = "lxpya" + unique[1:7], "lxpyb" + unique[1:7]
    sub = rand_subnet()
    ip("link", "add", a, "type", "veth", "peer", "name", b)
    try:
        ip("link", "set", a, "up")
        ip("link", "set", b, "up")
        far = b
        if kind == "vlan":
            far = f"{b}.7"
            ip("link", "add", "link", b, "name", far, "type", "vlan", "id", "7")
            ip("link", "set", far, "up")
        ip("addr", "add", f"{sub}.1/24", "dev", far)
        extra = {"vlan": 7} if kind == "vlan" else {"ipvlan_mode": "l2"}
        _busybox_container(lxpath, kind, _net(type=kind, link=a, ipv4=[f"{sub}.5/24"],
                                              **extra))
        lxpy("start", "-n", kind)
        try:
            assert b"lxpy-e2e" in wait_for(lambda: _talk(f"{sub}.5", 7777),
                                           what=f"the container on its {kind}")
        finally:
            lxpy("stop", "-n", kind, "-k")
        assert not any(n.startswith("lxt") for n in host_links())
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)


def test_forwards_survive_stop_run_emptied_and_start(bridge, lxpy, lxpath):  # noqa: F811
    br, sub = bridge
    hp = random.randint(20000, 29999)
    _busybox_container(lxpath, "web", _net(type="veth", link=br, ipv4=[f"{sub}.40/24"]))
    cfg = lxpath / "web/config.toml"
    cfg.write_text(cfg.read_text() + "# the published ports\n")
    # a listen address the host does not have: refused, nothing written
    r = lxpy("net", "forward", "add", "web", "tcp", f"192.0.2.123:{hp}:7777", check=False)
    assert r.returncode == 1 and "not an address of this host" in r.stderr
    # written into the config (comments kept) while stopped
    lxpy("net", "forward", "add", "web", "tcp", f"127.0.0.1:{hp}:7777")
    assert "# the published ports\n[[forward]]" in cfg.read_text()
    assert f'listen = "127.0.0.1:{hp}"' in cfg.read_text()
    ls = json.loads(lxpy("net", "forward", "ls", "--format", "json").stdout)
    assert ls == [{"container": "web", "proto": "tcp", "listen": f"127.0.0.1:{hp}",
                   "addr": "127.0.0.1", "host_port": hp, "port": 7777, "active": False}]
    r = lxpy("net", "forward", "ls", "nosuch", check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr
    _busybox_container(lxpath, "web2", _net(type="veth", link=br, ipv4=[f"{sub}.41/24"]))
    try:
        lxpy("start", "-n", "web")
        assert b"lxpy-e2e" in wait_for(lambda: _talk("127.0.0.1", hp), what="the forward")
        # the listen address is honoured: not on the host's other addresses
        assert _talk(f"{sub}.1", hp) is None
        # simulated host reboot: everything stopped, the runtime files gone, start again
        lxpy("stop", "-n", "web")
        assert _talk("127.0.0.1", hp) is None
        assert not [r for _f, r in records.load_all(forward.state_dir())
                    if r.get("lxpath") == str(lxpath)]
        shutil.rmtree(paths.run_dir(lxpath, "web"), ignore_errors=True)
        lxpy("start", "-n", "web")
        assert b"lxpy-e2e" in wait_for(lambda: _talk("127.0.0.1", hp), what="the forward "
                                       "after the reboot")
        # another container asking for the same port: refused with the holder's name, by
        # the command and at start from its own config
        r = lxpy("net", "forward", "add", "web2", "tcp", f"{hp}:7777", check=False)
        assert r.returncode == 1 and "already forwarded to container 'web'" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "[[forward]]" not in \
            (lxpath / "web2/config.toml").read_text()
        w2 = lxpath / "web2/config.toml"
        w2.write_text(w2.read_text() + f'[[forward]]\nlisten = "0.0.0.0:{hp}"\nport = 7777\n')
        r = lxpy("start", "-n", "web2", check=False)
        assert r.returncode == 1 and "already forwarded to container 'web'" in r.stderr
        # another listen address of the same port is free; added live to the running web
        lxpy("net", "forward", "add", "web", "udp", f"{hp}:7777")
        assert any(f["proto"] == "udp" and f["host_port"] == hp for f in forward.list_all())
        lxpy("net", "forward", "rm", "web", "udp", str(hp))
        assert not any(f["proto"] == "udp" and f["host_port"] == hp
                       for f in forward.list_all())
        lxpy("net", "forward", "rm", "web", "tcp", f"127.0.0.1:{hp}")
        assert _talk("127.0.0.1", hp) is None and "[[forward]]" not in cfg.read_text()
    finally:
        lxpy("stop", "-n", "web", "-k", check=False)
    assert "lxpy-forward" not in _tables() or forward.list_all()


def test_a_killed_container_leaves_no_ifb_or_filter(bridge, lxpy, lxpath):  # noqa: F811
    """Monitor and init SIGKILLed: the ifb device and the filter table outlive the host
    end; starting again replaces them, lxpy-net cleanup removes them, and a start after
    that makes them anew."""
    br, sub = bridge
    _busybox_container(lxpath, "kil", _net(type="veth", link=br, ipv4=[f"{sub}.60/24"],
                                           egress="50mbit", mac_filtering=True))
    host_end = host_name_for("kil", lxpath, 0)
    ifb, table = tc.ifb_name(host_end), antispoof.table_name(host_end)

    def kill() -> None:
        st = _state_file(lxpath, "kil")
        os.kill(int(st["monitor_pid"]), 9)
        os.kill(int(st["pid"]), 9)
        wait_for(lambda: host_end not in host_links(), what="the netns to die")
        assert ifb in host_links() and table in _tables()
    try:
        lxpy("start", "-n", "kil")
        kill()
        lxpy("start", "-n", "kil")
        assert b"lxpy-e2e" in wait_for(lambda: _talk(f"{sub}.60", 7777), what="the server")
        kill()
        out = lxpy("net", "cleanup", lxpath=False).stdout
        assert f"ifb {ifb}" in out and f"nft netdev {table}" in out
        assert ifb not in host_links() and table not in _tables()
        lxpy("start", "-n", "kil")
        assert ifb in host_links() and table in _tables()
        lxpy("stop", "-n", "kil")
    finally:
        lxpy("stop", "-n", "kil", "-k", check=False)
    assert ifb not in host_links() and table not in _tables()

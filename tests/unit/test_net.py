"""lxpy.net logic that needs no privileges: names, MACs, forwards, rulesets, the dnsmasq
command line, leases, and the checks prepare() makes before touching the host."""

from __future__ import annotations

import re

import pytest

from lxpy import paths
from lxpy.config import validate
from lxpy.errors import NetworkError
from lxpy.net import bridge, dnsmasq, forward, rtnl
from lxpy.net.plan import TYPES, fill_mac, host_name_for, prepare, type_of


@pytest.fixture
def sysconf(tmp_path, monkeypatch):
    p = tmp_path / "lxpy.toml"
    p.write_text('[net]\nbridge = "lxpyunit0"\nsubnet = "10.77.0.0/24"\n'
                 'dhcp_range = "10.77.0.10,10.77.0.20"\ndomain = "unit"\n')
    monkeypatch.setenv("LXPY_CONFIG", str(p))
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path / "run")
    paths.system_config.cache_clear()
    yield p
    paths.system_config.cache_clear()


def cfg_of(*entries):
    return validate({"net": list(entries)}, "test")


def test_host_name_is_short_stable_and_distinct():
    a = host_name_for("a-very-long-container-name", "/var/lib/lxpy", 0)
    assert len(a) <= 15 and a.startswith("lx")
    assert a == host_name_for("a-very-long-container-name", "/var/lib/lxpy", 0)
    assert a != host_name_for("a-very-long-container-name", "/srv/other", 0)
    assert a != host_name_for("a-very-long-container-name", "/var/lib/lxpy", 1)
    assert len(host_name_for("x", "/l", 12)) <= 15


def test_mac_xx_filled():
    m = fill_mac("00:16:3e:xx:xx:xx")
    assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", m)
    m = fill_mac("xx:xx:xx:xx:xx:xx")
    first = int(m[:2], 16)
    assert first & 0x01 == 0 and first & 0x02      # unicast, locally administered
    assert fill_mac("") == ""
    # the same container gets the same MAC at every start (and so the same lease)
    assert fill_mac("00:16:3e:xx:xx:xx", "/l/c1/0") == fill_mac(
        "00:16:3e:xx:xx:xx", "/l/c1/0")
    assert fill_mac("00:16:3e:xx:xx:xx", "/l/c1/0") != fill_mac(
        "00:16:3e:xx:xx:xx", "/l/c2/0")


@pytest.mark.parametrize("spec,want", [
    ("8080:80", ("8080", 80)), ("8080", ("8080", 8080)),
    ("127.0.0.1:8080:80", ("127.0.0.1:8080", 80)), ("192.0.2.1:53", ("192.0.2.1:53", 53)),
    ("[2001:db8::1]:8080:80", ("[2001:db8::1]:8080", 80)), ("[::]:443", ("[::]:443", 443))])
def test_forward_spec(spec, want):
    assert forward.parse_spec(spec) == want


@pytest.mark.parametrize("spec", ["0:80", "8080:70000", "a:b", "1:2:3:4", "[::1:80",
                                  "300.1.1.1:80:80", "[10.0.0.1]:80"])
def test_forward_spec_bad(spec):
    with pytest.raises(ValueError):
        forward.parse_spec(spec)


@pytest.mark.parametrize("a,b,hit", [("", "", True), ("", "::", True), ("0.0.0.0", "::", False),
                                     ("0.0.0.0", "10.0.0.1", True), ("10.0.0.1", "10.0.0.2",
                                                                     False),
                                     ("10.0.0.1", "10.0.0.1", True), ("::1", "0.0.0.0", False),
                                     ("", "127.0.0.1", True)])
def test_forward_listen_addresses_overlap(a, b, hit):
    assert forward.overlaps(a, b) is hit and forward.overlaps(b, a) is hit


def test_forward_resolve_picks_the_family_of_the_listen_address():
    E = forward.Entry
    ifaces = [{"type": "veth", "link": "br0", "host": "lxh0", "ipv4": ["10.0.3.5/24"],
               "ipv6": ["fd00::5/64"], "reserve4": []}]
    both, v4, v6, one = forward.resolve([E("tcp", "8080", None), E("tcp", "0.0.0.0:81", 80),
                                        E("udp", "[::]:53", 53),
                                        E("tcp", "192.0.2.1:82", 80)], ifaces)
    assert (both.ipv4, both.ipv6, both.port, both.dev) == ("10.0.3.5/24", "fd00::5/64", 8080,
                                                          "br0")
    assert (v4.ipv4, v4.ipv6, v4.addr) == ("10.0.3.5/24", None, "0.0.0.0")
    assert (v6.ipv4, v6.ipv6) == (None, "fd00::5/64")
    assert one.addr == "192.0.2.1" and one.ipv4 and not one.ipv6
    with pytest.raises(NetworkError, match="IPv6 address in the container"):
        forward.resolve([E("tcp", "[::1]:80", 80)], [{"type": "veth", "ipv4": ["10.0.0.2/24"]}])


def test_forward_ruleset_v4_v6_and_loopback():
    rs = forward.ruleset([{"proto": "tcp", "host_port": 8080, "port": 80,
                           "ipv4": "10.0.3.5", "ipv6": "fd00::5"}])
    assert "tcp dport 8080 dnat ip to 10.0.3.5:80" in rs
    assert "dnat ip6 to [fd00::5]:80" in rs
    assert "hook output" in rs and "hook prerouting" in rs
    assert "ip saddr 127.0.0.0/8 ct status dnat masquerade" in rs
    hair = forward.ruleset([{"proto": "tcp", "host_port": 8080, "port": 80,
                             "ipv4": "10.0.3.5", "net4": "10.0.3.0/24"}])
    assert "ip saddr 10.0.3.0/24 ip daddr 10.0.3.5 tcp dport 80 ct status dnat masquerade" in hair
    # a listen address: only that destination, only its family
    one = forward.ruleset([{"proto": "udp", "addr": "192.0.2.1", "host_port": 53, "port": 53,
                            "ipv4": "10.0.3.5"}])
    assert "meta nfproto ipv4 ip daddr 192.0.2.1 udp dport 53 dnat ip to 10.0.3.5:53" in one
    assert "fib daddr type local" not in one


def test_bridge_ruleset_masquerades_only_the_subnet():
    rs = bridge.ruleset({"bridge": "br0", "subnet": "10.9.0.0/24", "ipv6": None})
    assert "ip saddr 10.9.0.0/24 ip daddr != 10.9.0.0/24 masquerade" in rs
    assert "ip6" not in rs


def test_dnsmasq_command(sysconf):
    cmd = dnsmasq.command("lxpyunit0", "10.77.0.1", "10.77.0.0/24", "10.77.0.10,10.77.0.20",
                          "unit")
    assert "--bind-interfaces" in cmd and "--interface=lxpyunit0" in cmd
    assert "--listen-address=10.77.0.1" in cmd and "--conf-file=/dev/null" in cmd
    assert any(c.startswith("--dhcp-range=10.77.0.10,10.77.0.20") for c in cmd)
    assert "--dhcp-lease-max=11" in cmd and "--domain=unit" in cmd
    assert any(c.startswith("--dhcp-hostsfile=") for c in cmd)
    for bad in ("10.77.0.10", "10.78.0.1,10.78.0.9", "10.77.0.20,10.77.0.10", "a,b"):
        with pytest.raises(NetworkError):
            dnsmasq.command("b", "10.77.0.1", "10.77.0.0/24", bad, "")


def test_leases_parsed(sysconf):
    d = dnsmasq.state_dir("lxpyunit0")
    d.mkdir(parents=True)
    (d / "dnsmasq.leases").write_text(
        "1700000000 00:16:3e:aa:bb:cc 10.77.0.11 web1 01:00:16:3e:aa:bb:cc\n"
        "1700000001 00:16:3e:aa:bb:cd 10.77.0.12 * *\n")
    ls = dnsmasq.leases("lxpyunit0")
    assert ls[0]["ip"] == "10.77.0.11" and ls[0]["hostname"] == "web1"
    assert ls[1]["hostname"] == ""


def test_prepare_without_entries_and_none(sysconf, tmp_path):
    assert prepare(validate({}, "t"), "c1", tmp_path).ifaces == []
    plan = prepare(cfg_of({"type": "none"}), "c1", tmp_path)
    assert plan.share_host and "host" in plan.warnings[0]
    with pytest.raises(NetworkError, match="cannot be combined"):
        prepare(cfg_of({"type": "none"}, {"type": "veth", "name": "eth1"}), "c1",
                    tmp_path)


@pytest.mark.parametrize("entry,match", [
    ({"type": "veth", "link": "lxpyunit0", "ipv4": ["10.78.0.5/24"]}, "outside the subnet"),
    ({"type": "veth", "link": "lxpyunit0", "dhcp": True, "ipv4": ["192.168.1.5/24"]},
     "outside the subnet"),
    ({"type": "veth", "link": "lxpyunit0", "ipv4": ["10.77.0.255/24"]}, "not a host address"),
    ({"type": "veth", "link": "lxpyunit0", "name": "lo"}, "loopback"),
    ({"type": "veth", "link": "nosuchbr0"}, "does not exist"),
])
def test_prepare_refuses_bad_entries(sysconf, tmp_path, entry, match):
    with pytest.raises(NetworkError, match=match) as ei:
        prepare(cfg_of(entry), "c1", tmp_path)
    assert "\n" not in str(ei.value)


def test_prepare_refuses_duplicates_in_the_plan(sysconf, tmp_path):
    with pytest.raises(NetworkError, match="already given"):
        prepare(cfg_of({"type": "veth", "ipv4": ["10.1.1.5/24"]},
                           {"type": "veth", "name": "eth1", "ipv4": ["10.1.1.5/24"]}),
                    "c1", tmp_path)
    with pytest.raises(NetworkError, match="already used by net.0"):
        prepare(cfg_of({"type": "veth", "hwaddr": "00:16:3e:01:02:03"},
                           {"type": "veth", "name": "eth1", "hwaddr": "00:16:3e:01:02:03"}),
                    "c1", tmp_path)


def test_prepare_refuses_what_a_running_neighbour_has(sysconf, tmp_path):
    """The start sequence hands prepare() the running containers and their configs."""
    web = cfg_of({"type": "veth", "ipv4": ["10.1.1.5/24"], "hwaddr": "00:16:3e:01:02:03"})
    with pytest.raises(NetworkError, match="already used by running container 'web'"):
        prepare(cfg_of({"type": "veth", "ipv4": ["10.1.1.5/24"]}), "c1", tmp_path,
                [("web", web)])
    with pytest.raises(NetworkError, match="MAC 00:16:3e:01:02:03 is already used by running"):
        prepare(cfg_of({"type": "veth", "hwaddr": "00:16:3e:01:02:03"}), "c1", tmp_path,
                [("web", web)])
    # itself (a restart) is no neighbour
    prepare(web, "web", tmp_path, [("web", web)])


def test_unattached_veth_plan(sysconf, tmp_path):
    plan = prepare(cfg_of({"type": "veth", "ipv4": ["10.1.1.5/24"],
                               "gateway4": "10.1.1.1", "hwaddr": "00:16:3e:xx:xx:xx"}),
                       "c1", tmp_path)
    p = plan.ifaces[0]
    assert p.host_name == host_name_for("c1", tmp_path, 0) and not p.link
    assert p.gateway4 == "10.1.1.1" and p.hwaddr.startswith("00:16:3e:")
    assert plan.has_devices and "veth eth0" in plan.describe()[0]


def test_addresses_of_own_netns():
    import os
    a = rtnl.addresses(os.getpid())
    assert "lo" in a and "127.0.0.1/8" in a["lo"]["ipv4"]


def test_every_type_is_in_the_table():
    assert list(TYPES) == ["veth", "routed", "macvlan", "ipvlan", "vlan", "phys", "empty",
                           "none"]
    with pytest.raises(NetworkError, match="not known") as e:
        type_of("bond")
    assert "veth, routed, macvlan, ipvlan, vlan, phys, empty, none" in e.value.hint


def test_a_kernel_without_the_link_type_is_a_clear_error():
    """EOPNOTSUPP from RTM_NEWLINK (no bridge/macvlan module) is a NetworkError with a hint,
    not a netlink traceback; other netlink errors pass through."""
    from pyroute2.netlink.exceptions import NetlinkError

    from lxpy.net import pr

    class Ipr:
        def __init__(self, code):
            self.code = code

        def link(self, *a, **kw):
            raise NetlinkError(self.code, "nope")

    with pytest.raises(NetworkError, match="this kernel has no bridge support") as e:
        pr.add_link(Ipr(95), "lxpybr9", "bridge")
    assert "modprobe bridge" in e.value.hint
    with pytest.raises(NetlinkError):
        pr.add_link(Ipr(17), "lxpybr9", "bridge")


def test_forward_listeners_match_the_family():
    """/proc/net/tcp{,6} LISTEN sockets: v4 addresses and :: hide a v4 forward; a v6-only
    address does not; udp is not looked at."""
    import socket

    from lxpy.net import forward
    with socket.socket() as s4, socket.socket(socket.AF_INET6) as s6:
        s4.bind(("127.0.0.1", 0))
        s4.listen()
        p4 = s4.getsockname()[1]
        s6.bind(("::1", 0))
        s6.listen()
        p6 = s6.getsockname()[1]
        assert forward._listeners("tcp", p4, "", True, False) == [f"127.0.0.1:{p4}"]
        assert forward._listeners("udp", p4, "", True, False) == []
        assert forward._listeners("tcp", p6, "", True, False) == []
        assert forward._listeners("tcp", p6, "", False, True) == [f"[::1]:{p6}"]
        # a listen address: only a socket on that address (or a wildcard) is in the way
        assert forward._listeners("tcp", p4, "127.0.0.1", True, False) == [f"127.0.0.1:{p4}"]
        assert forward._listeners("tcp", p4, "127.0.0.2", True, False) == []

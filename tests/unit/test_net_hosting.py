"""Network for hosting, the parts that need no privileges: rates, the tc commands, the
anti-spoofing rules, the routed/ipvlan/vlan plans and the [[forward]] keys."""

from __future__ import annotations

import pytest

from lxpy.config import validate
from lxpy.config.schema import parse_rate
from lxpy.errors import ConfigError, NetworkError
from lxpy.net import antispoof, pr, tc
from lxpy.net.plan import prepare

from .test_net import sysconf  # noqa: F401 - a fixture (F811 where it is used)


def cfg(*net, forward=()):
    return validate({"net": list(net), "forward": list(forward)}, "test")


@pytest.mark.parametrize("text,bits", [("100mbit", 100_000_000), ("1gbit", 10**9),
                                       ("10mbit", 10**7), ("500kbps", 4_000_000),
                                       ("1.5Mbit", 1_500_000), ("64kbit", 64_000)])
def test_rates(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text", ["100", "100mb", "fast", "1kbit", "-5mbit", 100])
def test_bad_rates_say_what_a_rate_is(text):
    with pytest.raises(ConfigError, match="net.0.egress") as e:
        cfg({"type": "veth", "egress": text})
    assert "\n" not in str(e.value)


def test_tc_commands_shape_both_ways_on_the_host_end():
    lines = tc.commands("lxweb1ab120", ingress=10**7, egress=2 * 10**7)
    ifb = tc.ifb_name("lxweb1ab120")
    assert len(ifb) <= 15 and ifb.startswith("lxb")
    assert lines[0].startswith("qdisc add dev lxweb1ab120 root handle 1: tbf rate 10000000bit")
    assert f"qdisc add dev {ifb} root handle 1: {tc.tbf(2 * 10**7)}" in lines
    assert "qdisc add dev lxweb1ab120 handle ffff: ingress" in lines
    assert lines[-1].endswith(f"mirred egress redirect dev {ifb}")
    assert tc.commands("x", 0, 0) == []
    assert [tc.rate_text(x) for x in (10**7, 1_500_000, 4_000_000_000, 8001)] == [
        "10mbit", "1500kbit", "4gbit", "8001bit"]
    assert tc.commands("x", 10**7, 0) == [f"qdisc add dev x root handle 1: {tc.tbf(10**7)}"]


@pytest.mark.parametrize("kind", ["macvlan", "phys"])
def test_limits_and_filters_need_a_host_end(kind):
    for key, value in (("egress", "10mbit"), ("ipv4_filtering", True)):
        with pytest.raises(ConfigError, match=f"net.0.{key}: only veth and routed"):
            cfg({"type": kind, "link": "eth0", key: value})


def test_antispoof_rules():
    r = antispoof.rules("lxh0", "00:16:3e:00:00:05", ["10.0.3.5"], ["fd00::5", "fe80::1"])
    assert "ether saddr != 00:16:3e:00:00:05 counter drop" in r
    assert "ether type ip ip saddr != { 10.0.3.5 } counter drop" in r
    assert "ether type arp arp saddr ip != { 0.0.0.0, 10.0.3.5 } counter drop" in r
    assert "ether type ip6 ip6 saddr != { fd00::5, fe80::1 } counter drop" in r
    assert r[-1] == ("ether type ip6 icmpv6 type nd-neighbor-advert @th,64,128 != "
                     "{ 0xfd000000000000000000000000000005, "
                     "0xfe800000000000000000000000000001 } counter drop")
    assert r[0] == "ether type { 8021q, 8021ad } counter drop"
    # an IPv4 filter without an address drops all IPv4; dhcp lets the DISCOVER out
    none = antispoof.rules("lxh0", "00:16:3e:00:00:05", [], None, dhcp=True)
    assert "ether type ip counter drop" in none and not any("ip6" in x for x in none)
    assert any("udp dport 67 accept" in x for x in none)
    assert antispoof.link_local("00:16:3e:aa:bb:cc") == "fe80::216:3eff:feaa:bbcc"
    rs = antispoof.ruleset("lxh0", r)
    assert 'type filter hook ingress device "lxh0" priority -500' in rs
    assert antispoof.table_name("lx.a:b") == "lxpy-filter-lx_a_b"


def test_plan_of_filters_and_limits(sysconf, tmp_path):  # noqa: F811
    plan = prepare(cfg({"type": "veth", "ipv4": ["10.66.0.5/24"], "ipv4_filtering": True,
                        "egress": "10mbit", "ingress": "20mbit"}), "c1", tmp_path)
    p = plan.ifaces[0]
    # filtering needs a known MAC: one is made from the container's name when none is set
    assert p.hwaddr and p.mac_filtering and p.ipv4_filtering and not p.ipv6_filtering
    assert (p.egress, p.ingress) == (10**7, 2 * 10**7)
    assert "ingress 20mbit egress 10mbit" in plan.describe()[0]
    assert "filtering mac+ipv4" in plan.describe()[0]
    rules = antispoof.for_iface(p)
    assert "ether type ip ip saddr != { 10.66.0.5 } counter drop" in rules
    assert antispoof.for_iface(prepare(cfg({"type": "veth"}), "c2", tmp_path).ifaces[0]) == []


def test_ipv4_filtering_with_dhcp_needs_the_reserved_address():
    with pytest.raises(ConfigError, match="reserved lease"):
        cfg({"type": "veth", "dhcp": True, "ipv4_filtering": True})


def test_routed_plan(sysconf, tmp_path):  # noqa: F811
    plan = prepare(cfg({"type": "routed", "link": "lo", "ipv4": ["192.0.2.50/32"],
                        "ipv6": ["2001:db8::50/128"]}), "r1", tmp_path)
    p = plan.ifaces[0]
    assert p.host_name.startswith("lx") and p.tmp_name.startswith("lxt")
    assert (p.gateway4, p.gateway6, p.onlink) == ("169.254.0.1", "fe80::1", True)
    assert "host end" in plan.describe()[0]


@pytest.mark.parametrize("entry,match", [
    ({"type": "routed"}, "needs ipv4 or ipv6"),
    ({"type": "routed", "ipv4": ["192.0.2.50/24"]}, "single address"),
    ({"type": "routed", "ipv4": ["192.0.2.50/32"], "dhcp": True}, "static addresses only"),
    ({"type": "vlan", "link": "eth0"}, "VLAN id"),
    ({"type": "veth", "vlan": 5}, "only a vlan interface"),
    ({"type": "ipvlan"}, "needs the host device"),
])
def test_bad_entries_of_the_new_types(entry, match):
    with pytest.raises(ConfigError, match=match):
        cfg(entry)


def test_routed_gateway_and_link_are_checked(sysconf, tmp_path):  # noqa: F811
    with pytest.raises(NetworkError, match="gateway is the host end"):
        prepare(cfg({"type": "routed", "ipv4": ["192.0.2.5/32"], "gateway4": "192.0.2.1"}),
                "r1", tmp_path)
    with pytest.raises(NetworkError, match="'nosuch0' does not exist"):
        prepare(cfg({"type": "routed", "link": "nosuch0", "ipv4": ["192.0.2.5/32"]}), "r1",
                tmp_path)


def test_ipvlan_and_vlan_plans(sysconf, tmp_path):  # noqa: F811
    plan = prepare(cfg({"type": "ipvlan", "link": "lo", "ipv4": ["192.0.2.7/24"]},
                       {"type": "vlan", "link": "lo", "vlan": 42, "name": "eth1"}), "v1",
                   tmp_path)
    iv, vl = plan.ifaces
    assert (iv.mode, iv.tmp_name[:3], iv.host_name) == ("l3s", "lxt", "")
    assert (vl.vlan, vl.link) == (42, "lo")
    with pytest.raises(NetworkError, match="has its parent's MAC"):
        prepare(cfg({"type": "ipvlan", "link": "lo", "hwaddr": "00:16:3e:00:00:01"}), "v2",
                tmp_path)
    with pytest.raises(NetworkError, match="'nosuch0' does not exist"):
        prepare(cfg({"type": "vlan", "link": "nosuch0", "vlan": 3}), "v3", tmp_path)


def test_a_missing_link_kind_names_its_kernel_module():
    class Ipr:
        def link(self, *a, **kw):
            e = Exception("not supported")
            e.code = 95
            raise e
    with pytest.raises(NetworkError, match=r"no vlan support \(kernel module 8021q\)") as e:
        pr.add_link(Ipr(), "lxt0", "vlan", vlan_id=3)
    assert "modprobe 8021q" in e.value.hint and "CONFIG_VLAN_8021Q" in e.value.hint
    with pytest.raises(NetworkError, match=r"kernel module ipvlan") as e:
        pr.add_link(Ipr(), "lxt0", "ipvlan")
    assert "CONFIG_IPVLAN" in e.value.hint


def test_forward_entries(sysconf, tmp_path):  # noqa: F811
    net = {"type": "veth", "ipv4": ["10.66.0.5/24"]}
    c = cfg(net, forward=[{"proto": "tcp", "listen": "127.0.0.1:8080", "port": 80},
                          {"listen": 8443}])
    assert c.forward[0].listen == "127.0.0.1:8080" and c.forward[1].proto == "tcp"
    plan = prepare(c, "f1", tmp_path)
    a, b = plan.forwards
    assert (a.addr, a.host_port, a.port) == ("127.0.0.1", 8080, 80)
    assert (b.addr, b.host_port, b.port) == ("", 8443, 8443)
    assert "forward tcp 127.0.0.1:8080 -> 10.66.0.5 port 80" in plan.describe()


@pytest.mark.parametrize("fwd,match", [
    ({"listen": "8080", "proto": "sctp"}, "not one of"),
    ({"listen": "localhost:80"}, "not an IPv4 address"),
    ({"listen": "70000"}, "not a port"),
    ({"port": 80}, "say which host port"),
    ({"listen": 80, "port": 0}, "not a port"),
    ({"listen": 80, "prot": "tcp"}, "did you mean forward.0.proto"),
])
def test_bad_forward_entries(fwd, match):
    with pytest.raises(ConfigError, match=match):
        cfg({"type": "veth", "ipv4": ["10.66.0.5/24"]}, forward=[fwd])


def test_forward_entries_need_an_address_and_no_twins():
    with pytest.raises(ConfigError, match="needs an interface with a fixed address"):
        cfg({"type": "veth", "dhcp": True}, forward=[{"listen": 80}])
    with pytest.raises(ConfigError, match="also forward.0"):
        cfg({"type": "veth", "ipv4": ["10.66.0.5/24"]},
            forward=[{"listen": 80}, {"listen": "80", "port": 81}])

"""lxpy-net: the managed bridge (DHCP, DNS, NAT) and port forwards."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

from lxpy.container import Container, check_name
from lxpy.errors import NetworkError, UsageError
from lxpy.net import bridge, forward
from lxpy.net.setup import cleanup_stale
from lxpy.paths import default_lxpath
from lxpy.status import addresses, state_of

HELP = "Manage lxpy's bridge (DHCP, DNS, NAT) and port forwards to containers."
EPILOG = """commands:
  start                         bridge + dnsmasq + NAT, as set in /etc/lxpy/lxpy.toml [net]
  stop [--force]                remove what start made (--force: even under running containers)
  status [--format json]        bridge, addresses, leases, NAT rules, forwards
  forward add NAME tcp|udp HOSTPORT:PORT
  forward list [--format json]
  forward remove NAME tcp|udp HOSTPORT[:PORT]
  cleanup                       undo what killed containers left (phys devices, forwards)
"""
TAKES_NAME = False


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    sub.add_parser("start", help="start the managed bridge (idempotent)")
    st = sub.add_parser("stop", help="stop it, removing what start made")
    st.add_argument("--force", action="store_true",
                    help="stop even while running containers are attached")
    s = sub.add_parser("status", help="show the bridge, leases, NAT rules and forwards")
    s.add_argument("--format", choices=("text", "json"), default="text")
    sub.add_parser("cleanup", help="undo what killed containers left behind")
    f = sub.add_parser("forward", help="publish a container's port on the host")
    fsub = f.add_subparsers(dest="fcmd", metavar="add|list|remove")
    fsub.required = True
    a = fsub.add_parser("add", help="forward HOSTPORT on the host to PORT in container NAME")
    a.add_argument("container", metavar="NAME")
    a.add_argument("proto", choices=("tcp", "udp"))
    a.add_argument("ports", metavar="HOSTPORT:PORT")
    li = fsub.add_parser("list", help="list the forwards")
    li.add_argument("--format", choices=("text", "json"), default="text")
    r = fsub.add_parser("remove", help="remove a forward")
    r.add_argument("container", metavar="NAME")
    r.add_argument("proto", choices=("tcp", "udp"))
    r.add_argument("ports", metavar="HOSTPORT[:PORT]")


def _ports(spec: str, need_both: bool):
    hp, sep, cp = spec.partition(":")
    try:
        h = int(hp)
        c = int(cp) if sep else (None if not need_both else int("x"))
    except ValueError:
        raise UsageError(f"{spec!r} is not HOSTPORT:PORT (like 8080:80)") from None
    for x in (h, c):
        if x is not None and not 1 <= x <= 65535:
            raise UsageError(f"port {x} is out of range (1-65535)")
    return h, c


def _target(name: str, lxpath) -> tuple[str | None, str | None, str]:
    """The container's address to forward to: static (or reserved) in its config,
    else what its running netns has."""
    c = Container(name, lxpath).require()
    cfg = c.config
    v4 = v6 = None
    dev = ""
    for e in cfg.net:
        if e.type in ("empty", "none"):
            continue
        if not v4 and e.ipv4:
            v4 = str(ipaddress.ip_interface(e.ipv4[0]))
            dev = dev or e.link
        if not v6 and e.ipv6:
            v6 = str(ipaddress.ip_interface(e.ipv6[0]))
            dev = dev or e.link
    if not v4 and not v6:
        st = state_of(c)
        for ifname, a in addresses(st.pid).items() if st.pid else []:
            if ifname == "lo":
                continue
            v4 = v4 or next((x for x in a.get("ipv4", [])), None)
            v6 = v6 or next((x for x in a.get("ipv6", []) if not x.startswith("fe80")), None)
        dev = next((e.link for e in cfg.net if e.type == "veth"), "")
    if not v4 and not v6:
        raise NetworkError(f"container {name!r} has no address to forward to",
                           "give it a static net.0.ipv4 (lxpy-config set), or start it "
                           "and let it get a lease")
    return v4, v6, dev


def _print_status(st: dict) -> None:
    state = "up" if st["up"] else "down" if st["exists"] else "absent"
    print(f"Bridge:     {st['bridge']} ({state})")
    print(f"Addresses:  {' '.join(st['addresses']) or '-'}")
    print(f"Subnet:     {st['subnet']}  DHCP {st['dhcp_range']}  domain {st['domain'] or '-'}")
    print(f"dnsmasq:    {st['dnsmasq_pid'] or 'not running'}")
    print(f"Ports:      {' '.join(st['ports']) or '-'}")
    print(f"NAT:        {st['nat_table'] or '-'}")
    for r in st["nat_rules"]:
        print(f"            {r}")
    print("Leases:" + ("" if st["leases"] else "     -"))
    for x in st["leases"]:
        print(f"            {x['ip']:<16} {x['mac']}  {x['hostname'] or '-'}")
    print("Forwards:" + ("" if st["forwards"] else "   -"))
    for f in st["forwards"]:
        print(f"            {_fwd_line(f)}")


def _fwd_line(f: dict) -> str:
    to = " ".join(x for x in (f.get("ipv4"), f"[{f['ipv6']}]" if f.get("ipv6") else None) if x)
    return (f"{f['proto']}/{f['host_port']} -> {f['container']}:{f['port']} ({to}, "
            f"{f.get('owner', 'cli')})")


def run(args) -> int:
    if args.cmd == "start":
        st = bridge.start()
        print(f"{st['bridge']}: {' '.join(st['addresses'])}, dnsmasq {st['dnsmasq_pid']}, "
              f"NAT {st['nat_table']}")
        return 0
    if args.cmd == "stop":
        done = bridge.stop(force=args.force)
        if not done:
            print("lxpy-net: nothing to stop", file=sys.stderr)
        return 0
    if args.cmd == "status":
        st = bridge.status()
        if args.format == "json":
            print(json.dumps(st, indent=2))
        else:
            _print_status(st)
        return 0
    if args.cmd == "cleanup":
        done = cleanup_stale()
        for k, v in done.items():
            for x in v:
                print(f"{k}: {x}")
        return 0
    if args.cmd == "forward":

        lxpath = Path(args.lxpath) if args.lxpath else default_lxpath()
        if args.fcmd == "list":
            recs = forward.list_all()
            if args.format == "json":
                print(json.dumps(recs, indent=2))
            else:
                for f in recs:
                    print(_fwd_line(f))
            return 0
        if args.fcmd == "add":
            check_name(args.container)
            hp, cp = _ports(args.ports, need_both=True)
            v4, v6, dev = _target(args.container, lxpath)
            forward.add(args.container, lxpath, args.proto, hp, cp, v4, v6, dev=dev)
            return 0
        if args.fcmd == "remove":
            check_name(args.container)
            hp, _cp = _ports(args.ports, need_both=False)
            if not forward.remove(args.container, lxpath, args.proto, hp):
                raise NetworkError(f"no forward of {args.proto}/{hp} to container "
                                   f"{args.container!r}", "lxpy-net forward list shows them")
            return 0
    return 2

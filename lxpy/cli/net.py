"""lxpy-net: the managed bridge (DHCP, DNS, NAT) and port forwards."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lxpy.container import Container, check_name
from lxpy.errors import NetworkError, UsageError
from lxpy.net import bridge, forward
from lxpy.net.setup import cleanup_stale
from lxpy.paths import default_lxpath

HELP = "Manage lxpy's bridge (DHCP, DNS, NAT) and port forwards to containers."
EPILOG = """commands:
  start                         bridge + dnsmasq + NAT, as set in /etc/lxpy/lxpy.toml [net]
  stop [--force]                remove what start made (--force: even under running containers)
  status [--format json]        bridge, addresses, leases, NAT rules, forwards, and the
                                anti-spoofing filters with what they dropped
  forward add NAME tcp|udp [ADDR:]HOSTPORT[:PORT]
                                a [[forward]] in NAME's config; live if NAME runs
  forward ls [NAME] [--format json]
  forward rm NAME tcp|udp [ADDR:]HOSTPORT
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
    fsub = f.add_subparsers(dest="fcmd", metavar="add|ls|rm")
    fsub.required = True
    a = fsub.add_parser("add", help="forward [ADDR:]HOSTPORT on the host to PORT in NAME "
                        "(written to NAME's config; applied now if NAME runs)")
    a.add_argument("container", metavar="NAME")
    a.add_argument("proto", choices=("tcp", "udp"))
    a.add_argument("ports", metavar="[ADDR:]HOSTPORT[:PORT]")
    li = fsub.add_parser("ls", aliases=["list"], help="list the forwards of the containers")
    li.add_argument("container", metavar="NAME", nargs="?")
    li.add_argument("--format", choices=("text", "json"), default="text")
    r = fsub.add_parser("rm", aliases=["remove"], help="remove a forward from NAME's config "
                        "(and the host, if NAME runs)")
    r.add_argument("container", metavar="NAME")
    r.add_argument("proto", choices=("tcp", "udp"))
    r.add_argument("ports", metavar="[ADDR:]HOSTPORT")


def _spec(spec: str) -> tuple[str, int]:
    try:
        return forward.parse_spec(spec)
    except ValueError as e:
        raise UsageError(str(e)) from None


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
    print("Filters:" + ("" if st["filters"] else "    -"))
    for f in st["filters"]:
        print(f"            {f['container']} {f['host']}: {f['dropped']} dropped "
              f"(nft list table {f['table']})")


def _fwd_line(f: dict) -> str:
    to = " ".join(x for x in (f.get("ipv4"), f"[{f['ipv6']}]" if f.get("ipv6") else None) if x)
    listen = forward.listen_text(f.get("addr") or "", f["host_port"])
    return f"{f['proto']} {listen} -> {f['container']}:{f['port']} ({to})"


def _forwards(lxpath: Path, name: str | None) -> list[dict]:
    out = []
    for c, e, live in forward.configured(lxpath):
        if name in (None, c):
            addr, hp = forward.split_listen(e.listen)
            out.append({"container": c, "proto": e.proto, "listen": str(e.listen),
                        "addr": addr, "host_port": hp, "port": e.port or hp, "active": live})
    return out


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
        if args.fcmd in ("ls", "list"):
            if args.container:
                Container(check_name(args.container), lxpath).require()
            rows = _forwards(lxpath, args.container)
            if args.format == "json":
                print(json.dumps(rows, indent=2))
            for f in rows if args.format == "text" else ():
                print(f"{f['container']:<16} {f['proto']} {f['listen']:<22} -> port "
                      f"{f['port']}{'' if f['active'] else '  (not running)'}")
            return 0
        listen, port = _spec(args.ports)
        c = Container(check_name(args.container), lxpath).require()
        if args.fcmd == "add":
            forward.config_add(c, args.proto, listen, port, forward.running_record(c))
            return 0
        if not forward.config_remove(c, args.proto, listen):
            raise NetworkError(f"container {c.name!r} has no forward of {args.proto} {listen}",
                               f"lxpy-net forward ls {c.name} shows them")
        return 0
    return 2

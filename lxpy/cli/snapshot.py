"""lxpy-snapshot: make, list, restore and destroy snapshots of a container."""

from __future__ import annotations

import json
import signal
import time

from lxpy.container import Container, check_name
from lxpy.errors import UsageError
from lxpy.lifecycle import snapshot as snap

HELP = "Snapshot a container (snaps/snapN), list, restore (in place or to a new name), destroy."
EPILOG = """examples:
  lxpy-snapshot -n web2 -c "before upgrade"   make snap0 (then snap1...)
  lxpy-snapshot -n web2 -L -C                 list with times and comments
  lxpy-snapshot -n web2 -r snap0              restore in place (container stopped)
  lxpy-snapshot -n web2 -r snap0 -N web2old   restore into a new container
  lxpy-snapshot -n web2 -d snap0              destroy one (or -d ALL)"""


def add_arguments(p) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-L", "--list", action="store_true", help="list the snapshots")
    g.add_argument("-r", "--restore", metavar="SNAP", help="restore snapshot SNAP")
    g.add_argument("-d", "--destroy", metavar="SNAP", help="destroy SNAP (ALL: all of them)")
    p.add_argument("-c", "--comment", help="a comment kept with the new snapshot")
    p.add_argument("-C", "--showcomments", action="store_true", help="-L: show comments")
    p.add_argument("-N", "--newname", help="-r: restore into a new container of that name")
    p.add_argument("--format", choices=("text", "json"), default="text", help="-L output")
    p.add_argument("-q", "--quiet", action="store_true")


def run(args) -> int:
    c = Container(args.name, args.lxpath).require()

    for sig in (signal.SIGTERM, signal.SIGHUP):  # clean up as for Ctrl-C (temp dirs go)
        signal.signal(sig, signal.default_int_handler)
    if args.extra:
        raise UsageError("lxpy-snapshot takes nothing after --")
    if args.newname and not args.restore:
        raise UsageError("-N goes with -r SNAP (restore into a new container)")
    if args.comment is not None and (args.list or args.restore or args.destroy):
        raise UsageError("-c goes with making a snapshot, not with -L, -r or -d")
    if args.list:
        snaps = snap.list_snapshots(c)
        if args.format == "json":
            print(json.dumps([s.as_dict() for s in snaps], indent=2))
            return 0
        for s in snaps:
            when = time.strftime("%Y:%m:%d %H:%M:%S", time.localtime(s.time))
            print(f"{s.name} ({s.path}) {when}")
            if args.showcomments and s.comment:
                print(f"    {s.comment}")
        if not snaps and not args.quiet:
            print("No snapshots")
        return 0
    if args.restore:
        if args.newname:
            check_name(args.newname)
        dst = snap.restore_snapshot(c, args.restore, args.newname)
        if not args.quiet:
            print(f"restored {args.restore} of {c.name}"
                  + (f" as {dst.name}" if args.newname else ""))
        return 0
    if args.destroy:
        gone = snap.destroy_snapshot(c, args.destroy)
        if not args.quiet:
            print(f"destroyed {', '.join(gone) or 'no snapshots'} of {c.name}")
        return 0
    s = snap.create_snapshot(c, args.comment or "")
    if not args.quiet:
        print(f"made {s.name} of {c.name}")
    return 0

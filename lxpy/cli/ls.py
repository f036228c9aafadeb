"""lxpy-ls: list containers."""

from __future__ import annotations

import json
import re
import sys

from lxpy.container import Container
from lxpy.errors import LxpyError, UsageError
from lxpy.status import listing_row

HELP = "List the containers of an lxpath."
TAKES_NAME = False
EPILOG = """examples:
  lxpy-ls                 names
  lxpy-ls -f              NAME STATE AUTOSTART GROUPS IPV4 IPV6 PRIVILEGED
  lxpy-ls --running -1    running ones, one per line
  lxpy-ls --format json"""


def add_arguments(p) -> None:
    p.add_argument("-f", "--fancy", action="store_true", help="a table with state and addresses")
    p.add_argument("-1", "--line", action="store_true", help="one name per line")
    p.add_argument("--running", action="store_true", help="only running containers")
    p.add_argument("--stopped", action="store_true", help="only stopped containers")
    p.add_argument("--frozen", action="store_true", help="only frozen containers")
    p.add_argument("-g", "--groups", help="only containers in these autostart groups (a,b)")
    p.add_argument("--filter", metavar="REGEX", help="only names matching REGEX")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("filter_pos", nargs="?", metavar="FILTER", help="same as --filter")


def run(args) -> int:
    pattern = args.filter or args.filter_pos
    try:
        rx = re.compile(pattern) if pattern else None
    except re.error as e:
        raise UsageError(f"--filter {pattern!r}: not a regular expression ({e})") from None
    groups = set(args.groups.split(",")) if args.groups else None
    fancy = args.fancy or args.format == "json" or groups is not None
    rows = []
    for c in Container.all(args.lxpath):
        if rx and not rx.search(c.name):
            continue
        try:
            row = listing_row(c, fancy)
        except LxpyError as e:
            row = {"name": c.name, "state": "BROKEN", "autostart": False, "groups": [],
                   "ipv4": [], "ipv6": [], "privileged": None, "pid": None, "error": str(e)}
        if args.running and row["state"] not in ("RUNNING", "FROZEN", "FREEZING", "STARTING",
                                                  "STOPPING"):
            continue
        if args.stopped and row["state"] != "STOPPED":
            continue
        if args.frozen and row["state"] != "FROZEN":
            continue
        if groups is not None and not (groups & set(row["groups"] or [""])):
            continue
        rows.append(row)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    if args.fancy:
        cols = ["NAME", "STATE", "AUTOSTART", "GROUPS", "IPV4", "IPV6", "PRIVILEGED"]
        table = [[r["name"], r["state"], "1" if r["autostart"] else "0",
                  ",".join(r["groups"]) or "-", ", ".join(r["ipv4"]) or "-",
                  ", ".join(r["ipv6"]) or "-", {True: "yes", False: "no"}.get(r["privileged"], "-")]
                 for r in rows]
        widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
        for line in [cols] + table:
            print(" ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        return 0
    names = [r["name"] for r in rows]
    if args.line or not sys.stdout.isatty():
        for n in names:
            print(n)
    elif names:
        print("  ".join(names))
    return 0

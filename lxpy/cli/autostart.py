"""lxpy-autostart: start/stop/reboot/kill the auto-started containers, in order, with delays."""

from __future__ import annotations

import json
import logging
import sys

from lxpy import autostart
from lxpy.errors import UsageError

HELP = "Start, stop, reboot or kill the auto-started containers in order (as lxc-autostart)."
TAKES_NAME = False
EPILOG = """Without -s, -r or -k the selected containers are started (those not running yet),
in ascending autostart.order (then name); after each, its autostart.delay seconds pass
before the next one starts. -s and -k go in the reverse order. Only containers with
autostart.enabled = true are selected (-A: all); without -g or -a only those in no group.

examples:
  lxpy-autostart -L                 what would start, "NAME DELAY" per line
  lxpy-autostart -a                 start every autostart container (lxpy.service does this)
  lxpy-autostart -g web             start group web; -g ,web: also the containers in no group
  lxpy-autostart -a -s -t 30        clean stop in reverse order, killed after 30 s
  lxpy-autostart -a -A -k           kill every running container

exit status: 0 all done, 1 some container failed (each failure is reported)."""


def add_arguments(p) -> None:
    act = p.add_mutually_exclusive_group()
    act.add_argument("-s", "--shutdown", action="store_true",
                     help="cleanly stop the running containers, in reverse order")
    act.add_argument("-r", "--reboot", action="store_true", help="reboot the running containers")
    act.add_argument("-k", "--kill", action="store_true",
                     help="kill the running containers, in reverse order")
    p.add_argument("-L", "--list", action="store_true",
                   help="only list the containers affected (and the delays), do nothing")
    p.add_argument("-a", "--all", action="store_true",
                   help="every autostart container, whatever its groups")
    p.add_argument("-A", "--ignore-auto", action="store_true",
                   help="ignore autostart.enabled: select every matching container")
    p.add_argument("-g", "--groups", action="append", metavar="GROUPS",
                   help="comma list of groups, processed in order; an empty name is the "
                        "unnamed group (-g ,web); may be repeated")
    p.add_argument("-t", "--timeout", type=int, metavar="SECONDS",
                   help="for -s and -r: wait this long for a clean stop, then kill "
                        "(default: each container's init.stop_timeout)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="-L output format")


def run(args) -> int:
    log = logging.getLogger("lxpy.autostart")
    if args.timeout is not None and args.timeout < 0:
        raise UsageError(f"-t {args.timeout}: the timeout is 0 or more seconds")
    action = ("stop" if args.shutdown else "reboot" if args.reboot
              else "kill" if args.kill else "start")
    groups = autostart.parse_groups(args.groups)
    if args.all and groups is not None:
        raise UsageError("-a selects every group; give -a or -g, not both")
    entries = autostart.entries(args.lxpath)
    for e in entries:
        if e.error:
            log.warning("%s: skipped, its config is broken: %s", e.name, e.error)
    todo = autostart.plan(entries, action, all_groups=args.all, ignore_auto=args.ignore_auto,
                          groups=groups)
    if args.list:
        rows = [e for e in todo
                if autostart.acts_on(action, autostart.is_running(e.name, args.lxpath))]
        if args.format == "json":
            json.dump([{"name": e.name, "order": e.order, "delay": e.delay,
                        "groups": list(e.groups), "enabled": e.enabled} for e in rows],
                      sys.stdout, indent=2)
            print()
        else:
            for e in rows:
                print(autostart.list_line(e, action), flush=True)
        return 0
    runner = autostart.Runner(args.lxpath, timeout=args.timeout)
    results = autostart.execute(todo, action, runner)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"lxpy-autostart: {len(failed)} of {len(results)} containers failed to {action}: "
              + ", ".join(r.name for r in failed), file=sys.stderr)
        return 1
    return 0

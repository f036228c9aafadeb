"""lxpy-start: start a container (daemonized; -F stays in the foreground)."""

from __future__ import annotations

import sys

from lxpy.container import Container
from lxpy.errors import UsageError
from lxpy.runtime.start import dry_run, start
from lxpy.runtime.state import query
from lxpy.runtime.wait import NoReadiness, wait

HELP = "Start a container: its init runs in its own namespaces and cgroup, under a monitor."
EPILOG = """examples:
  lxpy-start -n web1          returns once init runs (or says why it could not)
  lxpy-start -F -n web1       stay in the foreground (systemd units, debugging)
  lxpy-start -w web1          return once the guest's systemd has finished booting
                              (READY=1; an init that does not report: once it runs)
  lxpy-start -w -t 60 web1    the same, giving up (exit 1) after 60 s
  lxpy-start --dry-run web1   print the start plan (namespaces, id map, cgroup, mounts,
                              init, security); start nothing"""


def add_arguments(p) -> None:
    p.add_argument("-F", "--foreground", action="store_true",
                   help="stay in the foreground; exit when the container stops")
    p.add_argument("-d", "--daemon", action="store_true",
                   help="daemonize (the default; for LXC compatibility)")
    p.add_argument("-w", "--wait-ready", action="store_true",
                   help="return once the guest's systemd reports it finished booting "
                   "(READY=1); an init that does not report: once it runs")
    p.add_argument("-t", "--timeout", type=float, default=None, metavar="SECONDS",
                   help="with -w: wait at most this long (default: no limit), then exit 1")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan of the start (namespaces, id map, cgroup, mounts, "
                   "init, security) and start nothing")


def run(args) -> int:
    if args.extra:
        raise UsageError("lxpy-start takes no command after --",
                         "init.cmd in the config sets init; lxpy-execute runs a command")
    c = Container(args.name, args.lxpath)
    if args.dry_run:
        print("\n".join(dry_run(c)))
        return 0
    foreground = args.foreground and not args.daemon
    if args.wait_ready and foreground:
        raise UsageError("-w waits for a daemonized start; it does not go with -F")
    if args.timeout is not None and (not args.wait_ready or args.timeout < 0):
        raise UsageError(f"-t {args.timeout:g}: " + ("the timeout cannot be negative"
                         if args.wait_ready else "-t goes with -w (how long to wait)"))
    code = start(c, foreground=foreground, logfile=args.logfile)
    if not code and args.wait_ready:
        code = _wait_ready(c, args.timeout)
    return code


def _wait_ready(c, seconds: float | None) -> int:

    try:
        if wait(c, {"READY", "STOPPED"}, seconds):
            if query(c).state != "STOPPED":
                return 0
            print(f"lxpy-start: container {c.name!r} stopped before its guest reported ready",
                  file=sys.stderr)
            return 1
    except NoReadiness:
        return 0            # its init does not report readiness: running is all there is
    print(f"lxpy-start: container {c.name!r} started, but its guest did not report ready "
          f"within {seconds:g} s", file=sys.stderr)
    return 1

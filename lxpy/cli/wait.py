"""lxpy-wait: wait for a container to reach a state."""

from __future__ import annotations

import sys

from lxpy.container import Container
from lxpy.runtime.wait import parse_states, wait

HELP = "Wait until a container reaches one of some states (like 'RUNNING|STOPPED')."
EPILOG = """READY: the guest's systemd has finished booting (it sent READY=1 on the notify
socket lxpy gives it, as systemd-nspawn does; what `systemctl is-system-running` reports as
running or degraded). Only a systemd init reports it.
exit status: 0 reached, 1 timed out (or error)
examples:
  lxpy-start -n web1 && lxpy-wait -n web1 -s READY -t 60"""


def add_arguments(p) -> None:
    p.add_argument("-s", "--state", required=True,
                   help="states separated by |: STOPPED STARTING RUNNING STOPPING ABORTING "
                   "FREEZING FROZEN, or READY (the guest's systemd finished booting)")
    p.add_argument("-t", "--timeout", type=float, default=-1, metavar="SECONDS",
                   help="give up after this long (default: wait forever)")


def run(args) -> int:
    states = parse_states(args.state)
    c = Container(args.name, args.lxpath).require()
    if wait(c, states, None if args.timeout < 0 else args.timeout):
        return 0
    print(f"lxpy-wait: container {c.name!r} did not reach {args.state} within "
          f"{args.timeout:g} s", file=sys.stderr)
    return 1

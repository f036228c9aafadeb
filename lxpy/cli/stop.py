"""lxpy-stop: stop a container (clean shutdown through init, then kill)."""

from __future__ import annotations

from lxpy.container import Container
from lxpy.errors import UsageError
from lxpy.runtime.stop import stop

HELP = "Stop a container: the halt signal to init, then, after -t seconds, kill everything."
EPILOG = """exit status: 0 stopped, 1 error, 2 it was not running
examples:
  lxpy-stop -n web1           clean shutdown, wait up to init.stop_timeout (60 s)
  lxpy-stop -n web1 -t 10     wait 10 s, then kill
  lxpy-stop -n web1 -k        kill at once
  lxpy-stop -n web1 -r        reboot"""


def add_arguments(p) -> None:
    p.add_argument("-t", "--timeout", type=float, default=None, metavar="SECONDS",
                   help="wait this long for a clean shutdown before killing "
                   "(default: init.stop_timeout)")
    p.add_argument("-k", "--kill", action="store_true", help="kill at once")
    p.add_argument("-r", "--reboot", action="store_true", help="reboot the container")
    p.add_argument("-W", "--nowait", action="store_true", help="do not wait for the stop")


def run(args) -> int:
    if args.reboot and args.kill:
        raise UsageError("-r and -k do not go together")
    if args.timeout is not None and args.timeout < 0:
        raise UsageError(f"-t {args.timeout:g}: the timeout cannot be negative")
    c = Container(args.name, args.lxpath).require()
    stop(c, timeout=args.timeout, kill=args.kill, wait=not args.nowait, reboot=args.reboot)
    return 0

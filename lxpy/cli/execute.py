"""lxpy-execute: run a command as an application container."""

from __future__ import annotations

from lxpy.container import Container
from lxpy.errors import UsageError
from lxpy.runtime.start import start

HELP = ("Run a command in a container as an application container: a minimal init runs it, "
        "reaps, and passes its exit status.")
EPILOG = """example:
  lxpy-execute -n bb -- /bin/sh -c 'exit 3'     exits 3"""


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    if not args.extra:
        raise UsageError("which command? give it after --, like lxpy-execute -n NAME -- "
                         "/bin/sh -c 'echo hi'")
    c = Container(args.name, args.lxpath)
    return start(c, app_cmd=list(args.extra), logfile=args.logfile)

"""lxpy-console: attach to a container's console or one of its ttys."""

from __future__ import annotations

from lxpy.container import Container
from lxpy.errors import UsageError
from lxpy.runtime.console import console

HELP = "Attach to a running container's console (or tty N); Ctrl-a q detaches."


def add_arguments(p) -> None:
    p.add_argument("-t", "--tty", type=int, default=0, metavar="N",
                   help="tty number (0, the default, is the console)")
    p.add_argument("-e", "--escape", default="a", metavar="KEY",
                   help="escape key, with Ctrl (default: a, i.e. Ctrl-a)")


def run(args) -> int:
    esc = args.escape.lower()
    if len(esc) != 1 or not ("a" <= esc <= "z"):
        raise UsageError(f"-e {args.escape}: give a letter (the escape is Ctrl plus it)")
    c = Container(args.name, args.lxpath).require()
    return console(c, tty=args.tty, escape=ord(esc) - ord("a") + 1)

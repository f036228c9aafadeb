"""Command-line entry points. The only place that prints errors and picks exit statuses.

Each command is a module lxpy.cli.<verb> with:
    HELP: str                       one-line description
    TAKES_NAME: bool = True         -n NAME (or NAME as the first positional)
    def add_arguments(parser)       its own options
    def run(args) -> int            the work; raise lxpy.errors.* for expected failures
Arguments after "--" arrive as args.extra (a list). The console scripts ([project.scripts] in
pyproject.toml) are `lxpy` (umbrella) and `lxpy-<verb>` (scripts.<verb>); both return the
exit status, and run the verb through _run.run_command.
"""

from __future__ import annotations

import difflib
import sys
from functools import partial
from types import SimpleNamespace

from lxpy import __version__

from ._run import run_command

COMMANDS = {
    "create": "lxpy.cli.create",
    "destroy": "lxpy.cli.destroy",
    "ls": "lxpy.cli.ls",
    "info": "lxpy.cli.info",
    "config": "lxpy.cli.config",
    "checkconfig": "lxpy.cli.checkconfig",
    "start": "lxpy.cli.start",
    "stop": "lxpy.cli.stop",
    "attach": "lxpy.cli.attach",
    "execute": "lxpy.cli.execute",
    "console": "lxpy.cli.console",
    "wait": "lxpy.cli.wait",
    "cgroup": "lxpy.cli.cgroup",
    "freeze": "lxpy.cli.freeze",
    "unfreeze": "lxpy.cli.unfreeze",
    "copy": "lxpy.cli.copy",
    "snapshot": "lxpy.cli.snapshot",
    "autostart": "lxpy.cli.autostart",
    "net": "lxpy.cli.net",
    "storage": "lxpy.cli.storage",
}


def main(verb: str, argv: list[str] | None = None) -> int:
    return run_command(verb, COMMANDS, sys.argv[1:] if argv is None else argv)


# lxpy-<verb> = "lxpy.cli:scripts.<verb>" (a namespace, not module attributes: importing the
# submodule lxpy.cli.<verb> would overwrite an attribute of that name)
scripts = SimpleNamespace(**{verb: partial(main, verb) for verb in COMMANDS})


def umbrella() -> int:
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lxpy <command> [options]\n\ncommands:\n  " +
              "\n  ".join(sorted(COMMANDS)) +
              "\n\n'lxpy <command> -h' (or lxpy-<command> -h) tells more.")
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"lxpy {__version__}")
        return 0
    verb = argv[0]
    if verb not in COMMANDS:
        near = difflib.get_close_matches(verb, COMMANDS, 1)
        print(f"lxpy: {verb!r} is not a command" + (f" (did you mean {near[0]}?)" if near else
              "; 'lxpy --help' lists them"), file=sys.stderr)
        return 2
    return main(verb, argv[1:])

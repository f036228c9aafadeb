"""Command-line entry points. The only place that prints errors and picks exit statuses.

Each command is a module lxpy.cli.<verb> with:
    HELP: str                       one-line description
    TAKES_NAME: bool = True         -n NAME (or NAME as the first positional)
    def add_arguments(parser)       its own options
    def run(args) -> int            the work; raise lxpy.errors.* for expected failures
Arguments after "--" arrive as args.extra (a list). Modules are imported lazily, so each
lxpy-<verb> loads only what it needs.
"""

from __future__ import annotations

import sys

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
}


# Commands called in loops by scripts: their module's fast_main(argv) is tried first (no
# argparse/logging imports); it returns None to hand over to the usual path.
FAST = {"attach", "stop"}


# Commands whose work is over when run() returns: no thread left running, no temporary
# files or atexit work of their own. As processes they leave with os._exit once stdout and
# stderr are flushed, skipping the interpreter's teardown of every module it loaded (~5 ms
# and more; lxpy-attach is called in loops, lxpy-ls / lxpy-info by scripts and monitoring,
# lxpy-copy by scripts that make clones).
QUICK_EXIT = {"attach", "ls", "info", "copy", "stop"}


def main(verb: str, argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if verb in FAST:
        import importlib  # (also loads warnings, which must not load after setns)
        rc = importlib.import_module(COMMANDS[verb]).fast_main(argv)
        if rc is not None:
            return rc
    from ._run import run_command
    return run_command(verb, COMMANDS, argv)


def command(verb: str) -> None:
    """The installed lxpy-<verb> (bin/): run it, then leave the process."""
    _leave(verb, main(verb))


def _leave(verb: str, rc: int) -> None:
    if verb in QUICK_EXIT and isinstance(rc, int) and 0 <= rc <= 255:
        import os
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:  # the reader went away (| head): quietly, as before
            os._exit(rc)
        except BaseException:  # noqa: BLE001 - the usual exit reports it as before
            sys.exit(rc)
        threading = sys.modules.get("threading")
        if threading is None or threading.active_count() == 1:
            logging = sys.modules.get("logging")
            if logging is not None:
                logging.shutdown()       # what its atexit hook does
            os._exit(rc)
    sys.exit(rc)


def _entry(verb: str):
    def entry() -> None:
        command(verb)
    entry.__name__ = verb
    return entry


def umbrella() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lxpy <command> [options]\n\ncommands:\n  " +
              "\n  ".join(sorted(COMMANDS)) +
              "\n\n'lxpy <command> -h' (or lxpy-<command> -h) tells more.")
        sys.exit(0 if argv else 2)
    if argv[0] == "--version":
        from lxpy import __version__
        print(f"lxpy {__version__}")
        sys.exit(0)
    verb = argv[0]
    if verb not in COMMANDS:
        import difflib
        near = difflib.get_close_matches(verb, COMMANDS, 1)
        print(f"lxpy: {verb!r} is not a command" + (f" (did you mean {near[0]}?)" if near else
              "; 'lxpy --help' lists them"), file=sys.stderr)
        sys.exit(2)
    _leave(verb, main(verb, argv[1:]))


for _verb in COMMANDS:
    globals()[_verb] = _entry(_verb)
del _verb

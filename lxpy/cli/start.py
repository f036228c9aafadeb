"""lxpy-start: start a container (daemonized; -F stays in the foreground)."""

from __future__ import annotations

HELP = "Start a container: its init runs in its own namespaces and cgroup, under a monitor."
EPILOG = """examples:
  lxpy-start -n web1          returns once init runs (or says why it could not)
  lxpy-start -F -n web1       stay in the foreground (systemd units, debugging)"""


def add_arguments(p) -> None:
    p.add_argument("-F", "--foreground", action="store_true",
                   help="stay in the foreground; exit when the container stops")
    p.add_argument("-d", "--daemon", action="store_true",
                   help="daemonize (the default; for LXC compatibility)")


def run(args) -> int:
    from lxpy.container import Container
    from lxpy.runtime.start import start
    if args.extra:
        from lxpy.errors import UsageError
        raise UsageError("lxpy-start takes no command after --",
                         "init.cmd in the config sets init; lxpy-execute runs a command")
    c = Container(args.name, args.lxpath)
    status = start(c, foreground=args.foreground and not args.daemon, logfile=args.logfile)
    _leave(status)
    return status


def _leave(status: int) -> None:
    """Exit now that init runs, without the interpreter's teardown (~20-30 ms of freeing
    the modules and objects that the process exit frees anyway): what needs flushing is
    stdio and the log handlers, and nothing else registers exit handlers here."""
    import logging
    import os
    import sys
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(status)

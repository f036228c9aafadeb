"""lxpy-stop: stop a container (clean shutdown through init, then kill)."""

from __future__ import annotations

HELP = "Stop a container: the halt signal to init, then, after -t seconds, kill everything."
EPILOG = """exit status: 0 stopped, 1 error, 2 it was not running
examples:
  lxpy-stop -n web1           clean shutdown, wait up to init.stop_timeout (60 s)
  lxpy-stop -n web1 -t 10     wait 10 s, then kill
  lxpy-stop -n web1 -k        kill at once
  lxpy-stop -n web1 -r        reboot"""

# lxpy.cli._run.fast_args: the plain forms without argparse (scripts stop in loops)
FAST_OPTIONS = {
    "-t": ("timeout", True, float), "--timeout": ("timeout", True, float),
    "-k": ("kill", False, None), "--kill": ("kill", False, None),
    "-r": ("reboot", False, None), "--reboot": ("reboot", False, None),
    "-W": ("nowait", False, None), "--nowait": ("nowait", False, None),
}
FAST_DEFAULTS = {"timeout": None, "kill": False, "reboot": False, "nowait": False}
FAST_POSITIONAL = "name_pos"


def add_arguments(p) -> None:
    p.add_argument("-t", "--timeout", type=float, default=None, metavar="SECONDS",
                   help="wait this long for a clean shutdown before killing "
                   "(default: init.stop_timeout)")
    p.add_argument("-k", "--kill", action="store_true", help="kill at once")
    p.add_argument("-r", "--reboot", action="store_true", help="reboot the container")
    p.add_argument("-W", "--nowait", action="store_true", help="do not wait for the stop")


def fast_main(argv: list[str]) -> int | None:
    """The usual stop (a running container, a live monitor, plain options) without the
    container layer and the command wrapper's imports; None: the usual path."""
    import os
    import sys

    from lxpy.container import name_ok
    from lxpy.paths import default_lxpath
    from lxpy.paths import run_dir as run_dir_of

    from ._run import _split_extra, fast_args
    own, extra = _split_extra(argv)
    args = fast_args(sys.modules[__name__], own, extra)
    if args is None or args.debug or args.logfile or args.logpriority:
        return None
    name = args.name        # fast_args took -n NAME or NAME (and refused both)
    if not name or not name_ok(name) or (args.reboot and args.kill) \
            or (args.timeout is not None and args.timeout < 0):
        return None
    lxpath = args.lxpath or str(default_lxpath())
    if lxpath is None or not os.path.isfile(os.path.join(lxpath, name, "config.toml")):
        return None
    from lxpy.errors import LxpyError
    from lxpy.runtime.stop import stop_running
    try:
        done = stop_running(name, run_dir_of(lxpath, name), timeout=args.timeout,
                            kill=args.kill, wait=not args.nowait, reboot=args.reboot)
    except LxpyError as e:
        print(f"lxpy-stop: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("lxpy-stop: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"lxpy-stop: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0 if done else None


def run(args) -> int:
    from lxpy.container import Container
    from lxpy.errors import UsageError
    from lxpy.runtime.stop import stop
    if args.reboot and args.kill:
        raise UsageError("-r and -k do not go together")
    if args.timeout is not None and args.timeout < 0:
        raise UsageError(f"-t {args.timeout:g}: the timeout cannot be negative")
    c = Container(args.name, args.lxpath).require()
    stop(c, timeout=args.timeout, kill=args.kill, wait=not args.nowait, reboot=args.reboot)
    return 0

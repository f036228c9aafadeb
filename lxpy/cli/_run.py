"""The one wrapper around every command: arguments, logging, errors -> exit status."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from lxpy import __version__
from lxpy.container import check_name
from lxpy.errors import LxpyError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: {message} (see {self.prog} -h)\n")


def _split_extra(argv: list[str]) -> tuple[list[str], list[str] | None]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, None


def build_parser(verb: str, mod) -> argparse.ArgumentParser:
    p = _Parser(prog=f"lxpy-{verb}", description=getattr(mod, "HELP", None),
                epilog=getattr(mod, "EPILOG", None),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("common options")
    if getattr(mod, "TAKES_NAME", True):
        g.add_argument("-n", "--name", help="container name (or give it as the first argument)")
    g.add_argument("-P", "--lxpath", help="container path (default: /var/lib/lxpy, or LXPY_PATH)")
    g.add_argument("-l", "--logpriority", metavar="LEVEL", default=None,
                   help="log level: DEBUG, INFO, WARNING, ERROR")
    g.add_argument("-o", "--logfile", metavar="FILE", help="also log to FILE")
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    g.add_argument("--version", action="version", version=f"lxpy {__version__}")
    mod.add_arguments(p)
    if getattr(mod, "TAKES_NAME", True) and getattr(mod, "NAME_POSITIONAL", True):
        p.add_argument("name_pos", nargs="?", metavar="NAME", help=argparse.SUPPRESS)
    return p


def setup_logging(args) -> None:
    level_name = (args.logpriority or ("DEBUG" if args.debug else "WARNING")).upper()
    level = getattr(logging, level_name, None)
    if not isinstance(level, int):
        raise UsageError(f"-l {args.logpriority}: not a log level",
                         "use DEBUG, INFO, WARNING or ERROR")
    root = logging.getLogger("lxpy")
    root.setLevel(min(level, logging.INFO) if args.logfile else level)
    h = logging.StreamHandler(sys.stderr)
    h.setLevel(level)
    prog = os.path.basename(sys.argv[0])
    h.setFormatter(logging.Formatter(f"{prog}: %(levelname)s: %(message)s"))
    root.addHandler(h)
    if args.logfile:
        fh = logging.FileHandler(args.logfile)
        fh.setLevel(min(level, logging.INFO))
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        root.addHandler(fh)


def _parse(verb: str, mod, own: list[str], extra: list[str] | None):
    """argparse: the arguments, or an exit status (pre_parse handled it)."""
    parser = build_parser(verb, mod)
    pre = getattr(mod, "pre_parse", None)
    if pre is not None:
        status = pre(parser, own, extra)
        if status is not None:
            return status
    args = parser.parse_args(own)
    args.extra = extra
    if getattr(mod, "TAKES_NAME", True):
        pos = getattr(args, "name_pos", None)
        if args.name and pos:
            parser.error(f"give the name once: -n {args.name} or {pos}, not both")
        args.name = args.name if args.name is not None else pos
        if getattr(mod, "NAME_REQUIRED", True) and args.name is None:
            parser.error("which container? give -n NAME")
        if args.name is not None:
            check_name(args.name)
    return args


def run_command(verb: str, commands: dict[str, str], argv: list[str]) -> int:
    prog = f"lxpy-{verb}"
    debug = "--debug" in argv
    try:
        mod = importlib.import_module(commands[verb])
        args = _parse(verb, mod, *_split_extra(argv))
        if isinstance(args, int):
            return args
        setup_logging(args)
        status = int(mod.run(args) or 0)
        sys.stdout.flush()          # a reader that went away (| head) shows here, not at exit
        return status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:     # quietly
        return 1
    except (LxpyError, OSError) as e:
        if debug:
            logging.getLogger("lxpy").exception("%s", e)
        if isinstance(e, LxpyError):
            print(f"{prog}: {e}", file=sys.stderr)
            return e.exit_status
        where = f": {e.filename}" if e.filename else ""
        print(f"{prog}: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except Exception as e:
        if debug:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} (rerun with --debug for a "
              "traceback, and report it)", file=sys.stderr)
        return 1

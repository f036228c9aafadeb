"""The one wrapper around every command: arguments, logging, errors -> exit status."""

from __future__ import annotations

import os
import sys


def _parser_class():
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # one line, exit 2
            self.exit(2, f"{self.prog}: {message} (see {self.prog} -h)\n")
    return _Parser


_COMMON_VALUES = {"-n": "name", "--name": "name", "-P": "lxpath", "--lxpath": "lxpath"}


def fast_args(mod, own: list[str], extra: list[str] | None):
    """The arguments of a command that declares FAST_OPTIONS, parsed without argparse (its
    import, gettext lookups and formatters cost ~6 ms), when they are plain: only its own
    options and -n/-P, each as its own word, values not starting with '-', at most one
    positional. None for anything else (-h, --version, -l, -o, --debug, -- ..., --opt=value,
    abbreviations, mistakes): argparse handles it, with its usual help and errors.
    What follows -- is the command's (args.extra) only for a command that sets FAST_EXTRA.
    FAST_OPTIONS maps an option to (dest, takes a value, choices or a converter such as
    float, or None); FAST_DEFAULTS gives
    every dest's default; FAST_POSITIONAL names the positional's dest ("name_pos" for a
    command that takes the container name)."""
    spec = getattr(mod, "FAST_OPTIONS", None)
    if spec is None or (extra is not None and not getattr(mod, "FAST_EXTRA", False)):
        return None
    takes_name = getattr(mod, "TAKES_NAME", True)
    values: dict = {"lxpath": None, "logpriority": None, "logfile": None, "debug": False,
                    **mod.FAST_DEFAULTS}
    if takes_name:
        values["name"] = None
    positional = getattr(mod, "FAST_POSITIONAL", None)
    pos = None
    i = 0
    while i < len(own):
        a = own[i]
        i += 1
        if a.startswith("-") and a != "-":
            common = _COMMON_VALUES.get(a)
            if common is not None and (takes_name or common == "lxpath"):
                dest, takes_value, choices = common, True, None
            elif a in spec:
                dest, takes_value, choices = spec[a]
            else:
                return None
            if not takes_value:
                values[dest] = True
                continue
            if i >= len(own) or own[i].startswith("-") or not own[i]:
                return None
            value = own[i]
            if callable(choices):       # a converter, as argparse's type=
                try:
                    value = choices(value)
                except ValueError:
                    return None
            elif choices is not None and value not in choices:
                return None
            values[dest] = value
            i += 1
        elif pos is None and positional is not None:
            pos = a
        else:
            return None
    if positional is not None:
        values[positional] = pos
    if takes_name:
        if values["name"] and pos:
            return None
        if values["name"] is None:
            values["name"] = pos
        if values["name"] is None and getattr(mod, "NAME_REQUIRED", True):
            return None
        if values["name"] is not None:
            from lxpy.container import check_name
            check_name(values["name"])
    return FastArgs(extra=extra, **values)


class FastArgs:
    """The parsed arguments of fast_args, as argparse's Namespace has them (attributes);
    not types.SimpleNamespace, whose module costs lxpy-copy -s and lxpy-start ~0.3 ms."""

    def __init__(self, **values) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"FastArgs({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def _split_extra(argv: list[str]) -> tuple[list[str], list[str] | None]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, None


def _columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil (bz2, lzma, fnmatch: ~4 ms
    of every command, as argparse's formatter asks for it at each add_argument)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


def _formatter(prog: str):
    import argparse
    return argparse.RawDescriptionHelpFormatter(prog, width=_columns() - 2)


def build_parser(verb: str, mod):
    import argparse
    prog = f"lxpy-{verb}"
    p = _parser_class()(prog=prog, description=getattr(mod, "HELP", None),
                        epilog=getattr(mod, "EPILOG", None), formatter_class=_formatter)
    g = p.add_argument_group("common options")
    if getattr(mod, "TAKES_NAME", True):
        g.add_argument("-n", "--name", help="container name (or give it as the first argument)")
    g.add_argument("-P", "--lxpath", help="container path (default: /var/lib/lxpy, or LXPY_PATH)")
    g.add_argument("-l", "--logpriority", metavar="LEVEL", default=None,
                   help="log level: DEBUG, INFO, WARNING, ERROR")
    g.add_argument("-o", "--logfile", metavar="FILE", help="also log to FILE")
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    g.add_argument("--version", action="version", version=_version())
    mod.add_arguments(p)
    if getattr(mod, "TAKES_NAME", True) and getattr(mod, "NAME_POSITIONAL", True):
        p.add_argument("name_pos", nargs="?", metavar="NAME", help=argparse.SUPPRESS)
    return p


def _version() -> str:
    from lxpy import __version__
    return f"lxpy {__version__}"


class _WhenLoggingLoads:
    """A meta path finder that configures lxpy's logging the moment something imports the
    logging module: importing it costs ~10 ms (traceback, string, threading...), and many
    commands (lxpy-ls, lxpy-attach, lxpy-config get) never log anything."""

    def __init__(self, args):
        self.args = args

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        from importlib.machinery import PathFinder
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ConfiguringLoader(spec.loader, self.args)
        return spec


class _ConfiguringLoader:
    def __init__(self, loader, args):
        self.loader, self.args = loader, args

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _configure(module, self.args)


def setup_logging(args) -> None:
    if (args.logpriority is None and not args.debug and not args.logfile
            and "logging" not in sys.modules):
        sys.meta_path.insert(0, _WhenLoggingLoads(args))
        return
    import logging
    _configure(logging, args)


def _configure(logging, args) -> None:
    level_name = (args.logpriority or ("DEBUG" if args.debug else "WARNING")).upper()
    level = getattr(logging, level_name, None)
    if not isinstance(level, int):
        from lxpy.errors import UsageError
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
            from lxpy.container import check_name
            check_name(args.name)
    return args


def run_command(verb: str, commands: dict[str, str], argv: list[str]) -> int:
    prog = f"lxpy-{verb}"
    debug = "--debug" in argv
    try:
        __import__(commands[verb])      # (not importlib: its import is ~0.5 ms)
        mod = sys.modules[commands[verb]]
        own, extra = _split_extra(argv)
        args = fast_args(mod, own, extra)
        if args is None:
            args = _parse(verb, mod, own, extra)
            if isinstance(args, int):
                return args
        setup_logging(args)
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except SystemExit:
        raise
    except Exception as e:
        from lxpy.errors import LxpyError
        if isinstance(e, LxpyError):
            if debug:
                import logging
                logging.getLogger("lxpy").exception("%s", e)
            print(f"{prog}: {e}", file=sys.stderr)
            return e.exit_status
        if isinstance(e, OSError):
            if debug:
                import logging
                logging.getLogger("lxpy").exception("%s", e)
            where = f": {e.filename}" if e.filename else ""
            print(f"{prog}: {e.strerror or e}{where}", file=sys.stderr)
            return 1
        if debug:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} (rerun with --debug for a "
              "traceback, and report it)", file=sys.stderr)
        return 1

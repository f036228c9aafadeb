"""lxpy-attach: run a command (default: the user's shell) inside a running container.

Two ways in: the usual one (lxpy.cli._run builds the argparse parser and calls run()),
and fast_main(), which lxpy.cli.main() tries first: it parses the common options by hand
and imports neither argparse, logging nor the config layer, because scripts call
lxpy-attach in loops. Anything it does not know (-h, -l, -o, --debug, -s, a bad option)
goes the usual way, so help and errors look like every other command's.
"""

from __future__ import annotations

import os
import sys

from lxpy.paths import run_dir as run_dir_of

HELP = "Run a command in a running container (default: the user's shell)"
EPILOG = """\
examples:
  lxpy-attach -n web1                                   # a shell, with a pty on a terminal
  lxpy-attach -n web1 -- systemctl is-system-running
  echo hostname | lxpy-attach -n web1 -- sh             # pipes work; stdout/stderr separate
  lxpy-attach -n web1 -u 1000 --cwd /tmp -v FOO=bar -- env

The exit status is the command's (128+N if a signal N killed it; 127 if it does not exist
in the container, 126 if it cannot be executed); 1 if attaching failed.
"""

NS_NAMES = ("user", "mnt", "pid", "uts", "ipc", "net", "cgroup", "time")
_NS_ALIASES = {"mount": "mnt", "network": "net", "utsname": "uts"}
_VAR_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def _name_ok(name: str) -> bool:
    from lxpy.container import name_ok
    return name_ok(name)


def _var_ok(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and set(name) <= _VAR_CHARS


def add_arguments(p) -> None:
    g = p.add_argument_group("attach options")
    g.add_argument("-u", "--uid", metavar="USER", help="run as this user (name or uid in the "
                   "container; default root)")
    g.add_argument("-g", "--gid", metavar="GROUP", help="run with this group (name or gid; "
                   "default the user's)")
    g.add_argument("--cwd", metavar="DIR", help="working directory (default: the user's home, "
                   "or /)")
    env = g.add_mutually_exclusive_group()
    env.add_argument("--clear-env", action="store_true", default=True,
                     help="start from a minimal environment: container=lxpy, PATH, HOME, TERM "
                     "and the container's [environment] (the default)")
    env.add_argument("--keep-env", action="store_true", help="keep this environment")
    g.add_argument("-v", "--set-var", metavar="VAR=VALUE", action="append", default=[],
                   help="set an environment variable (repeatable)")
    g.add_argument("--keep-var", metavar="VAR", action="append", default=[],
                   help="keep this variable with --clear-env (repeatable)")
    g.add_argument("-s", "--namespaces", metavar="NS", help="enter only these namespaces, "
                   "like 'mnt|pid|net' (default: all the container has of its own)")


def _parse_env(items: list[str]) -> dict[str, str]:
    from lxpy.errors import UsageError
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not _var_ok(k):
            raise UsageError(f"-v {it}: say VAR=VALUE", "like -v TZ=UTC")
        out[k] = v
    return out


def _parse_ns(spec: str | None) -> tuple[str, ...] | None:
    if spec is None:
        return None
    import re

    from lxpy.errors import UsageError
    out = []
    for w in re.split(r"[|,\s]+", spec.strip()):
        if not w:
            continue
        n = _NS_ALIASES.get(w.lower(), w.lower())
        if n not in NS_NAMES:
            raise UsageError(f"-s {spec}: {w!r} is not a namespace",
                             f"use {', '.join(NS_NAMES)} joined by |")
        out.append(n)
    return tuple(out)


def _options(*, command, uid, gid, cwd, keep_env, set_var, keep_var, namespaces):
    from lxpy.runtime.attach import Options
    for k in keep_var:
        if not _var_ok(k):
            from lxpy.errors import UsageError
            raise UsageError(f"--keep-var {k}: not a variable name")
    return Options(command or None, user=uid, group=gid, cwd=cwd, keep_env=keep_env,
                   env=_parse_env(set_var), keep_vars=keep_var, namespaces=_parse_ns(namespaces))


def run(args) -> int:
    from lxpy.container import Container
    from lxpy.runtime import attach
    c = Container(args.name, args.lxpath)
    opts = _options(command=args.extra, uid=args.uid, gid=args.gid, cwd=args.cwd,
                    keep_env=args.keep_env, set_var=args.set_var, keep_var=args.keep_var,
                    namespaces=args.namespaces)
    return attach.attach(attach.find(c), opts)


# -- the fast path ------------------------------------------------------------------

_VALUE_OPTS = {"-n": "name", "--name": "name", "-P": "lxpath", "--lxpath": "lxpath",
               "-u": "uid", "--uid": "uid", "-g": "gid", "--gid": "gid", "--cwd": "cwd",
               "-v": "set_var", "--set-var": "set_var", "--keep-var": "keep_var"}
_FLAG_OPTS = {"--clear-env": ("keep_env", False), "--keep-env": ("keep_env", True)}


def _fast_parse(argv: list[str]) -> dict | None:
    """The common command lines; None for anything else (the usual parser takes over)."""
    a: dict = {"name": None, "lxpath": None, "uid": None, "gid": None, "cwd": None,
               "keep_env": False, "set_var": [], "keep_var": [], "command": None}
    seen_env_flag = None
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "--":
            a["command"] = argv[i + 1:]
            break
        key, val = w, None
        if w.startswith("--") and "=" in w:
            key, val = w.split("=", 1)
        elif len(w) > 2 and w[0] == "-" and w[1] != "-" and w[:2] in _VALUE_OPTS:
            key, val = w[:2], w[2:]
        if key in _VALUE_OPTS:
            if val is None:
                if i + 1 >= len(argv) or argv[i + 1] == "--":
                    return None
                i += 1
                val = argv[i]
            dest = _VALUE_OPTS[key]
            if isinstance(a[dest], list):
                a[dest].append(val)
            elif a[dest] is not None:
                return None
            else:
                a[dest] = val
        elif w in _FLAG_OPTS and val is None:
            if seen_env_flag not in (None, w):
                return None
            seen_env_flag = w
            dest, v = _FLAG_OPTS[w]
            a[dest] = v
        elif not w.startswith("-") and a["name"] is None and w:
            a["name"] = w
        else:
            return None
        i += 1
    if not a["name"] or not _name_ok(a["name"]):
        return None
    return a


def fast_main(argv: list[str]) -> int | None:
    """Attach without argparse/logging/config imports; None: use the usual path."""
    a = _fast_parse(argv)
    if a is None:
        return None
    prog = "lxpy-attach"
    from lxpy.errors import LxpyError
    try:
        lxpath = a["lxpath"]
        if lxpath is None:
            from lxpy.paths import default_lxpath
            lxpath = str(default_lxpath())
        from lxpy.runtime import attach
        name = a["name"]
        if not os.path.isfile(os.path.join(lxpath, name, "config.toml")):
            from lxpy.errors import ContainerNotFound
            raise ContainerNotFound(f"container {name!r} does not exist in {lxpath}",
                                    "lxpy-ls lists the containers there; -P picks another "
                                    "lxpath")

        def config_loader():
            from lxpy.container import Container
            return Container(name, lxpath).config
        target = attach.target_from_run_dir(name, run_dir_of(lxpath, name),
                                            config_loader=config_loader)
        opts = _options(command=a["command"], uid=a["uid"], gid=a["gid"], cwd=a["cwd"],
                        keep_env=a["keep_env"], set_var=a["set_var"],
                        keep_var=a["keep_var"], namespaces=None)
        return attach.attach(target, opts)
    except LxpyError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"{prog}: {e.strerror or e}{where}", file=sys.stderr)
        return 1

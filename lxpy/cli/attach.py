"""lxpy-attach: run a command (default: the user's shell) inside a running container."""

from __future__ import annotations

import re

from lxpy.container import Container
from lxpy.errors import UsageError
from lxpy.runtime import attach

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
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not _VAR.fullmatch(k):
            raise UsageError(f"-v {it}: say VAR=VALUE", "like -v TZ=UTC")
        out[k] = v
    return out


def _parse_ns(spec: str | None) -> tuple[str, ...] | None:
    if spec is None:
        return None
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


def run(args) -> int:
    for k in args.keep_var:
        if not _VAR.fullmatch(k):
            raise UsageError(f"--keep-var {k}: not a variable name")
    opts = attach.Options(args.extra or None, user=args.uid, group=args.gid, cwd=args.cwd,
                          keep_env=args.keep_env, env=_parse_env(args.set_var),
                          keep_vars=args.keep_var, namespaces=_parse_ns(args.namespaces))
    return attach.attach(attach.find(Container(args.name, args.lxpath)), opts)

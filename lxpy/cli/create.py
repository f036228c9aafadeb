"""lxpy-create: make a container from a template."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from lxpy import templates
from lxpy.errors import LxpyError, UsageError
from lxpy.lifecycle.create import CreateRequest, create
from lxpy.paths import default_lxpath

HELP = "Create a container from a template (debian, busybox, local, or a template path)."
EPILOG = """examples:
  lxpy-create -n web1 -t debian -- -r bookworm --packages openssh-server,vim
  lxpy-create -n bb -t busybox
  lxpy-create -n old -t debian --privileged     root inside is root on the host
  lxpy-create -n imp -t local -- --file /srv/rootfs.tar.xz
  pwgen 20 1 | lxpy-create -n ssh1 -t debian -- --root-password -
  lxpy-create -t debian -h            the options the debian template takes after --"""


def add_arguments(p) -> None:
    p.add_argument("-t", "--template", help="template name or path")
    p.add_argument("-B", "--bdev", "--backend", dest="backend", metavar="BACKEND",
                   help="storage backend: dir, overlay, btrfs or best (default from "
                        "/etc/lxpy/lxpy.toml)")
    p.add_argument("-f", "--config", dest="extra_config", metavar="FILE",
                   help="extra TOML merged into the container's config")
    p.add_argument("--privileged", action="store_true",
                   help="no user namespace: root inside is root on the host (writes "
                        "idmap = \"none\" into its config; the default gives it its own "
                        "block of ids)")
    p.add_argument("--flush-cache", action="store_true",
                   help="bootstrap the template's rootfs again instead of using the cache")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def pre_parse(parser, own: list[str], extra: list[str] | None):
    """`lxpy-create -t debian -h` also shows the template's own options."""
    if not ({"-h", "--help"} & set(own)) or not ({"-t", "--template"} & set(own)):
        return None
    i = max(own.index(o) for o in ("-t", "--template") if o in own)
    if i + 1 >= len(own):
        return None
    parser.print_help()
    try:
        t = templates.find(own[i + 1])
    except LxpyError as e:
        print(f"\n{e}", file=sys.stderr)
        return 1
    print(f"\noptions of template {t.name!r} (after --):\n{t.help()}")
    return 0


def run(args) -> int:
    if not args.template:
        raise UsageError("which template? give -t debian, -t busybox, -t local or a path")
    if args.extra_config and not Path(args.extra_config).is_file():
        raise UsageError(f"-f {args.extra_config}: no such file")
    template_args = _password_from_stdin(args.extra or [])
    progress = None
    if not args.quiet and sys.stderr.isatty():
        def progress(msg: str) -> None:
            sys.stderr.write(f"\r\033[K{msg[:100]}")
            sys.stderr.flush()
    req = CreateRequest(name=args.name, lxpath=Path(args.lxpath) if args.lxpath else
                        default_lxpath(), template=args.template,
                        template_args=template_args, backend=args.backend,
                        extra_config=Path(args.extra_config) if args.extra_config else None,
                        flush_cache=args.flush_cache, privileged=args.privileged,
                        progress=progress)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # clean up as for Ctrl-C (temp dirs go)
        signal.signal(sig, signal.default_int_handler)
    try:
        c = create(req)
    finally:
        if progress:
            sys.stderr.write("\r\033[K")
    if not args.quiet:
        print(f"created {c.name} in {c.dir}")
    return 0


def _password_from_stdin(targs: list[str]) -> list[str]:
    """`--root-password -` reads the password from stdin (first line), so it never shows
    in ps or in shell history."""
    out = list(targs)
    for i, a in enumerate(out):
        if a == "--root-password=-" or (a == "--root-password" and out[i + 1:i + 2] == ["-"]):
            line = sys.stdin.readline().rstrip("\n")
            if not line:
                raise UsageError("--root-password -: no password on stdin",
                                 "pipe it in, e.g. echo \"$PW\" | lxpy-create ... "
                                 "-- --root-password -")
            if a == "--root-password":
                out[i + 1] = line
            else:
                out[i] = f"--root-password={line}"
            break
    return out

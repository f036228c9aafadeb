"""lxpy-destroy: remove a container."""

from __future__ import annotations

from lxpy.container import Container
from lxpy.lifecycle.destroy import destroy

HELP = "Destroy a container (its rootfs and config)."


def add_arguments(p) -> None:
    p.add_argument("-f", "--force", action="store_true", help="stop it first if it runs")
    p.add_argument("-s", "--snapshots", action="store_true", help="also destroy its snapshots")
    p.add_argument("-q", "--quiet", action="store_true")


def run(args) -> int:
    c = Container(args.name, args.lxpath)
    destroy(c, force=args.force, snapshots=args.snapshots)
    if not args.quiet:
        print(f"destroyed {c.name}")
    return 0

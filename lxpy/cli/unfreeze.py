"""lxpy-unfreeze: thaw a frozen container."""

from __future__ import annotations

from .cgroup import container_cgroup
from .freeze import set_state_file, via_monitor

HELP = "Thaw a frozen container."


def add_arguments(p) -> None:
    p.add_argument("-t", "--timeout", type=float, default=30.0,
                   help="seconds to wait for THAWED (default 30)")


def run(args) -> int:
    c, cg = container_cgroup(args.name, args.lxpath)
    if via_monitor(c, "thaw", args.timeout):
        return 0
    cg.thaw(timeout=args.timeout)
    set_state_file(c, ("FROZEN", "FREEZING"), "RUNNING")
    return 0

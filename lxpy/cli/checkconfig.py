"""lxpy-checkconfig: what this kernel supports, as lxc-checkconfig does."""

from __future__ import annotations

import json
import sys

from lxpy.checkconfig import checks

HELP = "Check what this kernel and host support for containers."
TAKES_NAME = False
EPILOG = """"Host limits" are the kernel limits that all containers share (inotify instances and
watches, keys, memory maps, neighbour tables, aio, BPF JIT memory), against the values of
/etc/sysctl.d/60-lxpy.conf (Incus's production-setup values, installed by scripts/setup-host
and the lxpy package). Those that grow with the number of containers (inotify, neighbour
tables) are judged for the containers defined in the lxpath (-P): "too low" is a warning,
with the sysctl that raises it, and does not change the exit status."""


def add_arguments(p) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text")


def run(args) -> int:
    items = checks(args.lxpath)
    if args.format == "json":
        json.dump([c.__dict__ for c in items], sys.stdout, indent=2)
        print()
    else:
        color = sys.stdout.isatty()
        green, red, yellow, reset = ("\033[32m", "\033[31m", "\033[33m", "\033[0m") if color \
            else ("", "", "", "")
        section = None
        for c in items:
            if c.section != section:
                section = c.section
                print(f"--- {section} ---")
            if c.info:
                print(f"{c.name}: {c.detail}")
                continue
            if c.ok is None:
                word = f"{yellow}unknown{reset}"
            elif c.ok:
                word = f"{green}{c.words[0]}{reset}"
            else:
                word = f"{red if c.required else yellow}{c.words[1]}{reset}"
            detail = f" ({c.detail})" if c.detail else ""
            hint = f"  -> {c.hint}" if c.ok is False and c.hint else ""
            print(f"{c.name}: {word}{detail}{hint}")
    missing = [c for c in items if c.ok is False and c.required]
    return 1 if missing else 0

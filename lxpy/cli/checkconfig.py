"""lxpy-checkconfig: what this kernel supports, as lxc-checkconfig does."""

from __future__ import annotations

import json
import sys

from lxpy.checkconfig import checks

HELP = "Check what this kernel and host support for containers."
TAKES_NAME = False


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
                word = f"{green}enabled{reset}"
            else:
                word = f"{red if c.required else yellow}missing{reset}"
            detail = f" ({c.detail})" if c.detail else ""
            hint = f"  -> {c.hint}" if c.ok is False and c.hint else ""
            print(f"{c.name}: {word}{detail}{hint}")
    missing = [c for c in items if c.ok is False and c.required]
    return 1 if missing else 0

#!/usr/bin/env python3
"""Write lxpy's man pages (generated from the argparse parsers and the settings table).

    packaging/gen-man.py OUTDIR [--strict]

OUTDIR/man1/lxpy.1, lxpy-<verb>.1 for every command, OUTDIR/man5/lxpy.toml.5,
lxpy.container.toml.5 and lxpy-config.5. Run from a checkout (or with lxpy importable).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lxpy.cli.manpages import write_all  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description="write lxpy's man pages into OUTDIR/man1, man5")
    ap.add_argument("outdir")
    ap.add_argument("--strict", action="store_true",
                    help="fail if a command module cannot be imported")
    a = ap.parse_args()
    written, skipped = write_all(Path(a.outdir), strict=a.strict)
    for verb, why in skipped.items():
        print(f"gen-man: skipped lxpy-{verb}: {why}", file=sys.stderr)
    print(f"gen-man: {len(written)} pages in {a.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""lxpy-storage: storage pools lxpy makes (a loop-backed btrfs or xfs filesystem, mounted at
boot by a systemd mount unit), so that limits.disk is enforced on any host."""

from __future__ import annotations

import json
import sys

from lxpy.storage import pool

HELP = "Make, list, show and remove storage pools (loop-backed btrfs or xfs) for limits.disk."
EPILOG = """commands:
  create NAME --driver btrfs|xfs --size 50G   make, mount and enable a pool (an lxpath)
  ls [--format json]                          the pools, mounted or not, size, use
  info NAME [--format json]                   one pool: path, image, unit, containers
  rm NAME                                     unmount and delete it (refused while it holds
                                              containers)
A pool's path is an lxpath:
  lxpy-create -P /var/lib/lxpy/storage/NAME -n web1 -t debian -B btrfs
  lxpy-config -P /var/lib/lxpy/storage/NAME -n web1 set limits.disk 20G
btrfs pools enforce limits.disk with qgroups (-B btrfs), xfs pools with project quotas
(-B dir or overlay)."""
TAKES_NAME = False


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    c = sub.add_parser("create", help="make a pool: a loop file, formatted, mounted, enabled")
    c.add_argument("pool", metavar="NAME")
    c.add_argument("--driver", required=True, choices=sorted(pool.DRIVERS),
                   help="btrfs (limits.disk by qgroups) or xfs (by project quotas)")
    c.add_argument("--size", required=True, help="the pool's size, like 50G (sparse)")
    ls = sub.add_parser("ls", help="list the pools")
    ls.add_argument("--format", choices=("text", "json"), default="text")
    i = sub.add_parser("info", help="show one pool")
    i.add_argument("pool", metavar="NAME")
    i.add_argument("--format", choices=("text", "json"), default="text")
    r = sub.add_parser("rm", help="unmount and delete a pool without containers")
    r.add_argument("pool", metavar="NAME")


def _size(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
    return str(n)


def run(args) -> int:
    if args.cmd == "create":
        p = pool.create(args.pool, args.driver, args.size)
        print(f"pool {p.name}: {args.driver}, {args.size}, mounted at {p.path} (an lxpath: "
              f"lxpy-create -P {p.path} ...); mounted at boot by {p.unit.name}")
        return 0
    if args.cmd == "rm":
        pool.remove(args.pool)
        return 0
    if args.cmd == "info":
        d = pool.describe(pool.get(args.pool))
        if args.format == "json":
            json.dump(d, sys.stdout, indent=2)
            print()
            return 0
        rows = [("Name", d["name"]), ("Driver", d["driver"]), ("Size", _size(d["size"])),
                ("Path (lxpath)", d["path"]), ("Mounted", "yes" if d["mounted"] else "no"),
                ("Used", _size(d["used"])), ("Free", _size(d["free"])),
                ("Image", f"{d['image']} ({_size(d['image_bytes'])} on disk)"),
                ("Boot unit", d["unit"]), ("limits.disk", f"enforced for {d['limits_disk']}"),
                ("Containers", ", ".join(d["containers"]) or "-")]
        w = max(len(k) for k, _ in rows) + 1
        for k, v in rows:
            print(f"{(k + ':').ljust(w)} {v}")
        return 0
    rows = [pool.describe(p) for p in pool.pools()]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    head = ("NAME", "DRIVER", "SIZE", "USED", "MOUNTED", "CONTAINERS", "PATH")
    table = [head] + [(d["name"], d["driver"], _size(d["size"]), _size(d["used"]),
                       "yes" if d["mounted"] else "no", str(len(d["containers"])), d["path"])
                      for d in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0

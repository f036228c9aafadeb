#!/usr/bin/env python3
"""Storage benchmarks (root): create_from per backend, snapshot clone, full copy vs cp -a.

    .venv/bin/python bench/storage.py [BASE_TREE] [--repeat N]

BASE_TREE defaults to the cached debian rootfs under $LXPY_CACHE (or /var/cache/lxpy).
Works in a temp dir on the filesystem of /var/tmp and on a btrfs loop file it makes."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent


def find_base() -> Path:
    for root in (os.environ.get("LXPY_CACHE"), "/var/cache/lxpy", "/var/tmp/lxpy-test-cache"):
        if root and (Path(root) / "debian").is_dir():
            for rel in sorted((Path(root) / "debian").glob("*/rootfs")):
                if rel.resolve().is_dir():
                    return rel.resolve()
    sys.exit("no cached debian rootfs found: give a tree as the first argument")


def timed(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def du(p: Path) -> str:
    return subprocess.run(["du", "-sh", str(p)], capture_output=True, text=True).stdout.split()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base", nargs="?")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    base = Path(a.base).resolve() if a.base else find_base()
    from lxpy import storage
    from lxpy.config.loader import load
    work = Path(tempfile.mkdtemp(prefix="lxpy-bench-", dir="/var/tmp"))
    img = work / "btrfs.img"
    bmnt = work / "btrfs"
    results: list[tuple[str, float]] = []
    try:
        with open(img, "wb") as f:
            f.truncate(4 << 30)
        sh("mkfs.btrfs", "-q", str(img))
        bmnt.mkdir()
        sh("mount", "-o", "loop", str(img), str(bmnt))
        print(f"base tree {base} ({du(base)}); work in {work}")
        # the base tree on btrfs as a subvolume (a cache on the same btrfs filesystem)
        from lxpy.linux.fsops import btrfs_subvol_create
        bbase = bmnt / "cache-rootfs"
        btrfs_subvol_create(bbase)
        sh("cp", "-a", "--reflink=auto", "-T", str(base), str(bbase))
        ext_lx = work / "lx"
        btr_lx = bmnt / "lx"
        ext_lx.mkdir()
        btr_lx.mkdir()
        n = [0]

        def create(backend: str, lx: Path, b: Path) -> None:
            n[0] += 1
            cdir = lx / f"c{n[0]}"
            cdir.mkdir()
            storage.get(backend).create_from(b, cdir)

        for label, backend, lx, b in [("dir (ext4, cp -a)", "dir", ext_lx, base),
                                      ("overlay (ext4)", "overlay", ext_lx, base),
                                      ("btrfs (cache on same btrfs: snapshot)", "btrfs", btr_lx,
                                       bbase),
                                      ("btrfs (cache elsewhere: subvolume + copy)", "btrfs",
                                       btr_lx, base)]:
            results.append((f"create_from {label}", timed(lambda: create(backend, lx, b),
                                                          a.repeat)))
        t = time.perf_counter()
        sh("cp", "-a", "-T", str(base), str(work / "cp-a-copy"))
        results.append(("plain cp -a of the base tree (ext4)", time.perf_counter() - t))

        # containers to clone, made with the real config
        def make(lx: Path, name: str, backend: str, b: Path) -> None:
            cdir = lx / name
            cdir.mkdir()
            keys = storage.get(backend).create_from(b, cdir)
            rt = "\n".join(f'{k[7:]} = "{v}"' for k, v in keys.items())
            (cdir / "config.toml").write_text(f'hostname = "{name}"\n[rootfs]\n{rt}\n')
            cfg = load(cdir / "config.toml")
            with storage.for_config(cfg).mounted(cdir, cfg) as root:
                (root / "etc" / "hostname").write_text(f"{name}\n")

        make(ext_lx, "gold-ov", "overlay", base)
        make(ext_lx, "gold-dir", "dir", base)
        make(btr_lx, "gold-bt", "btrfs", bbase)
        m = [0]

        def cli_copy(lx: Path, src: str, *extra: str) -> None:
            m[0] += 1
            subprocess.run([str(BIN / "lxpy-copy"), "-P", str(lx), "-n", src, "-N",
                            f"k{m[0]}", "-q", *extra], check=True)

        sh(str(BIN / "lxpy-ls"), "-h")   # warm the interpreter's caches
        t0 = timed(lambda: subprocess.run([str(BIN / "lxpy-ls"), "-P", str(ext_lx)],
                                          check=True, capture_output=True), a.repeat)
        results.append(("(lxpy-ls start-up, for scale)", t0))
        results.append(("lxpy-copy -s of an overlay container", timed(
            lambda: cli_copy(ext_lx, "gold-ov", "-s"), a.repeat)))
        results.append(("lxpy-copy -s of a dir container (overlay on it)", timed(
            lambda: cli_copy(ext_lx, "gold-dir", "-s"), a.repeat)))
        results.append(("lxpy-copy -s of a btrfs container", timed(
            lambda: cli_copy(btr_lx, "gold-bt", "-s"), a.repeat)))
        results.append(("lxpy-copy (full) of an overlay container", timed(
            lambda: cli_copy(ext_lx, "gold-ov"), a.repeat)))
        results.append(("lxpy-copy (full) of a dir container (ext4)", timed(
            lambda: cli_copy(ext_lx, "gold-dir"), a.repeat)))
        results.append(("lxpy-copy (full) of a btrfs container", timed(
            lambda: cli_copy(btr_lx, "gold-bt"), a.repeat)))
        for label, secs in results:
            print(f"{label:55s} {secs * 1000:9.1f} ms")
    finally:
        for lx in (work / "lx", bmnt / "lx"):
            if lx.is_dir():
                # the clones (k*) before their origins (gold-*); best effort: rmtree below
                for c in sorted(lx.iterdir(), key=lambda c: c.name.startswith("gold")):
                    if (c / "config.toml").exists():
                        subprocess.run([str(BIN / "lxpy-destroy"), "-P", str(lx), "-n", c.name,
                                        "-f", "-s", "-q"], capture_output=True)
        subprocess.run(["umount", "-l", str(bmnt)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

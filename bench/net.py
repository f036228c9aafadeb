#!/usr/bin/env python3
"""Network benchmarks (root): time from `lxpy-start` to the container answering a ping on
its static address, beside LXC (lxc-start of a busybox container with the same veth set-up)
on the same machine; and lxpy.net.setup.setup alone (veth on a bridge into a fresh netns).

    .venv/bin/python bench/net.py [--repeat N] [--no-lxc]

Uses its own bridge (lxpybench0, 10.250.250.0/24), removed at the end."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
BR, SUB = "lxpybench0", "10.250.250"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def wait_ping(addr: str, timeout: float = 30.0) -> float:
    """Send ICMP echoes every 5 ms until one is answered; return the time it took."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(0.005)
    t0 = time.perf_counter()
    seq = 0
    try:
        while time.perf_counter() - t0 < timeout:
            seq += 1
            hdr = struct.pack("!BBHHH", 8, 0, 0, os.getpid() & 0xFFFF, seq)
            pkt = struct.pack("!BBHHH", 8, 0, _csum(hdr + b"lxpy"), os.getpid() & 0xFFFF,
                              seq) + b"lxpy"
            try:
                s.sendto(pkt, (addr, 0))
            except OSError:
                time.sleep(0.005)
                continue
            end = time.perf_counter() + 0.005
            while time.perf_counter() < end:
                try:
                    data, src = s.recvfrom(2048)
                except (TimeoutError, BlockingIOError):
                    break
                if src[0] == addr and data[20] == 0:
                    return time.perf_counter() - t0
        raise TimeoutError(f"{addr} did not answer")
    finally:
        s.close()


def ip(*a: str) -> None:
    subprocess.run(["ip", *a], check=True, capture_output=True)


def make_busybox(lxpath: Path, name: str) -> None:
    d = lxpath / name
    r = d / "rootfs"
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp"):
        (r / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, r / "bin/busybox")
    for a in ("sh", "sleep"):
        os.symlink("busybox", r / "bin" / a)
    os.symlink("/bin/busybox", r / "sbin/init")
    (r / "etc/inittab").write_text("::respawn:/bin/sleep 100000\n")
    (d / "config.toml").write_text(
        f'[init]\ncmd = ["/sbin/init"]\nhalt_signal = "SIGUSR2"\nstop_timeout = 5\n'
        f'[[net]]\ntype = "veth"\nlink = "{BR}"\nipv4 = ["{SUB}.10/24"]\n'
        f'gateway4 = "auto"\n')


def bench_lxpy(tmp: Path, n: int) -> tuple[list[float], list[float]]:
    lx = tmp / "lxpy"
    lx.mkdir()
    make_busybox(lx, "b1")
    starts, pings = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "lxpy-start"), "-P", str(lx), "-n", "b1"], check=True)
        t1 = time.perf_counter()
        wait_ping(f"{SUB}.10")
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        pings.append(t2 - t0)
        subprocess.run([str(BIN / "lxpy-stop"), "-P", str(lx), "-n", "b1", "-k"],
                       capture_output=True)
    return starts, pings


def bench_lxc(tmp: Path, n: int) -> tuple[list[float], list[float]] | None:
    if not shutil.which("lxc-start"):
        return None
    lx = tmp / "lxc"
    lx.mkdir()
    r = subprocess.run(["lxc-create", "-P", str(lx), "-n", "b1", "-t", "busybox"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"lxc-create failed: {r.stderr.strip()[-200:]}")
        return None
    cfg = lx / "b1" / "config"
    text = "\n".join(x for x in cfg.read_text().splitlines() if not x.startswith("lxc.net."))
    cfg.write_text(text + f"\nlxc.net.0.type = veth\nlxc.net.0.link = {BR}\n"
                   f"lxc.net.0.flags = up\nlxc.net.0.ipv4.address = {SUB}.11/24\n"
                   f"lxc.net.0.ipv4.gateway = {SUB}.1\n")
    starts, pings = [], []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run(["lxc-start", "-P", str(lx), "-n", "b1", "-d"], check=True)
            t1 = time.perf_counter()
            wait_ping(f"{SUB}.11")
            t2 = time.perf_counter()
            starts.append(t1 - t0)
            pings.append(t2 - t0)
            subprocess.run(["lxc-stop", "-P", str(lx), "-n", "b1", "-k"], capture_output=True)
    finally:
        subprocess.run(["lxc-destroy", "-P", str(lx), "-n", "b1", "-f"], capture_output=True)
    return starts, pings


def bench_setup(n: int) -> list[float]:
    from lxpy.config import validate
    from lxpy.net.plan import prepare
    from lxpy.net.setup import setup
    cfg = validate({"net": [{"type": "veth", "link": BR, "ipv4": [f"{SUB}.20/24"],
                             "gateway4": "auto"}]}, "bench")
    import pyroute2  # noqa: F401 - measured apart (100+ ms): the monitor's helper pays it once
    out = []
    for _ in range(n):
        p = subprocess.Popen(["unshare", "-n", "--", "sleep", "60"])
        while os.stat(f"/proc/{p.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            time.sleep(0.001)
        plan = prepare(cfg, "benchsetup", "/nonexistent")
        t0 = time.perf_counter()
        undo = setup(plan, p.pid)
        out.append(time.perf_counter() - t0)
        undo.close()
        p.kill()
        p.wait()
    return out


def fmt(xs: list[float]) -> str:
    ms = sorted(x * 1000 for x in xs)
    return f"median {statistics.median(ms):7.1f} ms  min {ms[0]:7.1f}  max {ms[-1]:7.1f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-lxc", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/net.py needs root", file=sys.stderr)
        return 1
    ip("link", "add", BR, "type", "bridge")
    try:
        ip("addr", "add", f"{SUB}.1/24", "dev", BR)
        ip("link", "set", BR, "up")
        with tempfile.TemporaryDirectory(prefix="lxpy-bench-net-") as t:
            print(f"lxpy.net.setup (veth on a bridge, into a netns):  {fmt(bench_setup(a.repeat))}")
            s, p = bench_lxpy(Path(t), a.repeat)
            print(f"lxpy-start returns:                               {fmt(s)}")
            print(f"lxpy-start -> ping answered on the static address: {fmt(p)}")
            if not a.no_lxc:
                r = bench_lxc(Path(t), a.repeat)
                if r:
                    print(f"lxc-start -d returns:                             {fmt(r[0])}")
                    print(f"lxc-start -> ping answered:                       {fmt(r[1])}")
    finally:
        subprocess.run(["ip", "link", "del", BR], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

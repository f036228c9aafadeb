"""The cgroup2 test rig: a small Debian guest under qemu (TCG) whose kernel runs pure
cgroup v2 (cgroup_no_v1=all), with the checkout under test shared in over virtio-9p at the
same path as on the host, so the host-built venv (Debian's /usr/bin/python3) runs as is.

    python tests/vm/rig.py build            # the guest image, once (cached)
    python tests/vm/rig.py run -- CMD...    # boot, run CMD in the checkout, power off

The image is cached under $LXPY_VM_CACHE (default /var/cache/lxpy-vm), keyed by the recipe
and the kernel version; each run boots a throw-away qcow2 overlay on top of it.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SUITE = "bookworm"
MIRROR = os.environ.get("LXPY_VM_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ["python3", "python3-venv", "busybox-static", "iproute2", "procps", "kmod"]
# 9p over virtio, in load order (virtio, virtio_ring, virtio_pci, ext4 come with the initrd).
NINEP_MODULES = ["fs/netfs/netfs.ko", "fs/fscache/fscache.ko", "net/9p/9pnet.ko",
                 "net/9p/9pnet_virtio.ko", "fs/9p/9p.ko"]
RECIPE_VERSION = "2"

GUEST_INIT = r"""#!/bin/sh
# PID 1 of the lxpy cgroup2 test guest: mount the basics, the shares, run the job, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -o remount,rw /
hostname lxpy-vm
ip link set lo up
KVER=$(uname -r)
for m in @MODULES@; do insmod /lib/modules/$KVER/kernel/$m 2>/dev/null; done
REPO=$(sed -n 's/.*lxpy.repo=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p "$REPO" /results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose repo "$REPO"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 results /results
echo "lxpy-vm: up $(cut -d' ' -f1 /proc/uptime)s, cgroup2: $(cat /sys/fs/cgroup/cgroup.controllers)"
cd "$REPO"
sh /results/job.sh > /results/out.log 2>&1
echo $? > /results/rc
sync
echo "lxpy-vm: done rc=$(cat /results/rc)"
poweroff -f
"""


@dataclass
class Result:
    rc: int
    output: str
    console: str
    seconds: float


def cache_root() -> Path:
    return Path(os.environ.get("LXPY_VM_CACHE", "/var/cache/lxpy-vm"))


def kernel() -> Path:
    ks = sorted(glob.glob("/boot/vmlinuz-*-amd64"))
    if not ks:
        raise RuntimeError("no /boot/vmlinuz-*-amd64: apt-get install linux-image-amd64")
    return Path(ks[-1])


def kver() -> str:
    return kernel().name.removeprefix("vmlinuz-")


def initrd() -> Path:
    return Path(f"/boot/initrd.img-{kver()}")


def image_path() -> Path:
    key = hashlib.sha256(f"{RECIPE_VERSION} {SUITE} {PACKAGES} {kver()} {GUEST_INIT}".encode())
    return cache_root() / f"guest-{SUITE}-{key.hexdigest()[:12]}.ext4"


def missing_tools() -> list[str]:
    need = ["qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4"]
    out = [t for t in need if not shutil.which(t) and not Path(f"/usr/sbin/{t}").exists()]
    try:
        kernel()
    except RuntimeError:
        out.append("linux-image-amd64")
    return out


def build(log=sys.stderr) -> Path:
    """The guest image: debootstrap minbase + python3 etc., our init, 9p modules; ext4."""
    img = image_path()
    if img.exists():
        return img
    img.parent.mkdir(parents=True, exist_ok=True)
    with open(img.parent / ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if img.exists():
            return img
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(dir=img.parent, prefix=".build-") as tmp:
            root = Path(tmp) / "root"
            print(f"lxpy-vm: debootstrap {SUITE} into {root} ...", file=log, flush=True)
            subprocess.run(["debootstrap", "--variant=minbase",
                            "--include=" + ",".join(PACKAGES), SUITE, str(root), MIRROR],
                           check=True, stdout=subprocess.DEVNULL)
            kv = kver()
            for m in NINEP_MODULES:
                src = Path(f"/lib/modules/{kv}/kernel/{m}")
                dst = root / f"lib/modules/{kv}/kernel/{m}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
            init = root / "sbin/lxpy-vm-init"
            init.write_text(GUEST_INIT.replace("@MODULES@", " ".join(NINEP_MODULES)))
            init.chmod(0o755)
            (root / "etc/hostname").write_text("lxpy-vm\n")
            (root / "etc/fstab").write_text("")
            for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(root / d, ignore_errors=True)
                (root / d).mkdir(parents=True, exist_ok=True)
            part = Path(tmp) / "img.ext4"
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "lxpyroot", "-d", str(root),
                            str(part), "2G"], check=True)
            os.rename(part, img)
        print(f"lxpy-vm: built {img} in {time.monotonic() - t0:.0f}s", file=log, flush=True)
    return img


def run(command: str, *, repo: Path = REPO, timeout: float = 600, cpus: int = 2,
        memory: str = "1G", log=None) -> Result:
    """Boot the guest once, run `command` (sh) in the checkout, return its status and output."""
    img = build()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lxpy-vm-") as tmp:
        t = Path(tmp)
        res = t / "results"
        res.mkdir()
        (res / "job.sh").write_text(command + "\n")
        overlay = t / "overlay.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(img),
                        str(overlay)], check=True)
        console = t / "console.log"
        append = (f"console=ttyS0 root=/dev/vda rootfstype=ext4 rw init=/sbin/lxpy-vm-init "
                  f"cgroup_no_v1=all panic=-1 quiet loglevel=3 lxpy.repo={repo}")
        cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max",
               "-smp", str(cpus), "-m", memory, "-nographic", "-no-reboot",
               "-kernel", str(kernel()), "-initrd", str(initrd()), "-append", append,
               "-drive", f"file={overlay},if=virtio,format=qcow2",
               "-virtfs", f"local,path={repo},mount_tag=repo,security_model=passthrough,id=repo",
               "-virtfs", f"local,path={res},mount_tag=results,security_model=passthrough,"
                          "id=results",
               "-serial", f"file:{console}", "-monitor", "none", "-display", "none",
               "-nic", "none"]
        try:
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            pass
        out = (res / "out.log").read_text(errors="replace") if (res / "out.log").exists() else ""
        con = console.read_text(errors="replace") if console.exists() else ""
        rcf = res / "rc"
        rc = int(rcf.read_text().strip() or 255) if rcf.exists() else 255
        return Result(rc, out, con, time.monotonic() - t0)


def ensure_venv(repo: Path = REPO) -> Path:
    """A venv in the shared checkout built with Debian's /usr/bin/python3, so that the guest
    (same Debian python) can run it as is. The checkout's .venv is one when made that way."""
    venv = repo / ".venv"
    cfg = venv / "pyvenv.cfg"
    if cfg.exists() and re.search(r"^home\s*=\s*/usr/bin\s*$", cfg.read_text(), re.M):
        return venv
    venv = repo / ".venv-vm"
    if not (venv / "bin/pytest").exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", "-e", f"{repo}[test]"],
                       check=True)
    return venv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rig.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["build", "run"])
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    if a.what == "build":
        print(build())
        return 0
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    r = run(" ".join(shlex.quote(c) for c in cmd) or "true")
    sys.stdout.write(r.output)
    print(f"[rig] rc={r.rc} in {r.seconds:.1f}s", file=sys.stderr)
    if r.rc == 255:
        sys.stderr.write(r.console[-3000:])
    return r.rc


if __name__ == "__main__":
    sys.exit(main())

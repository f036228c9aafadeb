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
PACKAGES = ["python3", "python3-venv", "busybox-static", "iproute2", "procps", "kmod",
            "xfsprogs"]
# modules the guest can modprobe (with their dependencies): loop files, xfs, ext4's quota
# format, overlayfs (project quotas on dir and overlay containers: tests/vm/test_disk_vm.py)
GUEST_MODULES = ["loop", "xfs", "quota_v2", "overlay"]
# 9p over virtio, in load order (virtio, virtio_ring, virtio_pci, ext4 come with the initrd).
NINEP_MODULES = ["fs/netfs/netfs.ko", "fs/fscache/fscache.ko", "net/9p/9pnet.ko",
                 "net/9p/9pnet_virtio.ko", "fs/9p/9p.ko"]
RECIPE_VERSION = "3"
BB_APPLETS = ["mount", "mkdir", "hostname", "ip", "cat", "cut", "sed", "sync", "poweroff",
              "insmod", "echo"]

GUEST_INIT = r"""#!/bin/busybox sh
# PID 1 of the lxpy cgroup2 test guest: mount the basics, the shares, run the job, power off.
# busybox applets first: each dynamically linked exec costs ~0.3 s under TCG.
export PATH=/opt/bb:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run
# /tmp stays on the guest disk: this kernel (6.1) cannot idmap a tmpfs (6.3 can), and
# containers are unprivileged by default
mount -o remount,rw /
hostname lxpy-vm
ip link set lo up
KVER=$(uname -r)
[ -d /sys/module/9p ] || for m in @MODULES@; do insmod /lib/modules/$KVER/kernel/$m; done
REPO=$(sed -n 's/.*lxpy.repo=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p "$REPO" /results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose repo "$REPO"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 results /results
echo "lxpy-vm: up $(cut -d' ' -f1 /proc/uptime)s, cgroup2: $(cat /sys/fs/cgroup/cgroup.controllers)"
cd "$REPO"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# root's range of subordinate ids, as setup-host gives the host: unprivileged containers
# (the default) take their blocks from it
sh packaging/subid-root
/bin/sh /results/job.sh > /results/out.log 2>&1
echo $? > /results/rc
sync
echo "lxpy-vm: done rc=$(cat /results/rc)"
busybox poweroff -f
"""


INITRAMFS_INIT = r"""#!/bin/busybox sh
# lxpy guest initramfs: load virtio/ext4/9p modules, mount /dev/vda, switch_root.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
mkdir -p /newroot
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "lxpy-vm: cannot mount /dev/vda"; poweroff -f
fi
umount /dev /sys /proc
exec switch_root /newroot /sbin/lxpy-vm-init
"""
# modules the initramfs loads (with their dependencies, resolved with modinfo at build time)
INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "9pnet_virtio", "9p"]


@dataclass
class Result:
    rc: int
    output: str
    console: str
    seconds: float
    files: dict[str, str]           # what the job left in /results (junit.xml ...)


def cache_root() -> Path:
    return Path(os.environ.get("LXPY_VM_CACHE", "/var/cache/lxpy-vm"))


def kernel() -> Path:
    ks = sorted(glob.glob("/boot/vmlinuz-*-amd64"))
    if not ks:
        raise RuntimeError("no /boot/vmlinuz-*-amd64: apt-get install linux-image-amd64")
    return Path(ks[-1])


def kver() -> str:
    return kernel().name.removeprefix("vmlinuz-")


def _modules_in_order(names: list[str]) -> list[Path]:
    """The .ko files for names and their dependencies, dependencies first."""
    kv = kver()
    out: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        deps = subprocess.run(["modinfo", "-k", kv, "-F", "depends", name], check=True,
                              capture_output=True, text=True).stdout.strip()
        for d in filter(None, deps.split(",")):
            visit(d)
        fn = subprocess.run(["modinfo", "-k", kv, "-n", name], check=True,
                            capture_output=True, text=True).stdout.strip()
        if fn and fn != "(builtin)":
            out.append(Path(fn))
    for n in names:
        visit(n)
    return out


def fast_kernel() -> tuple[Path, Path]:
    """An uncompressed ELF vmlinux (booted via PVH: the guest need not decompress itself
    under emulation) and a tiny uncompressed initramfs (busybox + the modules to mount the
    root), both cached. Falls back to the distribution's bzImage and initrd."""
    kv = kver()
    d = cache_root()
    vmlinux, initramfs = d / f"vmlinux-{kv}", d / f"initramfs-{kv}-{RECIPE_VERSION}.cpio"
    d.mkdir(parents=True, exist_ok=True)
    if not vmlinux.exists():
        import lzma
        data = kernel().read_bytes()
        at = data.find(b"\xfd7zXZ\x00")
        if at < 0:
            return kernel(), Path(f"/boot/initrd.img-{kv}")
        out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
        if not out.startswith(b"\x7fELF"):
            return kernel(), Path(f"/boot/initrd.img-{kv}")
        tmp = vmlinux.with_suffix(".tmp")
        tmp.write_bytes(out)
        os.rename(tmp, vmlinux)
    if not initramfs.exists():
        with tempfile.TemporaryDirectory(dir=d, prefix=".initramfs-") as tmp:
            r = Path(tmp)
            for sub in ("bin", "dev", "proc", "sys", "newroot", "lib/modules"):
                (r / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy2(shutil.which("busybox") or "/bin/busybox", r / "bin/busybox")
            order = []
            for ko in _modules_in_order(INITRAMFS_MODULES):
                shutil.copy2(ko, r / "lib/modules" / ko.name)
                order.append(ko.name)
            (r / "modules.order").write_text("\n".join(order) + "\n")
            (r / "init").write_text(INITRAMFS_INIT)
            (r / "init").chmod(0o755)
            files = subprocess.run(["find", "."], cwd=r, check=True, capture_output=True
                                   ).stdout
            part = d / f".{initramfs.name}.{os.getpid()}"
            with open(part, "wb") as f:
                subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=r, input=files,
                               stdout=f, check=True)
            os.rename(part, initramfs)
    return vmlinux, initramfs


def image_path() -> Path:
    key = hashlib.sha256(f"{RECIPE_VERSION} {SUITE} {PACKAGES} {GUEST_MODULES} {kver()} "
                         f"{GUEST_INIT}".encode())
    return cache_root() / f"guest-{SUITE}-{key.hexdigest()[:12]}.ext4"


def missing_tools() -> list[str]:
    need = ["qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "busybox", "cpio",
            "modinfo"]
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
            for ko in _modules_in_order(GUEST_MODULES):
                dst = root / "lib/modules" / kv / ko.relative_to(f"/lib/modules/{kv}")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ko, dst)
            for f in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
                if Path(f"/lib/modules/{kv}/{f}").exists():
                    shutil.copy2(f"/lib/modules/{kv}/{f}", root / "lib/modules" / kv / f)
            subprocess.run(["depmod", "-b", str(root), kv], check=True)
            bb = root / "opt/bb"
            bb.mkdir(parents=True)
            for applet in BB_APPLETS:
                (bb / applet).symlink_to("/bin/busybox")
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
            for old in img.parent.glob("guest-*.ext4"):
                if old != img:
                    old.unlink(missing_ok=True)
        print(f"lxpy-vm: built {img} in {time.monotonic() - t0:.0f}s", file=log, flush=True)
    return img


def run(command: str, *, repo: Path = REPO, timeout: float = 600, cpus: int = 2,
        memory: str = "1G", log=None) -> Result:
    """Boot the guest once, run `command` (sh) in the checkout, return its status and output."""
    img = build()
    kern, initramfs = fast_kernel()
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
                  f"cgroup_no_v1=all panic=-1 printk.time=1 lxpy.repo={repo}")
        cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max",
               "-smp", str(cpus), "-m", memory, "-nographic", "-no-reboot",
               "-kernel", str(kern), "-initrd", str(initramfs), "-append", append,
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
        files = {p.name: p.read_text(errors="replace") for p in res.iterdir()
                 if p.is_file() and p.name not in ("job.sh", "out.log", "rc")}
        return Result(rc, out, con, time.monotonic() - t0, files)


def _debian_venv(venv: Path) -> bool:
    cfg = venv / "pyvenv.cfg"
    return (cfg.exists() and (venv / "bin/pytest").exists()
            and bool(re.search(r"^home\s*=\s*/usr/bin\s*$", cfg.read_text(), re.M)))


def ensure_venv(repo: Path = REPO) -> Path:
    """A venv inside the shared checkout built with Debian's /usr/bin/python3, so that the
    guest (the same Debian python) runs it as is: the running one or the checkout's .venv
    when they are such, else .venv-vm made here (python3 -m venv + pip install -e)."""
    for venv in (Path(sys.prefix), repo / ".venv", repo / ".venv-vm"):
        try:
            venv.resolve().relative_to(repo.resolve())
        except ValueError:
            continue
        if _debian_venv(venv):
            return venv
    venv = repo / ".venv-vm"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", "-e", f"{repo}[test]"], check=True)
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

# ruff: noqa: E501 - the guest scripts below are shell, kept on one line each
"""The acceptance path under a real systemd as PID 1: a Debian 12 guest under qemu (TCG, pure
cgroup v2) boots systemd, installs the .deb built by packaging/build-deb, and an admin's
session runs: lxpy-create -t busybox, systemctl start lxpy@bb1 (active only once init runs),
lxpy-stop by hand (unit inactive, not failed), a container started by hand is not started
twice, systemctl stop, lxpy.service autostart in order and stop, lxpy-net.service, journal.

Slow (a guest image is built once, ~5 min; each run boots systemd under emulation, ~3 min):
it is marked `long` and runs only when selected (CI leaves it out; run it after changing the
units, sd_notify or the package):

    .venv/bin/pytest -m long tests/vm
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.long]

IMAGE_VERSION = "2"
PACKAGES = ["systemd", "systemd-sysv", "python3", "python3-jinja2", "python3-sh",
            "python3-tomlkit", "python3-pyroute2", "libseccomp2", "iproute2", "nftables",
            "dnsmasq-base", "debootstrap", "busybox-static", "procps", "kmod"]

# PID 1 after the rig's initramfs switch_root: the 9p modules and the results share, then
# systemd itself (exec keeps PID 1).
GUEST_INIT = r"""#!/bin/busybox sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
KVER=$(/bin/busybox uname -r)
[ -d /sys/module/9p ] || for m in @MODULES@; do /bin/busybox insmod /lib/modules/$KVER/kernel/$m; done
/bin/busybox mount -o remount,rw /
/bin/busybox mkdir -p /results
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 results /results
exec /lib/systemd/systemd
"""

JOB_UNIT = """[Unit]
Description=lxpy acceptance job
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=file:/results/out.log
StandardError=inherit
ExecStart=/bin/sh -c '/bin/sh -x /results/job.sh; echo $? > /results/rc; sync'
ExecStartPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=1200
[Install]
WantedBy=multi-user.target
"""

JOB = r"""
set -u
export LANG=C.UTF-8
fail() { echo "FAIL: $*"; exit 1; }
active() { systemctl is-active "$1" 2>/dev/null; }
state() { lxpy-info -n "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
echo "systemd: $(readlink /proc/1/exe) cgroup: $(stat -fc %T /sys/fs/cgroup)"
dpkg -i /results/lxpy.deb || fail "dpkg -i"
lxpy-ls --version
systemctl daemon-reload
lxpy-create -n bb1 -t busybox -B dir || fail create   # the guest has no overlay module

# a unit of its own: active only once init runs (Type=notify READY)
systemctl start lxpy@bb1 || fail "systemctl start lxpy@bb1"
[ "$(active lxpy@bb1)" = active ] || fail "lxpy@bb1 not active"
[ "$(state bb1)" = RUNNING ] || fail "bb1 not RUNNING after systemctl start"
systemctl status lxpy@bb1 --no-pager | head -15
lxpy-attach -n bb1 -- hostname | grep -qx bb1 || fail attach
pid=$(lxpy-info -n bb1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
echo "bb1 init cgroup: $(cat /proc/$pid/cgroup)"
lxpy-ls -f

# stopped by hand: the unit goes inactive, not failed
lxpy-stop -n bb1 || fail "lxpy-stop"
for i in $(seq 1 100); do [ "$(active lxpy@bb1)" = active ] || break; sleep 0.2; done
a=$(active lxpy@bb1); [ "$a" = inactive ] || fail "after lxpy-stop: $a"
systemctl is-failed -q lxpy@bb1 && fail "lxpy@bb1 failed after a stop by hand"

# started by hand: the unit does not start it twice
lxpy-start -n bb1 || fail "lxpy-start by hand"
systemctl start lxpy@bb1 && fail "the unit started a running container"
journalctl -u lxpy@bb1 --no-pager | grep -q "already running" || fail "no reason in the journal"
[ "$(state bb1)" = RUNNING ] || fail "the running container was disturbed"
lxpy-stop -n bb1 || fail "lxpy-stop 2"
systemctl reset-failed lxpy@bb1

# systemctl stop: a clean stop through lxpy-stop
systemctl start lxpy@bb1 || fail "start 2"
systemctl stop lxpy@bb1 || fail "systemctl stop"
[ "$(state bb1)" = STOPPED ] || fail "bb1 not STOPPED after systemctl stop"
systemctl is-failed -q lxpy@bb1 && fail "failed after systemctl stop"

# boot-time autostart, in order, and the reverse at stop
lxpy-create -n bb2 -t busybox -B dir || fail "create bb2"
lxpy-config -n bb1 set autostart.enabled true
lxpy-config -n bb1 set autostart.order 20
lxpy-config -n bb2 set autostart.enabled true
lxpy-config -n bb2 set autostart.order 10
lxpy-autostart -L
systemctl start lxpy.service || fail "lxpy.service"
[ "$(state bb1)" = RUNNING ] && [ "$(state bb2)" = RUNNING ] || fail "autostart"
journalctl -u lxpy.service --no-pager | grep -E "starting bb"
systemctl stop lxpy.service || fail "stop lxpy.service"
[ "$(state bb1)" = STOPPED ] && [ "$(state bb2)" = STOPPED ] || fail "autostart stop"
journalctl -u lxpy.service --no-pager | grep -E "stopping bb"

# the managed bridge
systemctl start lxpy-net.service || { journalctl -u lxpy-net --no-pager | tail; fail "lxpy-net.service"; }
ip link show lxpybr0 || fail "no lxpybr0"
systemctl stop lxpy-net.service || fail "stop lxpy-net"

echo "journal of lxpy@bb1:"
journalctl -u lxpy@bb1 --no-pager | tail -20
echo ACCEPTANCE-OK
"""


def _image(rig) -> Path:
    key = hashlib.sha256(f"{IMAGE_VERSION} {rig.SUITE} {PACKAGES} {rig.kver()} {GUEST_INIT} "
                         f"{JOB_UNIT}"
                         .encode()).hexdigest()[:12]
    img = rig.cache_root() / f"systemd-guest-{rig.SUITE}-{key}.ext4"
    if img.exists():
        return img
    img.parent.mkdir(parents=True, exist_ok=True)
    with open(img.parent / ".lock-systemd", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if img.exists():
            return img
        with tempfile.TemporaryDirectory(dir=img.parent, prefix=".build-systemd-") as tmp:
            root = Path(tmp) / "root"
            subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                            rig.SUITE, str(root), rig.MIRROR], check=True,
                           stdout=subprocess.DEVNULL)
            kv = rig.kver()
            # all of the guest kernel's modules (bridge, veth, nf_tables... load on demand)
            shutil.copytree(f"/lib/modules/{kv}", root / f"lib/modules/{kv}", symlinks=True,
                            dirs_exist_ok=True)
            init = root / "sbin/lxpy-vm-init"
            init.write_text(GUEST_INIT.replace("@MODULES@", " ".join(rig.NINEP_MODULES)))
            init.chmod(0o755)
            (root / "etc/hostname").write_text("lxpy-vm\n")
            (root / "etc/fstab").write_text("")
            unit = root / "etc/systemd/system/lxpy-accept.service"
            unit.write_text(JOB_UNIT)
            wants = root / "etc/systemd/system/multi-user.target.wants"
            wants.mkdir(parents=True, exist_ok=True)
            (wants / "lxpy-accept.service").symlink_to("/etc/systemd/system/lxpy-accept.service")
            for noisy in ("getty@tty1.service", "serial-getty@ttyS0.service",
                          "systemd-timesyncd.service", "apt-daily.timer",
                          "apt-daily-upgrade.timer", "e2scrub_reap.service"):
                (root / "etc/systemd/system" / noisy).unlink(missing_ok=True)
                (root / "etc/systemd/system" / noisy).symlink_to("/dev/null")
            (root / "etc/machine-id").write_text("")
            for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(root / d, ignore_errors=True)
                (root / d).mkdir(parents=True, exist_ok=True)
            part = Path(tmp) / "img.ext4"
            subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(part), "3G"],
                           check=True)
            os.rename(part, img)
    return img


def test_units_under_systemd_in_a_guest(tmp_path):
    from tests.vm import rig
    missing = rig.missing_tools()
    if missing:
        pytest.skip(f"missing: {', '.join(missing)}")
    out = tmp_path / "dist"
    r = subprocess.run([str(REPO / "packaging/build-deb"), str(out)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    img = _image(rig)
    kern, initramfs = rig.fast_kernel()
    res = tmp_path / "results"
    res.mkdir()
    shutil.copy2(next(out.glob("lxpy_*_all.deb")), res / "lxpy.deb")
    (res / "job.sh").write_text(JOB)
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(img),
                    str(overlay)], check=True)
    console = tmp_path / "console.log"
    append = ("console=ttyS0 root=/dev/vda rootfstype=ext4 rw init=/sbin/lxpy-vm-init "
              "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 panic=-1 "
              "systemd.show_status=false")
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max",
           "-smp", "2", "-m", "1536M", "-nographic", "-no-reboot",
           "-kernel", str(kern), "-initrd", str(initramfs), "-append", append,
           "-drive", f"file={overlay},if=virtio,format=qcow2",
           "-virtfs", f"local,path={res},mount_tag=results,security_model=passthrough,"
                      "id=results",
           "-serial", f"file:{console}", "-monitor", "none", "-display", "none", "-nic", "none"]
    t0 = time.monotonic()
    try:
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=1500, check=False)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - t0
    log = (res / "out.log").read_text(errors="replace") if (res / "out.log").exists() else ""
    rc = (res / "rc").read_text().strip() if (res / "rc").exists() else "none"
    print(log)
    print(f"[guest] rc={rc} in {took:.0f}s")
    assert "ACCEPTANCE-OK" in log, (log[-4000:] or
                                    console.read_text(errors="replace")[-4000:])

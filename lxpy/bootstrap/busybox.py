"""A busybox rootfs from the host's static busybox (Debian: busybox-static), in milliseconds.

The tree: the FHS directories, /bin/busybox, one symlink per applet (`busybox
--list-full`), /sbin/init (busybox init) with an inittab, passwd/group/shadow and an rcS
that the template's rendered files complete (hostname, network)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

from ..errors import BootstrapError
from ..templates import Template, host_arch
from .tarball import sha256

CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

DIRS = {
    "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "usr/share": 0o755, "usr/share/udhcpc": 0o755, "lib": 0o755, "etc": 0o755,
    "etc/init.d": 0o755, "etc/network": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555,
    "run": 0o755, "tmp": 0o1777, "root": 0o700, "home": 0o755, "mnt": 0o755,
    "var": 0o755, "var/log": 0o755, "var/tmp": 0o1777, "var/spool": 0o755,
    "var/spool/cron": 0o755, "var/spool/cron/crontabs": 0o700,
}

FILES = {
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\n"
                   "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644),
    "etc/group": "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n",
    "etc/shadow": ("root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
                   "nobody:*:19000:0:99999:7:::\n", 0o600),
    "etc/inittab": (
        "# busybox init, as lxpy's busybox template sets it up\n"
        "::sysinit:/etc/init.d/rcS\n"
        "console::respawn:-/bin/sh\n"
        "::ctrlaltdel:/sbin/reboot\n"
        "::shutdown:/etc/init.d/rcK\n"
        "::restart:/sbin/init\n"),
    "etc/init.d/rcS": ("#!/bin/sh\n# lxpy: replaced per container by the busybox template\n"
                       "ip link set lo up 2>/dev/null\n", 0o755),
    "etc/init.d/rcK": ("#!/bin/sh\n# run at shutdown\nsync\n", 0o755),
    "etc/profile": ('export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n'
                    'export PS1="\\h:\\w\\$ "\n'),
    "etc/shells": "/bin/sh\n/bin/ash\n",
    "etc/fstab": "# the container's mounts are in its config.toml\n",
    "etc/hostname": "busybox\n",
    "etc/hosts": "127.0.0.1 localhost\n",
    "etc/resolv.conf": "",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
}


def find_busybox() -> Path | None:
    for c in CANDIDATES:
        p = Path(c)
        if p.is_file() and os.access(p, os.X_OK):
            return p
    w = shutil.which("busybox")
    return Path(w) if w else None


def is_static(path: Path) -> bool:
    """True when the ELF file has no program interpreter (PT_INTERP): statically linked."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        endian = "<" if head[5] == 1 else ">"
        if is64:
            phoff, = struct.unpack_from(endian + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(endian + "I", head, 28)
            phentsize, phnum = struct.unpack_from(endian + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from(endian + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def available() -> tuple[bool, str]:
    bb = find_busybox()
    if bb is None:
        return False, "no busybox on this host (apt install busybox-static)"
    if not is_static(bb):
        return False, f"{bb} is dynamically linked (apt install busybox-static)"
    return True, ""


def _version(bb: Path) -> str:
    r = subprocess.run([str(bb)], capture_output=True, text=True, check=False)
    m = re.search(r"BusyBox v(\S+)", r.stdout + r.stderr)
    return m.group(1) if m else "unknown"


def describe(template: Template, options: dict[str, Any]) -> dict[str, Any]:
    bb = find_busybox()
    arch = host_arch()
    if bb is None:
        return {"release": "", "arch": arch, "key": f"none-{arch}"}
    version = _version(bb)
    digest = sha256(bb)
    return {"release": version, "arch": arch, "busybox": str(bb), "sha256": digest,
            "key": f"{version}-{arch}-{digest[:8]}"}


def applets(bb: Path) -> list[str]:
    r = subprocess.run([str(bb), "--list-full"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BootstrapError(f"{bb} --list-full failed: {r.stderr.strip() or r.returncode}",
                             "install busybox-static")
    return [line.strip().lstrip("/") for line in r.stdout.splitlines() if line.strip()]


def build(template: Template, options: dict[str, Any], target: Path, entry: Path,
          progress) -> None:
    bb = find_busybox()
    if bb is None:
        raise BootstrapError("no busybox on this host", "apt install busybox-static")
    for d, mode in DIRS.items():
        p = target / d
        p.mkdir(exist_ok=True)
        os.chmod(p, mode)
    os.symlink("../run", target / "var/run")
    shutil.copyfile(bb, target / "bin/busybox")
    os.chmod(target / "bin/busybox", 0o755)
    for a in applets(bb):
        if a in ("bin/busybox", "") or ".." in a.split("/"):
            continue
        dest = target / a
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() and not dest.is_symlink():
            os.symlink("/bin/busybox", dest)
    for rel, spec in FILES.items():
        text, mode = (spec, 0o644) if isinstance(spec, str) else spec
        p = target / rel
        p.write_text(text)
        os.chmod(p, mode)
    for dev in ("console", "null", "zero", "tty", "ptmx", "random", "urandom", "full"):
        # the runtime populates /dev; empty placeholders make bind targets exist
        (target / "dev" / dev).touch()

"""Debian (and derivatives) with debootstrap, run through the `sh` library.

The cache entry is keyed by (release, arch, extra packages): the template's base package
set (template.toml [defaults] packages) plus what --packages adds beyond it, so
`--packages vim` gets an entry of its own (`bookworm-amd64+<hash>`) and the plain one
stays shared. The mirror is not part of the key: it only says where to download from.

After debootstrap the tree is made fit to be shared by many containers: the machine-id
is emptied (systemd makes one per container at first boot), the ssh host keys are
removed (each container makes its own at first boot: see the debian template), the
downloaded .debs are removed, and en_US.UTF-8 is generated."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
from collections import deque
from pathlib import Path
from typing import Any

from .. import safefs
from ..errors import BootstrapError, Interrupted
from ..linux.prctl import set_pdeathsig
from ..templates import Template, host_arch
from .cache import locked

log = logging.getLogger("lxpy.bootstrap")

LOG_NAME = "debootstrap.log"
_PROGRESS = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring|"
                       r"Installing|Resolving|Checking|Found|Base system)\s*(.*)$")


def available() -> tuple[bool, str]:
    if shutil.which("debootstrap", path=_path()) is None:
        return False, "debootstrap is not installed (apt install debootstrap)"
    return True, ""


def _path() -> str:
    return os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"


def packages(template: Template, options: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(base set, extra packages beyond it, sorted)."""
    base = [str(p) for p in template.defaults.get("packages", [])]
    extra = sorted({str(p) for p in options.get("packages") or []} - set(base))
    return base, extra


def describe(template: Template, options: dict[str, Any]) -> dict[str, Any]:
    release = str(options.get("release") or template.defaults.get("release") or "")
    arch = str(options.get("arch") or host_arch())
    base, extra = packages(template, options)
    key = f"{release}-{arch}"
    if extra:
        key += "+" + hashlib.sha256(",".join(extra).encode()).hexdigest()[:10]
    return {"release": release, "arch": arch, "key": key,
            "mirror": str(options.get("mirror") or template.defaults.get("mirror") or ""),
            "variant": str(template.defaults.get("variant", "minbase")),
            "packages": base + extra, "extra_packages": extra}


def _classify(lines: list[str], release: str, mirror: str, arch: str) -> str:
    """One line saying what went wrong, from debootstrap's output and log."""
    text = "\n".join(lines)
    low = text.lower()
    if re.search(r"unable to resolve host|temporary failure in name resolution|"
                 r"could not resolve|name or service not known|network is unreachable|"
                 r"connection refused|connection timed out|no route to host", low):
        return (f"cannot reach the mirror {mirror} (no network, or a wrong host name): "
                "check this host's network and --mirror")
    if "failed getting release file" in low or "release file" in low and "404" in low:
        return (f"release {release!r} not found at {mirror}: check the release name (-r) "
                "and the mirror (--mirror)")
    if "invalid release file" in low or "release signed by unknown key" in low or \
            "release signature" in low and "invalid" in low:
        return (f"the Release file of {release!r} at {mirror} does not check out (bad "
                "signature or not a Debian mirror): check --mirror, or install the "
                "distribution's keyring")
    if "no such script" in low:
        return f"debootstrap does not know release {release!r}: check -r"
    if "couldn't download package" in low or "couldn't download" in low:
        m = re.search(r"Couldn't download package (\S+)", text)
        what = f" ({m.group(1)})" if m else ""
        return f"a package download failed{what}: check --packages names and the mirror"
    if "couldn't find these debs" in low or "package" in low and "not available" in low:
        m = re.search(r"Couldn't find these debs: (.*)", text)
        return (f"unknown packages{': ' + m.group(1).strip() if m else ''}: check --packages"
                f" (names as in {release})")
    if "unknown architecture" in low or "exec format error" in low:
        return f"cannot bootstrap architecture {arch!r} on this host: check -a"
    if "no space left on device" in low:
        return "no space left on the disk of the rootfs cache"
    for line in reversed(lines):
        if line.startswith("E: "):
            return line[3:].strip()
    return "debootstrap failed"


def build(template: Template, options: dict[str, Any], target: Path, entry: Path,
          progress) -> None:
    import sh  # lazy: only a debootstrap needs it

    d = describe(template, options)
    release, arch, mirror = d["release"], d["arch"], d["mirror"]
    logpath = entry / LOG_NAME
    args = [f"--variant={d['variant']}", f"--arch={arch}"]
    if d["packages"]:
        args.append(f"--include={','.join(d['packages'])}")
    comps = template.defaults.get("components")
    if comps:
        args.append(f"--components={','.join(comps)}")
    keyring = template.defaults.get("keyring")
    if keyring and Path(keyring).exists():
        args.append(f"--keyring={keyring}")
    # downloaded .debs are kept beside the cache entries (checked against the mirror's
    # checksums when reused), so --flush-cache or another --packages set downloads only
    # what changed; one build at a time uses them (flock)
    debs = entry.parent / ".debs" / f"{release}-{arch}"
    debs.mkdir(parents=True, exist_ok=True)
    args.append(f"--cache-dir={debs}")
    args += [release, str(target), mirror]
    script = template.defaults.get("script")
    if script:
        args.append(str(script))
    tail: deque[str] = deque(maxlen=12)
    label = f"{template.cache_name()} {release}/{arch}"
    if progress:
        progress(f"bootstrapping {label} from {mirror} (once; later creates use the cache)")
    log.info("debootstrap %s", " ".join(args))
    env = {**os.environ, "PATH": _path(), "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    with locked(debs, f"{release}-{arch} downloads", progress), \
            open(logpath, "w", buffering=1) as logf:
        logf.write(f"# debootstrap {' '.join(args)}\n")

        def out(line: str) -> None:
            logf.write(line)
            line = line.rstrip("\n")
            tail.append(line)
            m = _PROGRESS.match(line)
            if m and progress:
                what = m.group(2).rstrip(".")
                progress(f"bootstrapping {label}: {m.group(1).lower()} {what}".rstrip())

        try:
            cmd = sh.Command("debootstrap", search_paths=_path().split(":"))
        except sh.CommandNotFound:
            raise BootstrapError("debootstrap is not installed",
                                 "apt install debootstrap") from None
        # own session: a Ctrl-C reaches us, and we stop it cleanly (its exit trap unmounts
        # what it mounted in the target); PDEATHSIG: if we are killed, it is stopped too
        proc = cmd(*args, _out=out, _err_to_out=True, _tty_out=False, _bg=True,
                   _bg_exc=False, _env=env, _new_session=True, _preexec_fn=_die_with_parent)
        try:
            proc.wait()
            status = 0
        except sh.ErrorReturnCode as e:
            status = e.exit_code
        except KeyboardInterrupt:
            _stop(proc)
            raise Interrupted("interrupted while bootstrapping; nothing was cached") from None
        logf.write(f"# exit {status}\n")
        if status != 0:
            lines = list(tail)
            inner = target / "debootstrap" / "debootstrap.log"
            if inner.is_file():
                try:
                    more = inner.read_text(errors="replace").splitlines()
                    logf.write("# debootstrap's own log (target/debootstrap/debootstrap.log):\n")
                    logf.write("\n".join(more[-200:]) + "\n")
                    lines += more[-30:]
                except OSError:
                    pass
            why = _classify(lines, release, mirror, arch)
            shown = "\n".join(f"  {x}" for x in list(tail)[-8:] if x.strip())
            err = BootstrapError(f"debootstrap of {release}/{arch} failed: {why} "
                                 f"(log: {logpath})\n{shown}")
            err.log = logpath  # type: ignore[attr-defined]
            raise err
    if progress:
        progress(f"bootstrapping {label}: preparing the tree for sharing")
    prepare_shared(target, template)


def _die_with_parent() -> None:
    set_pdeathsig(signal.SIGTERM)


def _stop(proc) -> None:
    """Stop debootstrap and its children, letting its exit trap unmount what it mounted."""
    try:
        proc.signal_group(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - sh raises its own timeout/exit errors
            proc.signal_group(signal.SIGKILL)
    except Exception:  # noqa: BLE001 - already gone
        pass


def prepare_shared(target: Path, template: Template) -> None:
    """Make a fresh debootstrap fit to be shared by many containers (see the module doc)."""
    with safefs.Root(target) as root:
        root.write("etc/machine-id", b"", mode=0o444)
        root.unlink("var/lib/dbus/machine-id")
        try:
            for n in root.listdir("etc/ssh"):
                if n.startswith("ssh_host_") and ("_key" in n):
                    root.unlink(f"etc/ssh/{n}")
        except FileNotFoundError:
            pass
        try:
            for n in root.listdir("var/cache/apt/archives"):
                if n.endswith(".deb"):
                    root.unlink(f"var/cache/apt/archives/{n}")
        except FileNotFoundError:
            pass
        for n in ("var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"):
            root.unlink(n)
        locales = [str(x) for x in template.defaults.get("locales", [])]
        if locales and root.exists("usr/sbin/locale-gen"):
            root.write("etc/locale.gen", "".join(f"{x}\n" for x in locales))
            r = subprocess.run(["chroot", str(target), "/usr/sbin/locale-gen"],
                               capture_output=True, text=True, check=False,
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
            if r.returncode != 0:
                log.warning("locale-gen in the cache failed: %s", r.stderr.strip())

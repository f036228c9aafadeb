"""What lxpy's network made, as JSON records under /run/lxpy/net: one file per running
container (containers/), per published port (forwards/), per moved device (phys/), and
the managed bridge's state (<bridge>/). A record names the netns (pid and inode) it
belongs to, so a record whose container is gone is recognised and dropped."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from .. import paths


def run_root() -> Path:
    return paths.RUN_ROOT / "net"


def containers_dir() -> Path:
    return run_root() / "containers"


def lxhash(lxpath: Path | str) -> str:
    return hashlib.sha256(os.fsencode(os.path.realpath(lxpath))).hexdigest()[:12]


def container_file(name: str, lxpath: Path | str) -> Path:
    return containers_dir() / f"{lxhash(lxpath)}-{name}.json"


def alive(rec: dict[str, Any]) -> bool:
    """Is the process rec["pid"] still in the netns rec["netns"] (its container runs)?"""
    try:
        return os.stat(f"/proc/{int(rec['pid'])}/ns/net").st_ino == int(rec["netns"])
    except (OSError, KeyError, ValueError):
        return False


def load_all(d: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            out.append((f, json.loads(f.read_text())))
        except (OSError, ValueError):
            continue
    return out


def load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def containers() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(live, dead) records of containers; the dead ones' files go (their container is
    gone: a killed monitor, a forked helper)."""
    d = containers_dir()
    live, dead = [], []
    for f, rec in load_all(d):
        if alive(rec):
            live.append(rec)
        else:
            unlink(f)
            dead.append(rec)
    prune(d)
    return live, dead


def on_bridge(bridge: str) -> list[tuple[str, list[str]]]:
    """Running containers (of any lxpath) with a veth on bridge: [(label, [host ends])],
    label like 'web' or 'web' (in /srv/lx)."""
    dflt = os.path.realpath(paths.default_lxpath())
    out = []
    for rec in containers()[0]:
        ends = [i.get("host", "") for i in rec.get("ifaces", [])
                if i.get("type") == "veth" and i.get("link") == bridge and i.get("host")]
        if ends:
            where = rec.get("lxpath") or ""
            label = f"'{rec.get('container')}'" + (
                f" (in {where})" if where and os.path.realpath(where) != dflt else "")
            out.append((label, ends))
    return out


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for attempt in range(5):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(json.dumps(data, indent=1))
            break
        except FileNotFoundError:   # prune() took the empty directory meanwhile
            if attempt == 4:
                raise
    os.replace(tmp, path)


def unlink(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


def forget(path: Path) -> None:
    """Remove a record, and its directory once it is empty."""
    unlink(path)
    prune(path.parent)


@contextmanager
def dir_lock(d: Path) -> Iterator[None]:
    """flock on the directory d itself (no lock file left behind). The holder removes d
    on the way out when it is empty (prune), so a waiter checks that what it locked is
    still the directory there, else it locks the new one."""
    while True:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st, mine = os.stat(d), os.fstat(fd)
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        prune(d)
        os.close(fd)


def prune(d: Path) -> None:
    """Remove d, then run_root(), when they are empty: once the last container, device
    and forward record is gone nothing of lxpy's network stays under /run. A writer that
    made the directory just before it went tries again (write_json); dir_lock re-checks
    the directory it locked."""
    for p in (d, run_root()):
        try:
            os.rmdir(p)
        except OSError:
            return

"""Id maps: which host ids stand for a container's ids (its user namespace).

resolve() is the one place that turns a container's `idmap` setting into the maps its user
namespace gets (None: a privileged container, no user namespace). The setting says:

- "auto" (the default): the container's own block of 65536 host ids, allocated from root's
  ranges in /etc/subuid and /etc/subgid and recorded host-wide in /var/lib/lxpy/idmap.toml,
  keyed by lxpath and name, so that no two containers of any lxpath share a block. Blocks
  are allocated at create (and copy), lazily by resolve() for a container that has none,
  moved by rename, released by destroy, and reused; an entry whose container directory is
  gone (and whose container lock nobody holds) is pruned when a block is allocated.
- "shared": slot 0 of root's range, one block for all such containers (as LXC does);
  "auto" allocates from the slots after it.
- "none": privileged.
- explicit maps, as written.

`idmap_pass` punches holes in the resolved map: inside N is host N.
"""

from __future__ import annotations

import bisect
import fcntl
import os
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config.atomic import write_new
from .config.edit import toml_str
from .container import Container
from .errors import ConfigError

Triples = tuple[tuple[int, int, int], ...]

BLOCK = 65536
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
DB = Path("/var/lib/lxpy/idmap.toml")
RANGE_HINT = ("add a range for root to both files, like: echo root:1000000:1000000000 | "
              "tee -a /etc/subuid /etc/subgid (scripts/setup-host and the lxpy package do it)")


@dataclass(frozen=True)
class IdMap:
    uid: Triples        # [inside, outside, count] lines of uid_map
    gid: Triples

    @staticmethod
    def _host(mapping: Triples, inside: int) -> int:
        for a, b, n in mapping:
            if a <= inside < a + n:
                return b + inside - a
        raise ValueError(f"id {inside} is not mapped")

    def host_uid(self, inside: int = 0) -> int:
        return self._host(self.uid, inside)

    def host_gid(self, inside: int = 0) -> int:
        return self._host(self.gid, inside)


@dataclass(frozen=True)
class Block:
    """A block of BLOCK host uids and gids starting at uid and gid."""

    uid: int
    gid: int

    def idmap(self) -> IdMap:
        return IdMap(((0, self.uid, BLOCK),), ((0, self.gid, BLOCK),))


@dataclass(frozen=True)
class Entry:
    lxpath: str
    name: str
    block: Block


# ---------------------------------------------------------------------------
# root's subordinate ranges


def read_ranges(path: Path, user: str = "root") -> list[tuple[int, int]]:
    """(start, count) of user's lines in a subuid/subgid file, in file order ("root" or
    "0"); [] when the file is missing. A malformed line of another user is not ours."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.strip().split(":")
        if not line.strip() or line.lstrip().startswith("#") or parts[0] not in (user, "0"):
            continue
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ConfigError(f"{path}:{n}: {line.strip()!r} is not NAME:START:COUNT",
                              f"fix the line; {RANGE_HINT}")
        out.append((int(parts[1]), int(parts[2])))
    return out


def _blocks(ranges: list[tuple[int, int]]) -> list[int]:
    return [start + k * BLOCK for start, count in ranges for k in range(count // BLOCK)]


@dataclass(frozen=True)
class Registry:
    """Where the ranges and the allocations are (the host's files by default; tests give
    temporary ones)."""

    db: Path = DB
    subuid: Path = SUBUID
    subgid: Path = SUBGID
    # entries whose container lock is held are never pruned (their operation is under way)
    busy: Callable[[str, str], bool] = field(default=lambda lxpath, name: _lock_held(
        Container(name, lxpath).lock_path), compare=False)

    def slots(self) -> list[Block]:
        """root's blocks: the uid blocks and the gid blocks paired in order."""
        uids, gids = _blocks(read_ranges(self.subuid)), _blocks(read_ranges(self.subgid))
        if not uids or not gids:
            short = self.subuid if not uids else self.subgid
            raise ConfigError(f"{short} gives root no range of {BLOCK} subordinate ids",
                              RANGE_HINT)
        return [Block(u, g) for u, g in zip(uids, gids, strict=False)]

    # -- the record ----------------------------------------------------------
    def read(self) -> list[Entry]:
        try:
            with open(self.db, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            return []
        except (tomllib.TOMLDecodeError, OSError) as e:
            raise ConfigError(f"{self.db}: cannot read the id map record: {e}",
                              "fix it, or move it away (containers then get new blocks)"
                              ) from None
        try:
            return [Entry(str(e["lxpath"]), str(e["name"]), Block(int(e["uid"]), int(e["gid"])))
                    for e in data.get("container", [])]
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{self.db}: an entry is malformed ({e!r} missing or wrong)",
                              "fix it, or move it away (containers then get new blocks)"
                              ) from None

    def _write(self, entries: list[Entry]) -> None:
        lines = ["# Which block of subordinate ids each container holds (lxpy.idmap).",
                 "# Written by lxpy; lxpy-destroy frees a block.", ""]
        for e in sorted(entries, key=lambda e: (e.lxpath, e.name)):
            lines += ["[[container]]", f"lxpath = {toml_str(e.lxpath)}",
                      f"name = {toml_str(e.name)}", f"uid = {e.block.uid}",
                      f"gid = {e.block.gid}", f"count = {BLOCK}", ""]
        write_new(self.db, "\n".join(lines))

    @contextmanager
    def _locked(self) -> Iterator[list[Entry]]:
        """The entries under the record's lock; what the caller leaves in the list is
        written back (if it changed)."""
        self.db.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.db.parent / f".{self.db.name}.lock",
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = self.read()
            before = list(entries)
            yield entries
            if entries != before:
                self._write(entries)
        finally:
            os.close(fd)

    # -- operations ----------------------------------------------------------
    def lookup(self, lxpath: str, name: str) -> Block | None:
        key = (_key(lxpath), name)
        return next((e.block for e in self.read() if (e.lxpath, e.name) == key), None)

    def allocate(self, lxpath: str, name: str) -> Block:
        """The block of (lxpath, name): the one it holds, or the first free one (slot 0,
        the shared block, is never given)."""
        key = (_key(lxpath), name)
        with self._locked() as entries:
            for e in entries:
                if (e.lxpath, e.name) == key:
                    return e.block
            slots = self.slots()[1:]
            entries[:] = [e for e in entries if os.path.isdir(os.path.join(e.lxpath, e.name))
                          or self.busy(e.lxpath, e.name)]
            taken_u = _Intervals(e.block.uid for e in entries)
            taken_g = _Intervals(e.block.gid for e in entries)
            for b in slots:
                if not taken_u.overlaps(b.uid) and not taken_g.overlaps(b.gid):
                    entries.append(Entry(key[0], name, b))
                    return b
        raise ConfigError(f"all {len(slots)} blocks of root's subordinate ids are taken "
                          f"({self.subuid}, {self.subgid})",
                          "destroy containers you no longer need, or add a range for root "
                          "to both files")

    def release(self, lxpath: str, name: str) -> None:
        if not self.db.exists():
            return
        key = (_key(lxpath), name)
        with self._locked() as entries:
            entries[:] = [e for e in entries if (e.lxpath, e.name) != key]

    def move(self, lxpath: str, old: str, new_lxpath: str, new: str) -> None:
        """The entry of (lxpath, old) becomes (new_lxpath, new) (a rename)."""
        if not self.db.exists():
            return
        key = (_key(lxpath), old)
        with self._locked() as entries:
            entries[:] = [Entry(_key(new_lxpath), new, e.block)
                          if (e.lxpath, e.name) == key else e for e in entries]


class _Intervals:
    """Starts of taken blocks, each BLOCK long, for overlap tests."""

    def __init__(self, starts) -> None:
        self.starts = sorted(starts)

    def overlaps(self, start: int) -> bool:
        i = bisect.bisect_left(self.starts, start)
        return (i < len(self.starts) and self.starts[i] < start + BLOCK) or \
            (i > 0 and self.starts[i - 1] + BLOCK > start)


def _key(lxpath: str | Path) -> str:
    return os.path.realpath(lxpath)


def _lock_held(path: Path) -> bool:
    """Whether some process holds a flock on path (/proc/locks; nothing is locked or
    created by asking)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            return any(want in line.split() for line in f)
    except OSError:
        return True         # cannot tell: keep the entry


HOST = Registry()

# ---------------------------------------------------------------------------
# What the rest of lxpy calls


def privileged(cfg: Any) -> bool:
    """True for a privileged container (idmap = "none"): no user namespace."""
    return cfg.idmap.mode == "none"


def _base(container: Any, cfg: Any, allocate: bool, reg: Registry) -> IdMap | None:
    mode = cfg.idmap.mode
    if mode == "none":
        return None
    if mode == "explicit":
        return IdMap(tuple(cfg.idmap.uid), tuple(cfg.idmap.gid))
    if mode == "shared":
        return reg.slots()[0].idmap()
    if allocate:
        return reg.allocate(str(container.lxpath), container.name).idmap()
    b = reg.lookup(str(container.lxpath), container.name)
    return b.idmap() if b is not None else None


def resolve(container, cfg, *, allocate: bool = True, registry: Registry = HOST
            ) -> IdMap | None:
    """The container's maps, or None for a privileged container. allocate: give it a block
    when its setting asks for one and it has none yet (False: only look; None then also
    means an "auto" container that holds no block yet)."""
    m = _base(container, cfg, allocate, registry)
    if m is None or not cfg.idmap_pass:
        return m
    uids, gids = pass_ids(cfg.idmap_pass)
    return IdMap(punch(m.uid, uids, "uid"), punch(m.gid, gids, "gid"))


def assign(container, cfg, registry: Registry = HOST) -> None:
    """At create and copy: give a container whose setting is "auto" its block now (the
    others need none); checks that a "shared" one has a block to share."""
    if cfg.idmap.mode in ("auto", "shared"):
        resolve(container, cfg, registry=registry)


def release(container, registry: Registry = HOST) -> None:
    """Free the block a destroyed container held (nothing for explicit maps)."""
    registry.release(str(container.lxpath), container.name)


def moved(old, new, registry: Registry = HOST) -> None:
    """A container was renamed (or moved to another lxpath): its block goes with it."""
    registry.move(str(old.lxpath), old.name, str(new.lxpath), new.name)


def describe(container, cfg, registry: Registry = HOST) -> dict[str, Any]:
    """What lxpy-info shows: privileged or not, the mode, the maps it holds (None: an
    "auto" container with no block yet). Never allocates."""
    out: dict[str, Any] = {"privileged": privileged(cfg), "mode": cfg.idmap.mode}
    if out["privileged"]:
        return out
    try:
        m = resolve(container, cfg, allocate=False, registry=registry)
    except ConfigError as e:
        out["error"] = e.message
        m = None
    out["uid"] = [list(t) for t in m.uid] if m else None
    out["gid"] = [list(t) for t in m.gid] if m else None
    return out


# ---------------------------------------------------------------------------
# Pass-through


def pass_ids(items) -> tuple[list[int], list[int]]:
    """idmap_pass's items -> (uids, gids), each sorted without repeats."""
    uids, gids = set(), set()
    for x in items:
        if isinstance(x, int):
            uids.add(x)
            gids.add(x)
        else:
            kind, n = x.split()
            (uids if kind == "uid" else gids).add(int(n))
    return sorted(uids), sorted(gids)


def punch(mapping: Triples, ids: list[int], what: str) -> Triples:
    """mapping with each id in ids mapped to itself: the triple holding it split around a
    line of its own. An id the map does not hold inside, or whose host id the map already
    gives to another inside id, is a ConfigError."""
    out = list(mapping)
    for n in ids:
        i = next((i for i, (a, _b, c) in enumerate(out) if a <= n < a + c), None)
        if i is None:
            raise ConfigError(f"idmap_pass: {what} {n} is not in the container's id map",
                              "pass through ids below the map's size (65536)")
        a, b, c = out[i]
        if b == n == a and c == 1:
            continue
        other = next((x + n - y for x, y, z in out if y <= n < y + z and x + n - y != n), None)
        if other is not None:
            raise ConfigError(f"idmap_pass: host {what} {n} already stands for {what} {other} "
                              "in the container's id map", "pass through another id, or "
                              "change the map")
        pieces = [(a, b, n - a), (n, n, 1), (n + 1, b + n - a + 1, a + c - n - 1)]
        out[i:i + 1] = [p for p in pieces if p[2] > 0]
    return tuple(out)

"""lxpy.idmap without root: the allocator on temporary subuid/subgid files and a temporary
record, the parsing of idmap and idmap_pass, resolve() of each form, pass-through holes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxpy import idmap
from lxpy.config.loader import load_data
from lxpy.config.schema import IdmapSetting
from lxpy.errors import ConfigError
from lxpy.idmap import BLOCK, Registry


def registry(tmp: Path, uid_lines: str = "root:1000000:1000000000\n",
             gid_lines: str | None = None, busy=lambda lxpath, name: False) -> Registry:
    (tmp / "subuid").write_text(uid_lines)
    (tmp / "subgid").write_text(uid_lines if gid_lines is None else gid_lines)
    return Registry(db=tmp / "lib" / "idmap.toml", subuid=tmp / "subuid",
                    subgid=tmp / "subgid", busy=busy)


def container(lxpath: Path, name: str):
    """A container directory in place (what pruning looks for) and its handle."""
    (lxpath / name).mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(lxpath=lxpath, name=name)


def cfg_of(data: dict):
    return load_data(data, "c/config.toml")


# ---------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize("value,mode", [("auto", "auto"), ("shared", "shared"),
                                        ("none", "none")])
def test_modes_parse(value, mode):
    cfg = cfg_of({"idmap": value})
    assert cfg.idmap.mode == mode and cfg.idmap.uid == () and cfg.idmap.gid == ()
    assert cfg.to_dict()["idmap"] == value


def test_default_is_auto():
    assert cfg_of({}).idmap == IdmapSetting("auto")


def test_explicit_table_keeps_cfg_idmap_uid_readable():
    m = {"uid": [[0, 100000, 65536]], "gid": [[0, 200000, 65536]]}
    cfg = cfg_of({"idmap": m})
    assert cfg.idmap.mode == "explicit"
    assert cfg.idmap.uid == ((0, 100000, 65536),) and cfg.idmap.gid == ((0, 200000, 65536),)
    assert cfg.to_dict()["idmap"] == m
    assert cfg.get("idmap") == m


@pytest.mark.parametrize("data,expect", [
    ({"idmap": "isolated"}, "idmap: 'isolated' is not an id map (say \"auto\""),
    ({"idmap": {"uid": [[0, 1, 65536]]}}, "set both idmap.uid and idmap.gid"),
    ({"idmap": {"uid": [[0, 1]], "gid": [[0, 1, 2]]}}, "idmap: uid: [0, 1] is not an [inside"),
    ({"idmap": {"uid": [[0, 1, 2]], "gid": [[0, 1, 2]], "user": 3}},
     "'user' is not part of an explicit id map"),
    ({"idmap_pass": ["uid x"]}, "idmap_pass: 'uid x' is not an id to pass through"),
    ({"idmap_pass": [0]}, "passing id 0 through would make root inside root on the host"),
    ({"idmap_pass": [True]}, "is not an id to pass through"),
    ({"idmap": "none", "idmap_pass": [1000]}, "idmap_pass: a privileged container"),
    ({"idmapp": "auto"}, "(did you mean idmap?)"),
])
def test_bad_settings_are_one_line_errors(data, expect):
    with pytest.raises(ConfigError) as e:
        cfg_of(data)
    assert expect in str(e.value)
    assert "\n" not in e.value.message


def test_idmap_pass_normalized_as_written():
    cfg = cfg_of({"idmap_pass": [1000, "uid  33", "gid 100", "7"]})
    assert cfg.idmap_pass == (1000, "uid 33", "gid 100", 7)
    assert idmap.pass_ids(cfg.idmap_pass) == ([7, 33, 1000], [7, 100, 1000])


# ---------------------------------------------------------------------------
# resolve() of each form


def test_resolve_none_is_privileged(tmp_path):
    reg = registry(tmp_path)
    c = container(tmp_path / "lx", "p")
    assert idmap.resolve(c, cfg_of({"idmap": "none"}), registry=reg) is None
    assert not reg.db.exists()
    assert idmap.describe(c, cfg_of({"idmap": "none"}), reg) == {"privileged": True,
                                                                  "mode": "none"}


def test_resolve_explicit_as_written(tmp_path):
    reg = registry(tmp_path)
    cfg = cfg_of({"idmap": {"uid": [[0, 100000, 65536]], "gid": [[0, 100000, 65536]]}})
    m = idmap.resolve(container(tmp_path / "lx", "e"), cfg, registry=reg)
    assert m == idmap.IdMap(((0, 100000, 65536),), ((0, 100000, 65536),))
    assert not reg.db.exists()


def test_resolve_shared_is_slot_zero_for_all(tmp_path):
    reg = registry(tmp_path, "root:1000000:1000000000\n", "root:2000000:1000000000\n")
    cfg = cfg_of({"idmap": "shared"})
    a = idmap.resolve(container(tmp_path / "lx", "a"), cfg, registry=reg)
    b = idmap.resolve(container(tmp_path / "lx", "b"), cfg, registry=reg)
    assert a == b == idmap.IdMap(((0, 1000000, BLOCK),), ((0, 2000000, BLOCK),))
    assert not reg.db.exists()


def test_resolve_auto_allocates_once_and_only_when_asked(tmp_path):
    reg = registry(tmp_path)
    c = container(tmp_path / "lx", "web1")
    cfg = cfg_of({})
    assert idmap.resolve(c, cfg, allocate=False, registry=reg) is None
    assert idmap.describe(c, cfg, reg) == {"privileged": False, "mode": "auto",
                                           "uid": None, "gid": None}
    m = idmap.resolve(c, cfg, registry=reg)
    assert m.uid == ((0, 1000000 + BLOCK, BLOCK),)          # slot 0 is the shared block
    assert idmap.resolve(c, cfg, registry=reg) == m
    assert idmap.resolve(c, cfg, allocate=False, registry=reg) == m
    assert idmap.describe(c, cfg, reg)["uid"] == [[0, 1000000 + BLOCK, BLOCK]]


def test_no_range_for_root_says_what_to_add(tmp_path):
    reg = registry(tmp_path, "bob:100000:65536\n")
    with pytest.raises(ConfigError) as e:
        idmap.resolve(container(tmp_path / "lx", "a"), cfg_of({}), registry=reg)
    assert "gives root no range of 65536 subordinate ids" in e.value.message
    assert "root:1000000:1000000000" in e.value.hint and "setup-host" in e.value.hint
    assert not reg.db.exists()


def test_malformed_root_line_named(tmp_path):
    reg = registry(tmp_path, "root:lots\n")
    with pytest.raises(ConfigError, match=r"subuid:1: 'root:lots' is not NAME:START:COUNT"):
        reg.slots()


def test_exhausted_ranges_say_so(tmp_path):
    reg = registry(tmp_path, f"root:0:{3 * BLOCK}\n")
    lx = tmp_path / "lx"
    reg.allocate(str(lx), container(lx, "a").name)
    reg.allocate(str(lx), container(lx, "b").name)
    with pytest.raises(ConfigError, match="all 2 blocks of root's subordinate ids are taken"):
        reg.allocate(str(lx), container(lx, "c").name)


# ---------------------------------------------------------------------------
# Pass-through holes


def test_pass_through_punches_holes(tmp_path):
    reg = registry(tmp_path)
    cfg = cfg_of({"idmap": "shared", "idmap_pass": [1000, "uid 33", "gid 100"]})
    m = idmap.resolve(container(tmp_path / "lx", "a"), cfg, registry=reg)
    b = 1000000
    assert m.uid == ((0, b, 33), (33, 33, 1), (34, b + 34, 966), (1000, 1000, 1),
                     (1001, b + 1001, BLOCK - 1001))
    assert m.gid == ((0, b, 100), (100, 100, 1), (101, b + 101, 899), (1000, 1000, 1),
                     (1001, b + 1001, BLOCK - 1001))
    assert m.host_uid(0) == b and m.host_uid(33) == 33 and m.host_gid(100) == 100


@given(st.lists(st.integers(1, BLOCK - 1), max_size=12))
def test_holes_keep_a_bijection(ids):
    m = idmap.punch(((0, 5000000, BLOCK),), sorted(set(ids)), "uid")
    inside = [a + k for a, _b, n in m for k in range(n)]
    outside = [b + k for _a, b, n in m for k in range(n)]
    assert sorted(inside) == list(range(BLOCK))              # every id still mapped once
    assert len(set(outside)) == BLOCK                        # no host id twice
    for n in ids:
        assert (n, n, 1) in m
    assert all(c > 0 for _a, _b, c in m)


def test_pass_through_outside_the_map_or_clashing_is_an_error():
    with pytest.raises(ConfigError, match="uid 70000 is not in the container's id map"):
        idmap.punch(((0, 1000000, BLOCK),), [70000], "uid")
    with pytest.raises(ConfigError, match="host uid 600 already stands for uid 100"):
        idmap.punch(((0, 500, 1000),), [600], "uid")


# ---------------------------------------------------------------------------
# The allocator: no overlap, reuse, pruning, rename, across lxpaths


def test_record_survives_and_keys_on_lxpath_and_name(tmp_path):
    reg = registry(tmp_path)
    lx1, lx2 = tmp_path / "one", tmp_path / "two"
    a = reg.allocate(str(lx1), container(lx1, "web").name)
    b = reg.allocate(str(lx2), container(lx2, "web").name)
    assert a != b
    again = Registry(db=reg.db, subuid=reg.subuid, subgid=reg.subgid)   # a later process
    assert again.lookup(str(lx1), "web") == a and again.lookup(str(lx2), "web") == b
    assert "[[container]]" in reg.db.read_text()
    assert sorted(os.listdir(reg.db.parent)) == [".idmap.toml.lock", "idmap.toml"]


def test_release_then_reuse(tmp_path):
    reg = registry(tmp_path)
    lx = tmp_path / "lx"
    blocks = [reg.allocate(str(lx), container(lx, f"c{i}").name) for i in range(3)]
    reg.release(str(lx), "c1")
    assert reg.allocate(str(lx), container(lx, "d").name) == blocks[1]


def test_prune_drops_gone_containers_but_not_busy_ones(tmp_path):
    lx = tmp_path / "lx"
    busy = {"moving"}
    reg = registry(tmp_path, busy=lambda lxpath, name: name in busy)
    gone = reg.allocate(str(lx), container(lx, "gone").name)
    moving = reg.allocate(str(lx), container(lx, "moving").name)
    os.rmdir(lx / "gone")
    os.rmdir(lx / "moving")             # its operation holds its lock: kept
    assert reg.allocate(str(lx), container(lx, "new").name) == gone
    assert reg.lookup(str(lx), "gone") is None
    assert reg.lookup(str(lx), "moving") == moving


def test_lock_held_reads_proc_locks(tmp_path):
    import fcntl
    p = tmp_path / ".c.lock"
    assert not idmap._lock_held(p)
    fd = os.open(p, os.O_RDWR | os.O_CREAT)
    try:
        assert not idmap._lock_held(p)
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert idmap._lock_held(p)
    finally:
        os.close(fd)
    assert not idmap._lock_held(p)


def test_move_keeps_the_block(tmp_path):
    reg = registry(tmp_path)
    lx = tmp_path / "lx"
    b = reg.allocate(str(lx), container(lx, "old").name)
    reg.move(str(lx), "old", str(lx), "new")
    assert reg.lookup(str(lx), "old") is None and reg.lookup(str(lx), "new") == b


ops = st.lists(st.tuples(st.sampled_from(["alloc", "release", "gone"]),
                         st.integers(0, 11)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops, st.sampled_from([
    ("root:1000000:1000000000\n", None),
    (f"root:100000:{5 * BLOCK}\nbob:0:7\n0:{10 * BLOCK + 123}:{8 * BLOCK + 5}\n",
     f"root:300000:{20 * BLOCK}\n"),
]))
def test_allocator_never_overlaps_and_reuses(steps, ranges):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        reg = registry(tmp, ranges[0], ranges[1])
        lx = tmp / "lx"
        slots = reg.slots()
        held: dict[str, idmap.Block] = {}
        stale: dict[str, idmap.Block] = {}     # gone without release, not pruned yet
        for op, i in steps:
            name = f"c{i}"
            if op == "alloc":
                # a stale entry of this very name is valid again (its directory is back);
                # the other stale ones are pruned by this allocation
                if name in stale:
                    held[name] = stale[name]
                stale.clear()
                full = len(held) >= len(slots) - 1
                try:
                    b = reg.allocate(str(lx), container(lx, name).name)
                except ConfigError:
                    assert full and name not in held
                    continue
                assert held.get(name, b) == b
                assert b != slots[0] and b in slots
                # the lowest free slot: a released block is the first reused
                free = [s for s in slots[1:] if s not in held.values() or held.get(name) == s]
                assert b == free[0] or held.get(name) == b
                held[name] = b
            elif op == "release":
                reg.release(str(lx), name)
                held.pop(name, None)
                stale.pop(name, None)
                if (lx / name).is_dir():
                    os.rmdir(lx / name)
            elif (lx / name).is_dir():          # gone without release: pruned at next alloc
                os.rmdir(lx / name)
                if name in held:
                    stale[name] = held.pop(name)
            entries = reg.read()
            assert len({(e.lxpath, e.name) for e in entries}) == len(entries)
            for x in entries:
                for y in entries:
                    if x is not y:
                        assert abs(x.block.uid - y.block.uid) >= BLOCK
                        assert abs(x.block.gid - y.block.gid) >= BLOCK


# ---------------------------------------------------------------------------
# packaging/subid-root (setup-host and the .deb's postinst run it)


SUBID_ROOT = Path(__file__).resolve().parents[2] / "packaging" / "subid-root"


def subid_root(d: Path) -> str:
    import subprocess
    return subprocess.run(["sh", str(SUBID_ROOT), str(d)], capture_output=True, text=True,
                          check=True).stdout


def test_subid_root_adds_a_range_once(tmp_path):
    assert "gave root the subordinate ids 1000000-1000999999" in subid_root(tmp_path)
    assert (tmp_path / "subuid").read_text() == "root:1000000:1000000000\n"
    assert (tmp_path / "subgid").read_text() == "root:1000000:1000000000\n"
    assert subid_root(tmp_path) == ""                       # idempotent
    assert (tmp_path / "subuid").read_text() == "root:1000000:1000000000\n"
    reg = Registry(db=tmp_path / "db.toml", subuid=tmp_path / "subuid",
                   subgid=tmp_path / "subgid")
    assert len(reg.slots()) == 1000000000 // BLOCK


def test_subid_root_keeps_others_and_overlaps_none(tmp_path):
    (tmp_path / "subuid").write_text("bob:100000:65536\nal:1000000:65536")    # no newline
    (tmp_path / "subgid").write_text("0:5:70000\n")
    subid_root(tmp_path)
    lines = (tmp_path / "subuid").read_text().splitlines()
    assert lines[:2] == ["bob:100000:65536", "al:1000000:65536"]
    start, count = map(int, lines[2].split(":")[1:])
    assert lines[2].startswith("root:") and start >= 1065536 and start % BLOCK == 0
    assert start + count <= 2**32 - 1
    assert (tmp_path / "subgid").read_text() == "0:5:70000\n"           # root has one already


def test_prune_spares_a_container_whose_lock_is_held(tmp_path):
    """The default `busy`: a rename or copy in flight holds the container's lock while its
    directory is elsewhere; an allocation meanwhile keeps its entry."""
    from lxpy.container import Container
    (tmp_path / "subuid").write_text("root:1000000:1000000000\n")
    (tmp_path / "subgid").write_text("root:1000000:1000000000\n")
    reg = Registry(db=tmp_path / "db.toml", subuid=tmp_path / "subuid",
                   subgid=tmp_path / "subgid")
    lx = tmp_path / "lx"
    held = reg.allocate(str(lx), container(lx, "moving").name)
    gone = reg.allocate(str(lx), container(lx, "gone").name)
    os.rmdir(lx / "moving")
    os.rmdir(lx / "gone")
    with Container("moving", lx).lock():
        assert reg.allocate(str(lx), container(lx, "new").name) == gone
    assert reg.lookup(str(lx), "moving") == held

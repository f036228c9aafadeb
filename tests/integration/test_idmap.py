"""Id maps per container (issue 16), as an admin meets them: each container made from the
shipped templates holds its own block of 65536 host ids from root's range in /etc/subuid,
recorded in /var/lib/lxpy/idmap.toml; destroy frees it, rename keeps it, copy gets a new one;
--privileged shows in lxpy-ls and lxpy-info; a bad setting is one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lxpy import idmap
from lxpy.idmap import BLOCK

from .test_lifecycle import assert_one_line_error, visible_entries

pytestmark = pytest.mark.root


def block_of(lxpy, name: str) -> tuple[int, int]:
    """(host uid, host gid) of the container's root, from lxpy-info --json."""
    m = json.loads(lxpy("info", "-n", name, "--json", "--no-size").stdout)["idmap"]
    assert m["privileged"] is False and m["mode"] == "auto", m
    assert m["uid"] == [[0, m["uid"][0][1], BLOCK]] and m["gid"] == [[0, m["gid"][0][1], BLOCK]]
    return m["uid"][0][1], m["gid"][0][1]


def recorded(lxpath: Path) -> dict[str, idmap.Block]:
    """The host-wide record's entries of this lxpath, by name."""
    key = os.path.realpath(lxpath)
    return {e.name: e.block for e in idmap.HOST.read() if e.lxpath == key}


def ownership(tree: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for d, dirs, files in os.walk(tree):
        for n in [*dirs, *files, "."]:
            st = os.lstat(os.path.join(d, n))
            out[os.path.join(d, n)] = (st.st_uid, st.st_gid)
    return out


def info_lines(lxpy, name: str) -> dict[str, str]:
    """lxpy-info's text output as {label: value}."""
    out = {}
    for line in lxpy("info", "-n", name, "--no-size").stdout.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


@pytest.fixture
def record(lxpy, lxpath):
    """After the test: destroying its containers leaves no entry of its lxpath behind."""
    yield
    for _ in range(3):          # snapshot clones before the containers they depend on
        for c in sorted(p.name for p in lxpath.iterdir() if (p / "config.toml").exists()):
            lxpy("destroy", "-n", c, "-f", "-s", check=False)
    assert visible_entries(lxpath) == []
    assert recorded(lxpath) == {}


def test_ten_containers_ten_blocks_cache_unshifted_destroy_frees(lxpy, lxpath, record):
    root_uids = idmap.read_ranges(idmap.SUBUID)
    assert root_uids, "setup-host (packaging/subid-root) gives root a range in /etc/subuid"
    shared = idmap.HOST.slots()[0]
    names = [f"bb{i}" for i in range(10)]
    lxpy("create", "-n", names[0], "-t", "busybox")
    lower = Path(json.loads(lxpy("info", "-n", names[0], "--json", "--no-size").stdout)
                 ["lower"])
    cache_before = ownership(lower)
    for n in names[1:]:
        lxpy("create", "-n", n, "-t", "busybox")
    blocks = {n: block_of(lxpy, n) for n in names}

    uids = sorted(u for u, _g in blocks.values())
    gids = sorted(g for _u, g in blocks.values())
    for ids in (uids, gids):
        assert all(b - a >= BLOCK for a, b in zip(ids, ids[1:], strict=False)), ids
    for u, g in blocks.values():
        assert any(s <= u and u + BLOCK <= s + n for s, n in root_uids)  # root's own ids
        assert (u, g) != (shared.uid, shared.gid)                         # not the shared one
    assert {n: (b.uid, b.gid) for n, b in recorded(lxpath).items()} == blocks

    # the trees on disk are not shifted: the cache is owned as it was, by root
    assert ownership(lower) == cache_before
    assert set(cache_before.values()) == {(0, 0)}

    table = lxpy("ls", "-f").stdout.splitlines()
    assert table[0].split()[-1] == "PRIVILEGED"
    assert [line.split()[-1] for line in table[1:]] == ["no"] * 10
    assert all(r["privileged"] is False for r in json.loads(lxpy("ls", "--format", "json").stdout))
    info = info_lines(lxpy, "bb3")
    u, g = blocks["bb3"]
    assert info["Privileged"] == "no" and info["Id map"] == "auto"
    assert info["Uid map"] == f"0-65535 -> {u}-{u + BLOCK - 1}"
    assert info["Gid map"] == f"0-65535 -> {g}-{g + BLOCK - 1}"

    # destroy frees the block; the next container gets it
    lxpy("destroy", "-n", "bb3")
    assert "bb3" not in recorded(lxpath)
    lxpy("create", "-n", "late", "-t", "busybox")
    assert block_of(lxpy, "late") == blocks["bb3"]


def test_rename_keeps_the_block_copies_get_their_own(lxpy, lxpath, record):
    lxpy("create", "-n", "orig", "-t", "busybox")
    b = block_of(lxpy, "orig")
    lxpy("copy", "-n", "orig", "-N", "moved", "-R")
    assert block_of(lxpy, "moved") == b
    assert set(recorded(lxpath)) == {"moved"}

    lxpy("copy", "-n", "moved", "-N", "full")
    lxpy("copy", "-n", "moved", "-N", "snap", "-s")
    got = {n: block_of(lxpy, n) for n in ("moved", "full", "snap")}
    assert len(set(got.values())) == 3 and got["moved"] == b
    assert set(recorded(lxpath)) == {"moved", "full", "snap"}


def test_privileged_is_explicit_and_visible(lxpy, lxpath, record):
    lxpy("create", "-n", "priv", "-t", "busybox", "--privileged")
    lxpy("create", "-n", "unpriv", "-t", "busybox")
    assert 'idmap = "none"' in (lxpath / "priv" / "config.toml").read_text()
    assert set(recorded(lxpath)) == {"unpriv"}          # a privileged one holds no block

    rows = {r["name"]: r for r in json.loads(lxpy("ls", "--format", "json").stdout)}
    assert rows["priv"]["privileged"] is True and rows["unpriv"]["privileged"] is False
    table = {ln.split()[0]: ln.split()[-1] for ln in lxpy("ls", "-f").stdout.splitlines()[1:]}
    assert table == {"priv": "yes", "unpriv": "no"}
    assert info_lines(lxpy, "priv")["Privileged"].startswith("yes")
    assert json.loads(lxpy("info", "-n", "priv", "--json", "--no-size").stdout)["idmap"] == \
        {"privileged": True, "mode": "none"}

    # the shipped profile says the same; lxpy-config switches the setting
    (lxpath.parent / "p.toml").write_text('include = ["privileged"]\n')
    lxpy("create", "-n", "byprofile", "-t", "busybox", "-f", str(lxpath.parent / "p.toml"))
    assert json.loads(lxpy("ls", "--format", "json").stdout)[0]["privileged"] is True
    assert "byprofile" not in recorded(lxpath)
    lxpy("config", "-n", "unpriv", "set", "idmap", "shared")
    shared = idmap.HOST.slots()[0]
    m = json.loads(lxpy("info", "-n", "unpriv", "--json", "--no-size").stdout)["idmap"]
    assert m == {"privileged": False, "mode": "shared", "uid": [[0, shared.uid, BLOCK]],
                 "gid": [[0, shared.gid, BLOCK]]}
    assert lxpy("config", "-n", "unpriv", "get", "idmap").stdout.strip() == "shared"
    lxpy("config", "-n", "priv", "set", "idmap", "auto")
    assert rows_privileged(lxpy) == {"priv": False, "unpriv": False, "byprofile": True}


def rows_privileged(lxpy) -> dict[str, bool]:
    return {r["name"]: r["privileged"] for r in json.loads(lxpy("ls", "--format", "json").stdout)}


def test_bad_settings_are_one_line_and_make_nothing(lxpy, lxpath, record):
    lxpy("create", "-n", "ok", "-t", "busybox")
    before = (lxpath / "ok" / "config.toml").read_text()
    r = lxpy("config", "-n", "ok", "set", "idmap", "isolated", check=False)
    assert_one_line_error(r, 1, "idmap: 'isolated' is not an id map")
    r = lxpy("config", "-n", "ok", "set", "idmap_pass", "0", check=False)
    assert_one_line_error(r, 1, "passing id 0 through would make root inside root")
    assert (lxpath / "ok" / "config.toml").read_text() == before

    bad = lxpath.parent / "bad.toml"
    bad.write_text('[idmap]\nuid = [[0, 100000, 65536]]\n')
    r = lxpy("create", "-n", "nope", "-t", "busybox", "-f", str(bad), check=False)
    assert_one_line_error(r, 1, "set both idmap.uid and idmap.gid")
    assert visible_entries(lxpath) == ["ok"]
    assert set(recorded(lxpath)) == {"ok"}

    # pass-through holes show in the map lxpy-info reports
    lxpy("config", "-n", "ok", "set", "idmap_pass", "1000, uid 33")
    m = json.loads(lxpy("info", "-n", "ok", "--json", "--no-size").stdout)["idmap"]
    u = m["uid"][0][1]
    assert [0, u, 33] in m["uid"] and [33, 33, 1] in m["uid"] and [1000, 1000, 1] in m["uid"]
    assert [33, 33, 1] not in m["gid"] and [1000, 1000, 1] in m["gid"]

"""config/slots.py: editing hostname, MACs and rootfs keys of a config.toml without a parser.
tomllib and the loader are the oracles: what render() writes must parse to what it says,
and config_after() must be the Config the loader makes of the written file."""

import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxpy.config import slots
from lxpy.config.loader import load
from lxpy.storage.clone import clone_layout

SRC = """# the golden image
include = ["p1"]
hostname = "gold"   # keep me

[rootfs]
backend = "overlay"  # overlay!
path = 'rootfs'
lower = "/var/cache/lxpy/busybox/rootfs"
origin = "older"

[[mount]]
source = "/srv/data"
target = "/srv"

[[net]]
type = "veth"
hwaddr = "00:16:3E:aa:bb:cc"

[[net]]
type = "empty"
"""

CLONE = dict(keys={"rootfs.backend": "overlay", "rootfs.path": "rootfs",
                   "rootfs.lower": "/l/gold/layers/0:/var/cache/lxpy/busybox/rootfs"},
             old_dir=Path("/l/gold"), new_dir=Path("/l/web"), old_name="gold",
             new_name="web", keep_hostname=False, keep_macs=False, origin="gold")


def test_a_clone_edit_keeps_everything_else_and_parses_to_what_it_says():
    lay = slots.prove(SRC)
    assert lay is not None and lay.rootfs is not None
    assert set(lay.slots) == {("hostname",), ("rootfs", "backend"), ("rootfs", "path"),
                              ("rootfs", "lower"), ("rootfs", "origin"), ("net", 0, "hwaddr")}
    new = clone_layout(lay, **CLONE)
    d = tomllib.loads(new.text)
    assert d == new.data
    assert d["hostname"] == "web" and d["rootfs"]["origin"] == "gold"
    assert d["rootfs"]["lower"] == CLONE["keys"]["rootfs.lower"]
    assert d["net"][0]["hwaddr"].startswith("00:16:3E:") and d["net"][0]["hwaddr"] != \
        "00:16:3E:aa:bb:cc"
    assert d["mount"] == tomllib.loads(SRC)["mount"] and d["net"][1] == {"type": "empty"}
    for kept in ("# the golden image", "# keep me", "[[mount]]"):
        assert kept in new.text
    # what render() says about its own output is what proving that output finds
    again = slots.prove(new.text)
    assert again is not None and again.data == new.data and again.slots == new.slots
    assert again.rootfs == new.rootfs


@pytest.mark.parametrize("text", [
    # a [rootfs] header and keys inside a multi-line string: nothing there is a slot
    'x = """\n[rootfs]\nlower = "a"\n"""\n[rootfs]\npath = "r"\n',
    # rootfs keys written as dotted keys or an inline table: not proven, tomlkit does it
    'rootfs.path = "r"\nrootfs.lower = "l"\n',
    'rootfs = { path = "r", lower = "l" }\n',
    # quoted keys, literal strings, CRLF line ends, no final newline
    '[rootfs]\r\n"lower" = "l"\r\npath = \'r\' # c\r\nbackend="overlay"',
    '[rootfs]\nlower = "a\\"b" # "quoted"\nhostname = "gold"\n',
])
def test_what_cannot_be_proven_is_left_to_tomlkit(text):
    lay = slots.prove(text)
    new = clone_layout(lay, **CLONE) if lay is not None else None
    if new is not None:              # when it is done, it is right
        d = tomllib.loads(new.text)
        assert d == new.data and d["rootfs"]["lower"] == CLONE["keys"]["rootfs.lower"]
        assert d["rootfs"]["origin"] == "gold"


def test_the_multiline_trap_is_refused():
    text = 'x = """\n[rootfs]\nlower = "a"\n"""\n'
    lay = slots.prove(text)
    assert lay is None or clone_layout(lay, **CLONE) is None


def test_paths_to_rewrite_and_missing_lines_go_to_tomlkit():
    with_path = SRC.replace('"/srv/data"', '"/l/gold/data"')
    assert clone_layout(slots.prove(with_path), **CLONE) is None
    no_hwaddr = SRC.replace('hwaddr = "00:16:3E:aa:bb:cc"\n', "")
    assert clone_layout(slots.prove(no_hwaddr), **CLONE) is None
    # the tomlkit edit, all the same (render_config)
    from lxpy.storage.clone import render_config
    assert tomllib.loads(render_config(with_path, **CLONE))["mount"][0]["source"] == \
        "/l/web/data"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(host=_text, mac=_text, lower=_text, origin=_text)
def test_any_values_render_to_what_they_say(host, mac, lower, origin):
    lay = slots.prove(SRC)
    new = slots.render(lay, {("hostname",): host, ("net", 0, "hwaddr"): mac},
                       drop=("lower", "origin"), insert={"lower": lower, "origin": origin})
    assert tomllib.loads(new.text) == new.data
    assert new.data["hostname"] == host and new.data["net"][0]["hwaddr"] == mac
    assert new.data["rootfs"]["lower"] == lower and new.data["rootfs"]["origin"] == origin


def test_the_layout_is_kept_for_its_text_only(tmp_path):
    lay = slots.load(str(tmp_path), SRC)
    assert (tmp_path / slots.NAME).is_file()
    hit = slots.load(str(tmp_path), SRC)
    assert hit.slots == lay.slots and hit.data == lay.data
    other = SRC.replace("gold", "gilt")
    assert slots.load(str(tmp_path), other).data["hostname"] == "gilt"
    (tmp_path / slots.NAME).write_bytes(b"garbage")
    assert slots.load(str(tmp_path), SRC).data == lay.data


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    prof = tmp_path / "profiles"
    prof.mkdir()
    (prof / "p1.toml").write_text('hostname = "fromprofile"\n[limits]\nmemory = "64M"\n'
                                  '[rootfs]\nbackend = "dir"\n[[mount]]\nsource = "/a"\n'
                                  'target = "/b"\noptions = ["bind", "create=dir"]\n')
    monkeypatch.setenv("LXPY_PROFILES", str(prof))
    return prof


@pytest.mark.parametrize("keep_hostname,keep_macs", [(False, False), (True, True)])
def test_config_after_is_the_loaded_config(tmp_path, profiles, keep_hostname, keep_macs):
    src, dst = tmp_path / "gold", tmp_path / "web"
    src.mkdir()
    dst.mkdir()
    (src / "config.toml").write_text(SRC)
    src_cfg = load(src / "config.toml")
    lay = slots.prove(SRC)
    new = clone_layout(lay, **{**CLONE, "keep_hostname": keep_hostname,
                               "keep_macs": keep_macs})
    (dst / "config.toml").write_text(new.text)
    got = slots.config_after(src_cfg, lay, new, os.fspath(dst / "config.toml"))
    assert got == load(dst / "config.toml")


def test_config_after_declines_what_the_edit_alone_does_not_tell(tmp_path, profiles):
    src = tmp_path / "gold"
    src.mkdir()
    (src / "config.toml").write_text(SRC)
    cfg = load(src / "config.toml")
    lay = slots.prove(SRC)
    # origin deleted, not set again: a profile's origin (or the default) would show
    new = slots.render(lay, {}, drop=("origin",))
    assert slots.config_after(cfg, lay, new, "/x/config.toml") is None
    # a profile named by a path (it may be beside the config)
    text = SRC.replace('include = ["p1"]', f'include = ["{profiles}/p1.toml"]')
    (src / "config.toml").write_text(text)
    lay2 = slots.prove(text)
    new2 = slots.render(lay2, {("hostname",): "web"})
    assert slots.config_after(load(src / "config.toml"), lay2, new2, "/x/config.toml") is None

"""The rootfs cache: build once under a lock, atomic switch, flush keeps old versions."""

from __future__ import annotations

import os
import threading

import pytest

from lxpy.bootstrap import cache, debootstrap


def _builder(calls, gate=None):
    def build(target):
        calls.append(target)
        if gate is not None:
            gate.wait(30)
        (target / "etc").mkdir()
        (target / "etc/hostname").write_text(f"build {len(calls)}\n")
    return build


def test_build_once_then_reuse(tmp_path):
    entry = tmp_path / "debian" / "bookworm-amd64"
    calls: list = []
    p1 = cache.ensure(entry, _builder(calls), {"release": "bookworm"}, what="x")
    p2 = cache.ensure(entry, _builder(calls), {"release": "bookworm"}, what="x")
    assert p1 == p2 and len(calls) == 1
    assert (p1 / "etc/hostname").read_text() == "build 1\n"
    assert (entry / "rootfs").resolve() == p1
    assert 'release = "bookworm"' in (entry / "meta.toml").read_text()
    assert not [n for n in os.listdir(entry) if n.startswith(".build-")]


def test_concurrent_ensure_builds_once(tmp_path):
    entry = tmp_path / "e"
    calls: list = []
    gate = threading.Event()
    results: list = []
    errors: list = []

    def run():
        try:
            results.append(cache.ensure(entry, _builder(calls, gate), {}, what="x"))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    # the first builder is inside build(); the others wait on the lock
    for _ in range(3000):
        if calls:
            break
        threading.Event().wait(0.01)
    gate.set()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(calls) == 1
    assert len(set(results)) == 1 and len(results) == 4
    assert len(cache.versions(entry)) == 1


def test_failed_build_leaves_nothing(tmp_path):
    entry = tmp_path / "e"

    def bad(target):
        (target / "half").write_text("x")
        raise RuntimeError("network down")
    with pytest.raises(RuntimeError):
        cache.ensure(entry, bad, {}, what="x")
    assert cache.current(entry) is None
    assert sorted(os.listdir(entry)) == [".lock"]


def test_killed_build_is_swept_by_the_next(tmp_path):
    entry = tmp_path / "e"
    (entry / ".build-20260101T000000-dead" / "etc").mkdir(parents=True)
    calls: list = []
    p = cache.ensure(entry, _builder(calls), {}, what="x")
    assert not (entry / ".build-20260101T000000-dead").exists()
    assert p.is_dir()


def test_flush_makes_a_new_version_and_keeps_the_old(tmp_path):
    entry = tmp_path / "e"
    calls: list = []
    old = cache.ensure(entry, _builder(calls), {}, what="x")
    new = cache.ensure(entry, _builder(calls), {}, what="x", flush=True)
    assert old != new and old.is_dir() and new.is_dir()
    assert cache.current(entry) == new
    assert (new / "etc/hostname").read_text() == "build 2\n"
    assert (old / "etc/hostname").read_text() == "build 1\n"   # overlay lowers keep working
    # prune keeps what is in use and the current one
    assert cache.prune(entry, [old]) == []
    assert cache.prune(entry, []) == [old]
    assert not old.exists() and new.is_dir()


def test_plain_directory_cache_is_adopted(tmp_path):
    entry = tmp_path / "e"
    (entry / "rootfs" / "etc").mkdir(parents=True)
    assert cache.current(entry) == entry / "rootfs"
    calls: list = []
    new = cache.ensure(entry, _builder(calls), {}, what="x", flush=True)
    assert cache.current(entry) == new
    assert any(v.name.endswith("-old") for v in cache.versions(entry))


@pytest.mark.parametrize("lines, words", [
    (["E: Failed getting release file http://deb.debian.org/debian/dists/nosuch/Release"],
     ["release 'nosuch' not found", "-r"]),
    (["wget: unable to resolve host address 'deb.example'"], ["cannot reach the mirror"]),
    (["E: No such script: /usr/share/debootstrap/scripts/nosuch"], ["does not know release"]),
    (["E: Couldn't find these debs: vimm"], ["unknown packages: vimm"]),
    (["something else", "E: disk on fire"], ["disk on fire"]),
])
def test_debootstrap_failures_are_one_clear_line(lines, words):
    msg = debootstrap._classify(lines, "nosuch", "http://deb.debian.org/debian", "amd64")
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_debian_cache_key_per_extra_packages():
    from lxpy import templates
    t = templates.find("debian")
    base = debootstrap.describe(t, t.parse_options(["-a", "amd64"]))
    assert base["key"] == "bookworm-amd64"
    same = debootstrap.describe(t, t.parse_options(["-a", "amd64", "--packages",
                                                    "openssh-server,dbus"]))
    assert same["key"] == "bookworm-amd64"          # already in the base set
    a = debootstrap.describe(t, t.parse_options(["-a", "amd64", "--packages", "vim,curl"]))
    b = debootstrap.describe(t, t.parse_options(["-a", "amd64", "--packages", "curl,vim"]))
    assert a["key"] == b["key"] and a["key"].startswith("bookworm-amd64+")
    mirror = debootstrap.describe(t, t.parse_options(["-a", "amd64", "--mirror",
                                                      "http://ftp.de.debian.org/debian"]))
    assert mirror["key"] == "bookworm-amd64"


def test_a_hostile_release_cannot_name_a_cache_dir(tmp_path):
    from lxpy import bootstrap, templates
    from lxpy.errors import BootstrapError
    d = tmp_path / "t"
    d.mkdir()
    (d / "template.toml").write_text('method = "debootstrap"\n[options.release]\n'
                                     'default = "bookworm"\n')
    t = templates.find(str(d))
    opts = t.parse_options(["--release", "../../../etc"])
    with pytest.raises(BootstrapError, match="cannot name a cache"):
        bootstrap.ensure_cached(t, opts, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()

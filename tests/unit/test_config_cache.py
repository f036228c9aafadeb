"""The parsed-config cache (lxpy/config/cache.py): a warm load is the same config, and
any change to what it came from is seen. Real files in a temp dir; RACY is set to 0 and
the tests wait for the file clock's next tick instead (a file written in the tick the
cache was made could otherwise keep all its times)."""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lxpy.config import cache
from lxpy.config.loader import load as parse

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "RACY", 0.0)
    prof = tmp_path / "profiles"
    prof.mkdir()
    monkeypatch.setenv("LXPY_PROFILES", str(prof))
    (prof / "base.toml").write_text('[limits]\npids = 100\n')
    d = tmp_path / "lxpath" / "c1"
    d.mkdir(parents=True)
    (d / "config.toml").write_text('include = ["base"]\nhostname = "one"\n'
                                   '[[net]]\ntype = "empty"\n'
                                   '[[mount]]\nsource = "/srv"\ntarget = "/srv"\n')
    return d / "config.toml", prof


def next_tick(d: Path) -> None:
    """Return once the filesystem clock has moved past what was just written (a few ms:
    the kernel's coarse clock)."""
    probe = d / ".tick"
    probe.write_text("")
    first = probe.stat().st_mtime_ns
    while True:
        os.utime(probe)
        if probe.stat().st_mtime_ns != first:
            probe.unlink()
            return


def cached(cfg: Path) -> dict:
    return marshal.loads((cfg.parent / cache.NAME).read_bytes())


def same(a, b) -> bool:
    return (a.values, a.mount, a.net, a.files, a.explicit) == \
           (b.values, b.mount, b.net, b.files, b.explicit)


def test_a_warm_load_is_the_same_config(setup):
    cfg, _ = setup
    next_tick(cfg.parent)
    cold = cache.load(str(cfg))
    assert (cfg.parent / cache.NAME).exists()
    assert oct((cfg.parent / cache.NAME).stat().st_mode & 0o777) == "0o600"
    warm = cache.load(str(cfg))
    assert same(warm, parse(cfg)) and same(warm, cold)
    assert warm.limits.pids == 100 and warm.hostname == "one" and warm.mount[0].target == "/srv"


def test_edits_of_the_config_or_a_profile_are_seen(setup):
    cfg, prof = setup
    next_tick(cfg.parent)
    cache.load(str(cfg))
    cfg.write_text(cfg.read_text().replace('"one"', '"two"'))
    assert cache.load(str(cfg)).hostname == "two"
    next_tick(cfg.parent)
    cache.load(str(cfg))
    (prof / "base.toml").write_text('[limits]\npids = 2000\n')
    assert cache.load(str(cfg)).limits.pids == 2000


def test_a_new_profile_that_shadows_one_or_another_search_path_is_seen(setup, tmp_path,
                                                                         monkeypatch):
    cfg, prof = setup
    first = tmp_path / "first"
    first.mkdir()
    monkeypatch.setenv("LXPY_PROFILES", f"{first}:{prof}")
    next_tick(cfg.parent)
    assert cache.load(str(cfg)).limits.pids == 100
    (first / "base.toml").write_text('[limits]\npids = 7\n')        # shadows profiles/
    assert cache.load(str(cfg)).limits.pids == 7
    other = tmp_path / "other"
    other.mkdir()
    (other / "base.toml").write_text('[limits]\npids = 9\n')
    monkeypatch.setenv("LXPY_PROFILES", str(other))
    assert cache.load(str(cfg)).limits.pids == 9


def test_garbage_and_foreign_caches_are_ignored_and_replaced(setup):
    cfg, _ = setup
    next_tick(cfg.parent)
    cache.load(str(cfg))
    c = cfg.parent / cache.NAME
    good = c.read_bytes()
    for junk in (b"", b"\x00garbage", good[: len(good) // 2]):
        c.write_bytes(junk)
        assert same(cache.load(str(cfg)), parse(cfg))
        assert c.read_bytes() == good               # made valid again
    # the same key with other values, owned by someone else: never believed
    data = cached(cfg)
    data["values"] = dict(data["values"], hostname="forged")
    c.write_bytes(marshal.dumps(data))
    assert cache.load(str(cfg)).hostname == "forged"       # ours: trusted (it is our file)
    c.write_bytes(marshal.dumps(data))
    os.chown(c, 65534, 65534)
    if os.geteuid() == 65534:
        pytest.skip("running as nobody")
    assert cache.load(str(cfg)).hostname == "one"


def test_a_copied_container_dir_does_not_trust_the_copied_cache(setup, tmp_path):
    cfg, _ = setup
    next_tick(cfg.parent)
    cache.load(str(cfg))
    data = cached(cfg)
    copy = tmp_path / "lxpath" / "c2"
    shutil.copytree(cfg.parent, copy)
    data["path"] = str(copy / "config.toml")
    data["values"] = dict(data["values"], hostname="stale")
    (copy / cache.NAME).write_bytes(marshal.dumps(data))   # as if it had come along
    assert cache.load(str(copy / "config.toml")).hostname == "one"


def test_a_file_changed_within_the_racy_window_is_not_cached(setup, monkeypatch):
    cfg, _ = setup
    monkeypatch.setattr(cache, "RACY", 3600.0)
    assert cache.load(str(cfg)).hostname == "one"
    assert not (cfg.parent / cache.NAME).exists()


def test_a_bad_config_is_an_error_every_time(setup):
    cfg, _ = setup
    cfg.write_text('hostname = "one"\n[limits]\nmemroy = "1G"\n')
    from lxpy.errors import ConfigError
    for _ in range(2):
        with pytest.raises(ConfigError, match="memroy"):
            cache.load(str(cfg))
    assert not (cfg.parent / cache.NAME).exists()


def test_a_warm_load_imports_neither_tomllib_nor_the_settings_table(setup):
    cfg, prof = setup
    next_tick(cfg.parent)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import lxpy.config.cache as c; "
            "c.RACY = 0; cfg = c.load(sys.argv[2]); "
            "print(cfg.hostname, cfg.limits.pids, cfg.net[0].type, "
            "sorted(m for m in ('tomllib', 'typing', 'lxpy.config.schema', "
            "'lxpy.config.loader') if m in sys.modules))")
    env = dict(os.environ, LXPY_PROFILES=str(prof))
    run = [sys.executable, "-I", "-S", "-c", code, str(REPO), str(cfg)]
    cold = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout
    assert cold.startswith("one 100 empty") and "tomllib" in cold
    warm = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout
    assert warm.strip() == "one 100 empty []"


def test_run_root_is_the_one_of_paths():
    from lxpy import paths
    assert cache.RUN_ROOT == str(paths.RUN_ROOT)


def test_the_system_config_is_remembered_until_it_changes(tmp_path, monkeypatch):
    from lxpy import paths
    monkeypatch.setattr(cache, "RACY", 0.0)
    sysconf = tmp_path / "lxpy.toml"
    sysconf.write_text('cgroup_parent = "first"\n')
    monkeypatch.setenv("LXPY_CONFIG", str(sysconf))
    monkeypatch.delenv("LXPY_CGROUP_PARENT", raising=False)
    run_root = tmp_path / "run"
    monkeypatch.setattr(paths, "RUN_ROOT", run_root)
    next_tick(tmp_path)
    try:
        paths.system_config.cache_clear()
        assert paths.system_config().cgroup_parent == "first"
        assert [p.name for p in run_root.iterdir()][0].startswith(".system.")
        paths.system_config.cache_clear()
        assert paths.system_config().cgroup_parent == "first"     # from the cache
        # (what lxpy-copy -s reads, without lxpy.paths)
        got = cache.system_values_cached(str(sysconf), str(run_root))
        assert got is not None and got["cgroup_parent"] == "first"
        assert str(paths.system_config().lxpath) == got["lxpath"]
        # lxpy-attach, lxpy-stop and lxpy-copy -s without -P take their fast paths with it
        from lxpy import where
        monkeypatch.setattr(cache, "RUN_ROOT", str(run_root))
        monkeypatch.delenv("LXPY_PATH", raising=False)
        assert where.lxpath_fast(None) == got["lxpath"]
        sysconf.write_text('cgroup_parent = "second-one"\n')
        assert cache.system_values_cached(str(sysconf), str(run_root)) is None
        assert where.lxpath_fast(None) is None          # then lxpy.paths reads it
        paths.system_config.cache_clear()
        assert paths.system_config().cgroup_parent == "second-one"
    finally:
        paths.system_config.cache_clear()


def test_a_read_only_lxpath_works_without_a_cache(setup, tmp_path):
    from lxpy.linux.mount import MS_BIND, MS_RDONLY, MS_REMOUNT, mount, umount2
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    cfg, _ = setup
    ro = tmp_path / "ro"
    ro.mkdir()
    mount(cfg.parent.parent, ro, None, MS_BIND)
    try:
        mount(None, ro, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        next_tick(cfg.parent)
        for _ in range(2):
            got = cache.load(str(ro / "c1" / "config.toml"))
            assert same(got, parse(ro / "c1" / "config.toml")) and got.hostname == "one"
        assert not (cfg.parent / cache.NAME).exists()
        assert sorted(os.listdir(cfg.parent)) == ["config.toml"]      # no temp file either
    finally:
        umount2(ro)


def test_a_change_of_the_config_code_is_seen(setup, tmp_path, monkeypatch):
    """The key holds the config modules' times: an upgrade (here: a copy of the modules
    that is touched) makes an entry of the old code a miss."""
    cfg, _ = setup
    code = tmp_path / "code" / "config"
    code.mkdir(parents=True)
    here = Path(cache._HERE)
    for f in cache._CODE:
        os.makedirs(os.path.dirname(code / f), exist_ok=True)
        shutil.copy2(here / f, code / f)
    monkeypatch.setattr(cache, "_HERE", str(code))
    next_tick(cfg.parent)
    cache.load(str(cfg))
    before = cached(cfg)
    os.utime(code / "schema.py")                       # "upgraded"
    data = dict(before, values=dict(before["values"], hostname="old code"))
    (cfg.parent / cache.NAME).write_bytes(marshal.dumps(data))
    assert cache.load(str(cfg)).hostname == "one"
    assert cached(cfg)["code"] != before["code"]


def test_a_remembered_config_is_keyed_by_its_text(setup, monkeypatch):
    """cache.remember (lxpy-copy: a config it wrote and knows the Config of) is used while
    config.toml reads that text, whatever its times; any other text, or a changed profile,
    is parsed again."""
    cfg, prof = setup
    text = cfg.read_text()
    want = parse(cfg)
    cache.remember(str(cfg), want, text)
    entry = cached(cfg)
    assert entry["self"] is None and entry["text"] == text
    import lxpy.config.loader as loader

    def no_parse(path):
        raise AssertionError("parsed")
    with monkeypatch.context() as m:
        m.setattr(loader, "load", no_parse)
        assert same(cache.load(str(cfg)), want)
        cfg.write_text(text)                            # new times, same text
        assert same(cache.load(str(cfg)), want)
    cfg.write_text(text.replace('"one"', '"two"'))      # same size, another text
    assert cache.load(str(cfg)).hostname == "two"
    cfg.write_text(text)
    cache.remember(str(cfg), want, text)
    next_tick(prof)
    (prof / "base.toml").write_text('[limits]\npids = 200\n')
    assert cache.load(str(cfg)).limits.pids == 200
    # for a directory that gets its name later (a clone made under a temporary name)
    other = cfg.parent.parent / "tmpname"
    other.mkdir()
    cache.remember(str(cfg.parent.parent / "final" / "config.toml"), want, text, str(other))
    assert cached(other / "config.toml")["path"] == str(cfg.parent.parent / "final" /
                                                         "config.toml")

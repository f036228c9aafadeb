"""Per-container log paths and size rotation."""

from __future__ import annotations

import logging

from lxpy import logs


def test_rotating_file_keeps_size_and_backups(tmp_path):
    p = tmp_path / "web1" / "console.log"
    with logs.RotatingFile(p, max_bytes=100, backups=2) as f:
        for i in range(10):
            f.write(f"{i:02d}".encode() * 20)         # 40 bytes each
    assert p.stat().st_size <= 100
    assert (tmp_path / "web1" / "console.log.1").stat().st_size <= 100
    assert (tmp_path / "web1" / "console.log.2").exists()
    assert not (tmp_path / "web1" / "console.log.3").exists()
    # the newest data is in the live file, the oldest is gone
    assert p.read_bytes().endswith(b"09" * 20)
    everything = b"".join((tmp_path / "web1" / n).read_bytes()
                          for n in ("console.log.2", "console.log.1", "console.log"))
    assert b"00" * 20 not in everything


def test_rotating_file_appends_across_reopen(tmp_path):
    p = tmp_path / "c.log"
    with logs.RotatingFile(p, max_bytes=1000) as f:
        f.write(b"one\n")
    with logs.RotatingFile(p, max_bytes=1000) as f:
        f.write(b"two\n")
    assert p.read_text() == "one\ntwo\n"


def test_paths_under_log_dir(tmp_path, monkeypatch):
    from lxpy import paths
    monkeypatch.setenv("LXPY_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setenv("LXPY_PATH", str(tmp_path / "lxpath"))
    paths.system_config.cache_clear()
    try:
        assert logs.console_log_path("web1") == tmp_path / "log" / "web1" / "console.log"
        assert logs.lxpy_log_path("web1", tmp_path / "lxpath") == (
            tmp_path / "log" / "web1" / "lxpy.log")
        # another lxpath keeps its containers' logs with them, as LXC does
        assert logs.lxpy_log_path("web1", tmp_path / "elsewhere") == (
            tmp_path / "elsewhere" / "web1" / "log" / "lxpy.log")
        h = logs.handler("web1")
        try:
            lg = logging.getLogger("lxpy.test-logs")
            lg.addHandler(h)
            lg.warning("hello %s", "there")
        finally:
            lg.removeHandler(h)
            h.close()
        assert "hello there" in logs.lxpy_log_path("web1").read_text()
    finally:
        paths.system_config.cache_clear()

"""Per-container log paths (paths.log_dir)."""

from __future__ import annotations

from lxpy import paths


def test_paths_under_log_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LXPY_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setenv("LXPY_PATH", str(tmp_path / "lxpath"))
    paths.system_config.cache_clear()
    try:
        assert paths.log_dir(tmp_path / "lxpath", "web1") == tmp_path / "log" / "web1"
        # another lxpath keeps its containers' logs with them, as LXC does
        assert paths.log_dir(tmp_path / "elsewhere", "web1") == (
            tmp_path / "elsewhere" / "web1" / "log")
    finally:
        paths.system_config.cache_clear()

"""bench/run --quick keeps working: one iteration of the cheap busybox rows, lxpy and (when it
is installed) LXC side by side. Asserts the shape of the JSON and that nothing is left behind;
never the timings (this is a benchmark, not a test of speed)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

QUICK_ROWS = ["python_start", "create_busybox", "start_busybox", "attach_true", "stop_busybox",
              "stop_kill_busybox", "config_get", "cgroup_get", "wait_running", "ls_1", "info_1"]
NO_LXC = {"python_start", "config_get"}     # no LXC column: the baseline, no equivalent


def lxc_cgroups() -> list[str]:
    """LXC's per-container cgroups of the bench's containers, on any hierarchy."""
    return [str(p) for p in Path("/sys/fs/cgroup").glob("*/lxc.*lxb-*")]


def test_quick_run_writes_the_table_json_and_plot(tmp_path):
    out, png, bdir = tmp_path / "last.json", tmp_path / "last.png", tmp_path / "bench"
    # --no-install: CI installs nothing here; without LXC the rows are lxpy-only and say so.
    r = subprocess.run([sys.executable, str(REPO / "bench" / "lxbench.py"), "--quick",
                        "--no-install", "--dir", str(bdir), "--json", str(out),
                        "--plot", str(png)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "lxpy/LXC" in r.stdout and "× python_start" in r.stdout and "goals met" in r.stdout

    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick" and doc["iterations"] == 1
    assert doc["machine"]["cpus"] >= 1 and doc["machine"]["kernel"]
    assert doc["cleanup_problems"] == []
    assert [row["id"] for row in doc["rows"]] == QUICK_ROWS
    have_lxc = shutil.which("lxc-create") is not None
    by = {row["id"]: row for row in doc["rows"]}
    assert by["python_start"]["goal_py_max"] is None
    for row in doc["rows"]:
        assert row["status"] == "ok", row
        lx = row["tools"]["lxpy"]
        assert lx["n"] == 1 and len(lx["samples"]) == 1
        assert 0 < lx["min"] <= lx["median"] <= lx["max"]
        assert isinstance(row["goal"], str) and row["title"]
        if have_lxc and row["id"] not in NO_LXC:
            assert row["tools"]["lxc"]["n"] == 1
            assert isinstance(row["ratio"], float) and row["ratio"] > 0
        else:
            assert "lxc" not in row["tools"] and row["ratio"] is None
            assert any("LXC not installed" in n for n in row["notes"]) == (
                not have_lxc and row["id"] not in NO_LXC)
        # The commands that return before the guest's work: against python_start, same run.
        if row["goal_py_max"] is not None:
            base = by["python_start"]["tools"]["lxpy"]["median"]
            assert row["py_multiple"] == pytest.approx(lx["median"] / base)
            assert row["meets_goal"] == (row["py_multiple"] <= row["goal_py_max"])
        else:
            assert row["py_multiple"] is None
        if row["goal_max_ratio"] is None and row["goal_py_max"] is None:
            assert row["meets_goal"] is None
    s = doc["summary"]
    assert sorted(s["met"] + s["missed"] + s["no_goal"] + s["not_run"]) == sorted(QUICK_ROWS)
    if have_lxc and importlib.util.find_spec("matplotlib"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Nothing left: no container, no mount under the bench dir, no LXC cgroup.
    assert not (bdir / "lxpy").exists() or not any((bdir / "lxpy").iterdir())
    assert not (bdir / "lxc").exists()
    assert str(bdir) not in Path("/proc/self/mountinfo").read_text()
    assert lxc_cgroups() == []


def test_unknown_row_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "bench" / "lxbench.py"), "--rows", "nope",
                        "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "unknown row(s) nope" in r.stderr and "Traceback" not in r.stderr

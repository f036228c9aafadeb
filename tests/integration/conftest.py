"""Integration fixtures: a Debian rootfs really debootstrapped once per test run.

`debian_cache` runs bootstrap.ensure_cached for debian bookworm (the host's arch) into the
run's cache dir (LXPY_TEST_CACHE keeps it across runs: a minbase bookworm takes a few
minutes), the same cache lxpy-create uses in the tests (LXPY_CACHE), so
`lxpy("create", "-n", "x", "-t", "debian")` after requesting it needs no download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def debian_cache(cache_dir) -> Path:
    """The complete, shared base tree of debian bookworm (read it; never write to it)."""
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    from lxpy import bootstrap, templates
    from lxpy.errors import LxpyError
    t = templates.find("debian")
    try:
        return bootstrap.ensure_cached(t, t.parse_options(["-r", "bookworm"]), cache_dir)
    except LxpyError as e:
        pytest.fail(f"debootstrap of debian bookworm failed: {e}", pytrace=False)

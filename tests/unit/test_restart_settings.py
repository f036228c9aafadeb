"""autostart.restart, restart_delay and restart_limit: what the settings table takes."""

from __future__ import annotations

import pytest

from lxpy.config.schema import BY_KEY, restart_limit


@pytest.mark.parametrize("given,limit,shown", [
    ("5/300s", (5, 300), "5/300s"), ("3/2m", (3, 120), "3/120s"), (" 1 / 1h ", (1, 3600),
                                                                     "1/3600s"),
    ("10/30", (10, 30), "10/30s")])
def test_restart_limit_reads_count_and_window(given, limit, shown):
    assert restart_limit(given) == limit
    assert BY_KEY["autostart.restart_limit"].parse(given) == shown


@pytest.mark.parametrize("bad", ["5", "0/300s", "5/0s", "5/300d", "-1/3s", 5, True, ""])
def test_restart_limit_refuses_with_an_example(bad):
    with pytest.raises(ValueError, match=r'is not a restart limit.*like "5/300s"'):
        BY_KEY["autostart.restart_limit"].parse(bad)


def test_restart_policy_and_delay():
    s = BY_KEY["autostart.restart"]
    assert s.default == "no" and [s.parse(v) for v in ("no", "on-failure", "always")]
    with pytest.raises(ValueError, match="not one of: no, on-failure, always"):
        s.parse("unless-stopped")
    d = BY_KEY["autostart.restart_delay"]
    assert d.default == 1 and d.parse(300) == 300
    for bad in (-1, 301, "soon"):
        with pytest.raises(ValueError):
            d.parse(bad)

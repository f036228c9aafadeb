"""Apply a limits.* change to a running container (lxpy-config set --live)."""

from __future__ import annotations

from lxpy import cgroups
from lxpy.errors import NotRunning
from lxpy.status import state_of


def apply_live(c, key: str, value: str) -> None:
    st = state_of(c)
    if st.state not in ("RUNNING", "FROZEN", "FREEZING") or not st.extra \
            or not st.extra.get("cgroup"):
        raise NotRunning(f"container {c.name!r} is not running; the new value is saved in "
                         "config.toml and applies at the next start")
    cgroups.driver().open(st.extra["cgroup"]).set_limit(key, value)

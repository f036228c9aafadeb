"""Container-level operations: create, destroy, copy, rename, snapshot, and the sweep of
what killed commands left behind, each in its own module. They build on storage/ (the
backends and tree helpers), which never imports them.

Crash safety: every operation builds in a temporary place inside the lxpath (a name starting
with ".", which lxpy-ls never lists) and becomes visible with one rename (sweep.publish).
The next command sweeps stale temporary directories whose container lock is free."""

from __future__ import annotations

from ..container import Container
from ..errors import StateError
from ..runtime.state import query

ACTIVE = ("RUNNING", "STARTING", "STOPPING", "FROZEN", "FREEZING", "ABORTING")


def is_active(c: Container) -> bool:
    return query(c).state in ACTIVE


def require_stopped(c: Container, what: str, allow_running: bool = False) -> None:
    st = query(c).state
    if st in ACTIVE and not allow_running:
        raise StateError(f"container {c.name!r} is {st.lower()}; {what} needs it stopped",
                         "stop it with lxpy-stop" + (", or allow a running source with -a"
                                                     if what.startswith("copying") else ""))

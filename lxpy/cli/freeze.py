"""lxpy-freeze: freeze every process of a running container (freezer.state / cgroup.freeze)."""

from __future__ import annotations

from lxpy.errors import CgroupError
from lxpy.runtime import proto, state

from .cgroup import container_cgroup

HELP = "Freeze all processes of a running container."


def add_arguments(p) -> None:
    p.add_argument("-t", "--timeout", type=float, default=30.0,
                   help="seconds to wait for FROZEN (default 30)")


def set_state_file(c, frm: tuple[str, ...], to: str) -> None:
    """Without a monitor, tell lxpy-ls/lxpy-info through the state file."""
    d = state.read_file(c.run_dir)
    if d.get("state") in frm:
        d["state"] = to
        try:
            state.write_file(c.run_dir, d)
        except OSError:
            pass


def via_monitor(c, kind: str, timeout: float) -> bool:
    """Ask the container's monitor to freeze/thaw (it keeps the state in step).
    False when there is no monitor to ask."""
    info = state.query(c)
    if not info.monitor_alive:
        return False
    try:
        conn, (reply, fields) = proto.request(str(c.run_dir / state.SOCKET), kind,
                                              io_timeout=timeout + 5)
    except OSError:
        return False
    conn.close()
    if reply == "error":
        raise CgroupError(f"container {c.name!r}: {fields.get('message', kind + ' failed')}")
    return reply == "ok"


def run(args) -> int:
    c, cg = container_cgroup(args.name, args.lxpath)
    if via_monitor(c, "freeze", args.timeout):
        return 0
    try:
        cg.freeze(timeout=args.timeout)
    finally:
        set_state_file(c, ("RUNNING", "FREEZING"), cg.freezer_state())
    return 0

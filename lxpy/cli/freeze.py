"""lxpy-freeze: freeze every process of a running container (freezer.state / cgroup.freeze)."""

from __future__ import annotations

HELP = "Freeze all processes of a running container."


def add_arguments(p) -> None:
    p.add_argument("-t", "--timeout", type=float, default=30.0,
                   help="seconds to wait for FROZEN (default 30)")


def set_state_file(c, frm: tuple[str, ...], to: str) -> None:
    """Tell lxpy-ls/lxpy-info: the runtime's state file says FROZEN while frozen."""
    try:
        from lxpy.runtime import state
    except ImportError:
        return
    d = state.read_file(c.run_dir)
    if d.get("state") in frm:
        d["state"] = to
        try:
            state.write_file(c.run_dir, d)
        except OSError:
            pass


def run(args) -> int:
    from .cgroup import container_cgroup
    c, cg = container_cgroup(args.name, args.lxpath)
    try:
        cg.freeze(timeout=args.timeout)
    finally:
        set_state_file(c, ("RUNNING", "FREEZING"), cg.freezer_state())
    return 0

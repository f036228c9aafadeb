"""The state of a container, read cheaply from its run dir and checked against /proc.

The monitor writes <run_dir>/state (key=value lines, written to a temp file and renamed)
on every transition: state, monitor pid + start time, init pid + start time, cgroup, console
log. query() trusts the file only as far as /proc agrees: a monitor that was SIGKILLed
leaves a RUNNING container RUNNING (its init is still alive) or STOPPED (it is gone).

No heavy imports here: lxpy-ls calls this for every container.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # the lean monitor imports this module: no pathlib in its memory
if TYPE_CHECKING:
    from pathlib import Path

STATES = ("STOPPED", "STARTING", "RUNNING", "STOPPING", "ABORTING", "FREEZING", "FROZEN")
STATE_FILE = "state"
SOCKET = "monitor.sock"


class StateInfo:
    """What query() found (a plain class: dataclasses is too heavy an import here)."""

    def __init__(self, state: str = "STOPPED", pid: int | None = None,
                 cgroup: str | None = None, monitor_pid: int | None = None,
                 console_log: str | None = None, started: float | None = None,
                 stale: bool = False, extra: dict | None = None):
        self.state = state
        self.pid = pid                          # init, as seen from the host
        self.cgroup = cgroup                    # relative path: cgroups.driver().open(cgroup)
        self.monitor_pid = monitor_pid
        self.monitor_alive = False
        self.console_log = console_log
        self.started = started                  # time.time() when init was started
        self.stale = stale                      # a run dir without a live monitor or init
        self.extra = extra if extra is not None else {}

    def __repr__(self) -> str:
        return f"StateInfo({self.state}, pid={self.pid}, cgroup={self.cgroup})"

    @property
    def running(self) -> bool:
        return self.state not in ("STOPPED",)


def start_time(pid: int) -> int | None:
    """Start time of a live process (None when it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None, start: int | str | None) -> bool:
    """pid is alive and is the same process (same start time) it was when recorded."""
    if not pid:
        return False
    st = start_time(int(pid))
    return st is not None and (start in (None, "") or st == int(start))


def read_file(run_dir: str | Path) -> dict[str, str]:
    try:
        with open(os.path.join(run_dir, STATE_FILE), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


def write_file(run_dir: str | Path, values: dict) -> None:
    tmp = os.path.join(run_dir, f".{STATE_FILE}.{os.getpid()}")
    data = "".join(f"{k}={'' if v is None else v}\n" for k, v in values.items())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(run_dir, STATE_FILE))


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v else None
    except ValueError:
        return None


def query_dir(run_dir: Path) -> StateInfo:
    """The state of the container whose run dir this is."""
    d = read_file(run_dir)
    if not d:
        # A run dir that exists with no state file: a start that is being set up, or debris.
        return StateInfo("STOPPED", stale=os.path.isdir(run_dir))
    info = StateInfo(
        state=d.get("state", "STOPPED"),
        pid=_int(d.get("pid")),
        cgroup=d.get("cgroup") or None,
        monitor_pid=_int(d.get("monitor_pid")),
        console_log=d.get("console_log") or None,
        started=float(d["started"]) if d.get("started") else None,
        extra=d,
    )
    info.monitor_alive = alive(info.monitor_pid, d.get("monitor_start"))
    init_alive = alive(info.pid, d.get("pid_start"))
    if info.monitor_alive:
        if info.pid and not init_alive and info.state == "RUNNING":
            info.state = "STOPPING"         # init just exited; the monitor is cleaning up
        return info
    # No monitor: only init tells the truth.
    if init_alive:
        if info.state not in ("FROZEN", "FREEZING"):
            info.state = "RUNNING"
        return info
    info.state = "STOPPED"
    info.pid = None
    info.stale = True
    return info


def query(container) -> StateInfo:
    """The state of a container (a lxpy.container.Container)."""
    return query_dir(container.run_dir)

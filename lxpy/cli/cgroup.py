"""lxpy-cgroup: read or change a running container's cgroup, in the limits.* vocabulary
or by raw file name (v2 names on v2 hosts, v1 names on v1/hybrid hosts)."""

from __future__ import annotations

from lxpy import cgroups
from lxpy.cgroups.base import check_file_name
from lxpy.container import Container, check_name
from lxpy.errors import StateError, UsageError
from lxpy.paths import system_config
from lxpy.runtime.state import query

HELP = "Read or set a running container's cgroup limits (limits.* keys or raw cgroup files)."
EPILOG = """examples:
  lxpy-cgroup -n web1 limits.memory 2G     live change (not saved: lxpy-config set --live saves)
  lxpy-cgroup -n web1 limits.memory        current value
  lxpy-cgroup -n web1 memory.max           raw read (memory.limit_in_bytes on cgroup v1)
  lxpy-cgroup -n web1 pids.max 200         raw write
  lxpy-cgroup -n web1 cgroup.procs 1234    move a host process into the container's cgroup
                                           (every hierarchy)
"""
NAME_POSITIONAL = False
NAME_REQUIRED = False


def add_arguments(p) -> None:
    p.add_argument("words", nargs="*", metavar="KEY [VALUE]",
                   help="a limits.* key or a cgroup file name, and the value to set")


def container_cgroup(name: str, lxpath):
    """The cgroup of a running container, from the runtime's state (or <parent>/<name>)."""
    c = Container(name, lxpath).require()
    st = query(c)
    if not st.running or not st.pid:
        raise StateError(f"container {name!r} is not running", f"lxpy-start {name}")
    path = st.cgroup
    drv = cgroups.driver()
    if not path:
        path = f"{system_config().cgroup_parent}/{name}"
    cg = drv.cgroup_class(drv, path)
    if not cg.exists():
        raise StateError(f"container {name!r} is not running (no cgroup {path})",
                         f"lxpy-start {name}")
    return c, cg


def run(args) -> int:
    words = list(args.words)
    name = args.name
    if not name:                         # lxpy-cgroup NAME KEY [VALUE]
        if not words:
            raise UsageError("which container? give -n NAME")
        name = check_name(words.pop(0))
    if not words:
        raise UsageError("which key? give a limits.* key or a cgroup file name",
                         "like: lxpy-cgroup -n web1 limits.memory 2G")
    if len(words) > 2:
        raise UsageError(f"too many arguments: {' '.join(words[2:])}",
                         "give KEY, or KEY VALUE")
    key = words[0]
    value = words[1] if len(words) == 2 else None
    if not key.startswith("limits."):
        check_file_name(key)
    _, cg = container_cgroup(name, args.lxpath)
    if value is None:
        out = cg.get_limit(key) if key.startswith("limits.") else cg.get(key)
        print(out.rstrip("\n"))
        return 0
    if key.startswith("limits."):
        cg.set_limit(key, value)
    elif key in ("cgroup.procs", "tasks"):
        # a process joins the container's cgroup on every hierarchy, not only one
        if not value.isdigit() or int(value) == 0:
            raise UsageError(f"{key}: {value!r} is not a process id",
                             f"like: lxpy-cgroup -n {name} {key} 1234")
        cg.attach(int(value))
    else:
        cg.set(key, value)
    return 0

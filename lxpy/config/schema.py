"""The settings table: every config key declared once (kind, default, help).

Validation, `lxpy-config` output, man pages and CLI overrides all read SETTINGS.
A kind parses a TOML value into its Python value or raises ValueError with the
phrase that goes after "<key>: " in the error message.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..linux import caps
from .signals import parse_signal

# ---------------------------------------------------------------------------
# Kinds


@dataclass(frozen=True)
class Kind:
    name: str                           # shown in help ("size", "int", ...)
    parse: Callable[[Any], Any]         # value -> value, or ValueError
    example: str = ""


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(v: Any) -> int:
    """'512M' -> bytes. Plain integers are bytes. Binary units (K = 1024)."""
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a size (use a number with K, M, G or T, like 512M)")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"{v!r} is negative; a size is 0 or more")
        return _size_max(v, v)
    if isinstance(v, str):
        m = _SIZE_RE.match(v)
        if m:
            n = float(m.group(1)) * _UNITS[m.group(2).upper()]
            return _size_max(int(n), v)
    raise ValueError(f"{v!r} is not a size (use a number with K, M, G or T, like 512M)")


def _size_max(n: int, given: Any) -> int:
    if n > SIZE_MAX:
        raise ValueError(f"{given!r} is more than any size the kernel takes (at most "
                         f"{SIZE_MAX} bytes)")
    return n


SIZE_MAX = (1 << 63) - 1


def _size_min_1m(room_for: str, what: str) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        n = parse_size(v)
        if n < 1 << 20:
            raise ValueError(f"{v!r} leaves no room for {room_for}; a {what} limit is at "
                             "least 1M")
        return n
    return parse


_memory_limit = _size_min_1m("the container's init", "memory")
_disk_limit = _size_min_1m("the container's own files", "disk")


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _hostname(v: Any) -> str:
    """What sethostname(2) takes (at most 64 bytes) in the characters hostnames use: letters,
    digits, '-', '_' and '.' (every container name is one)."""
    s = _nonempty_str(v)
    if not set(s) <= _HOST_CHARS:
        raise ValueError(f"{s!r} is not a hostname (letters, digits, '-', '_' and '.', like "
                         "web1 or web1.example.org)")
    if len(s) > 64:
        raise ValueError(f"{s!r} is longer than 64 characters (the kernel's limit)")
    return s


def format_size(n: int) -> str:
    for unit in ("P", "T", "G", "M", "K"):
        if n and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return str(n)


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a string")
    return v


def _nonempty_str(v: Any) -> str:
    s = _str(v)
    if not s:
        raise ValueError("must not be empty")
    return s


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return v.lower() in ("true", "yes", "on", "1")
    raise ValueError(f"{v!r} is not true or false")


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError(f"{v!r} is not a whole number")
        if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
            v = int(v)
        if not isinstance(v, int):
            raise ValueError(f"{v!r} is not a whole number")
        if lo is not None and v < lo or hi is not None and v > hi:
            rng = f"from {lo} to {hi}" if hi is not None else f"{lo} or more"
            raise ValueError(f"{v} is out of range (allowed: {rng})")
        return v
    return parse


def _float_pos(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a number")
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a number") from None
    if not isinstance(v, (int, float)) or v <= 0 or v != v or v == float("inf"):
        raise ValueError(f"{v!r} is not a positive number (like 1.5 for one and a half CPUs)")
    return float(v)


_RESTART_LIMIT_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*([smh]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def restart_limit(v: Any) -> tuple[int, int]:
    """autostart.restart_limit "5/300s" -> (5, 300): at most 5 restarts in 300 seconds."""
    m = _RESTART_LIMIT_RE.match(v) if isinstance(v, str) else None
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"{v!r} is not a restart limit: say how many restarts in how long, "
                         "like \"5/300s\" (5 in 5 minutes; s, m or h)")
    return int(m.group(1)), int(m.group(2)) * _SECONDS[m.group(3)]


def _restart_limit(v: Any) -> str:
    n, secs = restart_limit(v)
    return f"{n}/{secs}s"


def _enum(*choices: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"{v!r} is not one of: {', '.join(choices)}")
        return v
    return parse


def _str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{v!r} is not a list of strings")
    return tuple(v)


def _cmd(v: Any) -> tuple[str, ...]:
    t = _str_list(v)
    if not t or not t[0]:
        raise ValueError("must name a program (like [\"/sbin/init\"])")
    return t


# parse_signal: in signals.py (lxpy-start and lxpy-stop use it without this table)


def _signal_name(v: Any) -> str:
    parse_signal(v)
    return v if isinstance(v, str) else str(v)


_CPUSET_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def _cpuset(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str) or not _CPUSET_RE.match(v.replace(" ", "")):
        raise ValueError(f"{v!r} is not a CPU list (like \"0-1\" or \"0,2\")")
    for part in v.split(","):
        if "-" in part:
            a, b = part.split("-")
            if int(a) > int(b):
                raise ValueError(f"{v!r}: range {part} runs backwards")
    return v.replace(" ", "")


def _auto_bool(v: Any) -> str | bool:
    """"auto", or true or false."""
    if v == "auto":
        return "auto"
    try:
        return _bool(v)
    except ValueError:
        raise ValueError(f"{v!r} is not \"auto\", true or false") from None


def _str_map(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError(f"{v!r} is not a table of names to values")
    out = {}
    for k, x in v.items():
        if isinstance(x, bool) or not isinstance(x, (str, int, float)):
            raise ValueError(f"{k}: {x!r} is not a string or number")
        out[str(k)] = str(x)
    return out


def _env_map(v: Any) -> dict[str, str]:
    out = _str_map(v)
    for k in out:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ValueError(f"{k!r} is not a valid environment variable name")
    return out


NAMESPACES = ("mnt", "pid", "uts", "ipc", "net", "cgroup", "user", "time")


def _ns_list(v: Any) -> tuple[str, ...]:
    t = _str_list(v)
    for ns in t:
        if ns not in NAMESPACES:
            raise ValueError(f"{ns!r} is not a namespace (allowed: {', '.join(NAMESPACES)})")
    return t


CONTAINER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _ns_share(v: Any) -> dict[str, str]:
    m = _str_map(v)
    for ns, target in m.items():
        if ns not in NAMESPACES:
            raise ValueError(f"{ns!r} is not a namespace (allowed: {', '.join(NAMESPACES)})")
        if target != "host" and not CONTAINER_NAME_RE.fullmatch(target):
            raise ValueError(f"{ns} = {target!r}: say \"host\" or a container name")
    return m


Triples = tuple[tuple[int, int, int], ...]
IDMAP_MODES = ("auto", "shared", "none")
_IDMAP_EXAMPLE = "{ uid = [[0, 100000, 65536]], gid = [[0, 100000, 65536]] }"


def _triples(v: Any) -> Triples:
    if not isinstance(v, list) or not v:
        raise ValueError(f"{v!r} is not a list of [inside, outside, count] triples")
    out = []
    for e in v:
        if (not isinstance(e, list) or len(e) != 3
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in e)
                or e[2] == 0):
            raise ValueError(f"{e!r} is not an [inside, outside, count] triple of whole numbers")
        out.append((e[0], e[1], e[2]))
    return tuple(out)


@dataclass(frozen=True)
class IdmapSetting:
    """The parsed `idmap` setting: a mode, and the maps of an explicit one (cfg.idmap.uid
    and cfg.idmap.gid are () for the other modes). lxpy.idmap.resolve() turns it into maps."""

    mode: str                   # auto | shared | none | explicit
    uid: Triples = ()
    gid: Triples = ()

    def plain(self) -> Any:
        """As written in TOML: "auto", or { uid = [...], gid = [...] }."""
        if self.mode != "explicit":
            return self.mode
        return {"uid": [list(t) for t in self.uid], "gid": [list(t) for t in self.gid]}

    def __str__(self) -> str:
        if self.mode != "explicit":
            return self.mode
        return "{ " + ", ".join(f"{k} = {[list(t) for t in getattr(self, k)]}"
                                for k in ("uid", "gid")) + " }"


def _idmap(v: Any) -> IdmapSetting:
    if isinstance(v, IdmapSetting):
        return v
    if isinstance(v, str) and v in IDMAP_MODES:
        return IdmapSetting(v)
    if isinstance(v, dict):
        unknown = sorted(set(v) - {"uid", "gid"})
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not part of an explicit id map (it takes uid "
                             f"and gid, like {_IDMAP_EXAMPLE})")
        if "uid" not in v or "gid" not in v:
            raise ValueError("set both idmap.uid and idmap.gid, or say \"auto\", \"shared\" "
                             "or \"none\"")
        maps = []
        for k in ("uid", "gid"):
            try:
                maps.append(_triples(v[k]))
            except ValueError as e:
                raise ValueError(f"{k}: {e}") from None
        return IdmapSetting("explicit", *maps)
    raise ValueError(f"{v!r} is not an id map (say \"auto\": its own block of 65536 ids, "
                     f"\"shared\": one block for all, \"none\": privileged, or {_IDMAP_EXAMPLE})")


def _idmap_pass(v: Any) -> tuple[int | str, ...]:
    """[1000, "uid 33", "gid 100"]: host ids a container sees as the same ids (an int is
    both a uid and a gid). Kept as written (normalized), so it prints back the same."""
    if not isinstance(v, list):
        v = [v]
    out: list[int | str] = []
    for x in v:
        kind, n = "both", x
        if isinstance(x, str) and x.strip().isdigit():     # lxpy-config set idmap_pass 1000
            n = int(x)
        elif isinstance(x, str):
            m = re.fullmatch(r"\s*(uid|gid)\s+(\d+)\s*", x)
            if not m:
                raise ValueError(f"{x!r} is not an id to pass through (like 1000, \"uid 33\" or "
                                 "\"gid 100\")")
            kind, n = m.group(1), int(m.group(2))
        elif isinstance(x, bool) or not isinstance(x, int):
            raise ValueError(f"{x!r} is not an id to pass through (like 1000, \"uid 33\" or "
                             "\"gid 100\")")
        if n == 0:
            raise ValueError("passing id 0 through would make root inside root on the host "
                             "(say idmap = \"none\" for a privileged container)")
        if n < 0 or n > 0xFFFFFFFE:
            raise ValueError(f"{n} is not an id (0 to 4294967294)")
        out.append(n if kind == "both" else f"{kind} {n}")
    return tuple(out)


def _caps(v: Any) -> tuple[str, ...]:
    t = tuple(x.lower().removeprefix("cap_") for x in _str_list(v))
    for c in t:
        if c not in caps.NAMES:
            near = difflib.get_close_matches(c, caps.NAMES, 1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ValueError(f"{c!r} is not a capability{hint}")
    return t


def _abs_path(v: Any) -> str:
    s = _nonempty_str(v)
    if not s.startswith("/"):
        raise ValueError(f"{s!r} is not an absolute path")
    return s


def _abs_path_list(v: Any) -> tuple[str, ...]:
    return tuple(_abs_path(x) for x in _str_list(v))


def _rel_or_abs_path(v: Any) -> str:
    s = _nonempty_str(v)
    if "\0" in s:
        raise ValueError("contains a NUL byte")
    return s


def _addr_list(version: int) -> Callable[[Any], tuple[str, ...]]:
    example = "10.0.3.50/24" if version == 4 else "fd00::50/64"

    def parse(v: Any) -> tuple[str, ...]:
        out = []
        for a in _str_list(v):
            try:
                iface = ipaddress.ip_interface(a)
            except ValueError:
                raise ValueError(f"{a!r} is not an IPv{version} address with prefix "
                                 f"(like {example})") from None
            if iface.version != version:
                raise ValueError(f"{a!r} is not an IPv{version} address")
            if "/" not in a:
                raise ValueError(f"{a!r} needs a prefix length (like {a}/24)")
            out.append(str(iface))
        return tuple(out)
    return parse


def _gateway(version: int) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = _str(v)
        if s in ("", "auto"):
            return s
        try:
            a = ipaddress.ip_address(s)
        except ValueError:
            raise ValueError(f"{s!r} is not an IPv{version} address") from None
        if a.version != version:
            raise ValueError(f"{s!r} is not an IPv{version} address")
        return s
    return parse


_HWADDR_RE = re.compile(r"^([0-9a-fA-F]{2}|xx):([0-9a-fA-F]{2}|xx):([0-9a-fA-F]{2}|xx):"
                        r"([0-9a-fA-F]{2}|xx):([0-9a-fA-F]{2}|xx):([0-9a-fA-F]{2}|xx)$")


def _hwaddr(v: Any) -> str:
    s = _str(v)
    if s and not _HWADDR_RE.match(s):
        raise ValueError(f"{s!r} is not a MAC address (like 00:16:3e:xx:xx:xx)")
    return s.lower()


_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")


def _ifname(v: Any) -> str:
    s = _str(v)
    if s and not _IFNAME_RE.match(s):
        raise ValueError(f"{s!r} is not an interface name (1 to 15 letters, digits, . _ - :)")
    return s


PRLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
            "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def _prlimits(v: Any) -> dict[str, tuple[int, int]]:
    if not isinstance(v, dict):
        raise ValueError(f"{v!r} is not a table of limit names (like nofile = \"1024:4096\")")
    out = {}
    for k, x in v.items():
        if k not in PRLIMITS:
            raise ValueError(f"{k!r} is not a resource limit (allowed: {', '.join(PRLIMITS)})")

        def one(s: Any) -> int:
            if s == "unlimited":
                return -1
            if isinstance(s, int) and not isinstance(s, bool) and s >= 0:
                return s
            if isinstance(s, str) and s.isdigit():
                return int(s)
            raise ValueError(f"{k}: {x!r} is not a limit "
                             "(a number, \"unlimited\" or \"soft:hard\")")
        if isinstance(x, str) and ":" in x:
            soft, hard = x.split(":", 1)
            out[k] = (one(soft), one(hard))
        else:
            out[k] = (one(x), one(x))
    return out


def _hugepages(v: Any) -> dict[str, int]:
    if not isinstance(v, dict):
        raise ValueError(f"{v!r} is not a table of page sizes to limits (like \"2MB\" = \"64M\")")
    out = {}
    for k, x in v.items():
        if not re.fullmatch(r"\d+[KMG]B", k):
            raise ValueError(f"{k!r} is not a huge page size (like 2MB or 1GB)")
        out[k] = parse_size(x)
    return out


def _raw_cgroup(v: Any) -> dict[str, str]:
    m = _str_map(v)
    for k in m:
        if "/" in k or k.startswith(".") or "." not in k:
            raise ValueError(f"{k!r} is not a cgroup file name (like \"memory.high\")")
    return m


_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)\s*$", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_rate(v: Any) -> int:
    """'100mbit' -> bits per second (tc's units: kbit, mbit, gbit are powers of 1000; kbps,
    mbps ... are bytes per second). At least 8kbit."""
    m = _RATE_RE.match(v) if isinstance(v, str) else None
    if not m:
        raise ValueError(f"{v!r} is not a rate (like \"100mbit\", \"1gbit\" or \"500kbps\")")
    n = float(m.group(1)) * _RATE_UNITS[m.group(2).lower()] * (8 if m.group(3).lower() == "bps"
                                                                else 1)
    if n < 8000:
        raise ValueError(f"{v!r} is below what tc shapes (at least 8kbit)")
    if n > 1 << 63:
        raise ValueError(f"{v!r} is more than any rate tc takes")
    return int(n)


def _rate(v: Any) -> str:
    """A rate as written ("" for none), checked by parse_rate."""
    if v != "":
        parse_rate(v)
    return v


def _listen(v: Any) -> str:
    """A forward's host side: a port (every host address), or "ADDR:PORT" ("[V6]:PORT")."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a port or \"ADDR:PORT\" (like 8080 or "
                         "\"192.0.2.10:8080\")")
    addr, _sep, port = v.rpartition(":")
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
        fam = 6
    else:
        fam = 4
    try:
        if addr and ipaddress.ip_address(addr).version != fam:
            raise ValueError
    except ValueError:
        raise ValueError(f"{v!r}: {addr!r} is not an IPv4 address or a bracketed IPv6 address "
                         "(like 192.0.2.10:8080 or [2001:db8::1]:8080)") from None
    _port(port)
    return v


def _port(v: Any) -> int:
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise ValueError(f"{v!r} is not a port (1-65535)")
    return v


def _mount_options(v: Any) -> tuple[str, ...]:
    t = _str_list(v)
    for o in t:
        if o.startswith("create=") and o not in ("create=dir", "create=file"):
            raise ValueError(f"{o!r}: create= takes dir or file")
    return t


SIZE = Kind("size", parse_size, "512M")
STR = Kind("string", _str)
NONEMPTY = Kind("string", _nonempty_str)
BOOL = Kind("bool", _bool, "true")
INT = Kind("int", _int())
UINT = Kind("int", _int(0))
STRLIST = Kind("list of strings", _str_list, '["a", "b"]')
CMD = Kind("command", _cmd, '["/sbin/init"]')
SIGNAL = Kind("signal", _signal_name, "SIGRTMIN+3")

# ---------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Setting:
    key: str                    # dotted, relative to its section's root ("limits.memory")
    kind: Kind
    default: Any
    help: str
    live: bool = False          # may be changed on a running container (lxpy-cgroup / --live)

    def parse(self, value: Any) -> Any:
        return self.kind.parse(value)


def S(key, kind, default, help, parse=None, name=None, example="", live=False) -> Setting:
    if parse is not None:
        kind = Kind(name or kind, parse, example)
    return Setting(key, kind, default, help, live)


SETTINGS: tuple[Setting, ...] = (
    S("include", "list of profiles", (), "Profiles merged in order before this file "
      "(shipped in config/, or /etc/lxpy/profiles/NAME.toml).", parse=_str_list),
    S("hostname", "hostname", None, "The container's hostname (default: its name).",
      parse=_hostname, example="web1"),
    S("arch", STR, "", "Architecture of the rootfs (informational, set at create)."),
    S("template", STR, "", "Template the container was created from (set at create)."),

    S("rootfs.backend", "backend", "dir", "Storage backend: dir, overlay or btrfs.",
      parse=_enum("dir", "overlay", "btrfs")),
    S("rootfs.path", "path", "rootfs", "The rootfs, relative to the container directory "
      "or absolute.", parse=_rel_or_abs_path),
    S("rootfs.lower", "path", "", "overlay: the read-only lower tree (the cache or an origin "
      "container's rootfs).", parse=lambda v: _str(v)),
    S("rootfs.origin", STR, "", "The container this one is a snapshot clone of, if any."),

    S("init.cmd", CMD, ("/sbin/init",), "The container's PID 1 and its arguments."),
    S("init.cwd", "path", "/", "Working directory of init.", parse=_abs_path),
    S("init.uid", UINT, 0, "User id init runs as."),
    S("init.gid", UINT, 0, "Group id init runs as."),
    S("init.halt_signal", SIGNAL, "SIGRTMIN+3", "Signal that asks init to power off "
      "(systemd: SIGRTMIN+3; busybox: SIGUSR1; sysvinit: SIGPWR)."),
    S("init.reboot_signal", SIGNAL, "SIGINT", "Signal that asks init to reboot."),
    S("init.stop_signal", SIGNAL, "SIGKILL", "Signal sent to every process when the stop "
      "timeout runs out."),
    S("init.stop_timeout", "int", 60, "Seconds lxpy-stop waits for a clean shutdown.",
      parse=_int(0, 86400)),

    S("environment", "table", {}, "Environment variables for init and attached commands.",
      parse=_env_map),

    S("namespaces.create", "list of namespaces", ("mnt", "pid", "uts", "ipc", "net", "cgroup"),
      "Namespaces the container gets of its own (\"user\" is accepted and changes nothing: "
      "the idmap setting decides whether there is a user namespace).", parse=_ns_list),
    S("namespaces.share", "table", {}, "Namespaces shared with \"host\" or another running "
      "container by name, like { net = \"db1\" }.", parse=_ns_share),

    S("limits.memory", "size", None, "Hard memory limit, at least 1M (v2 memory.max, v1 "
      "memory.limit_in_bytes).", parse=_memory_limit, example="512M", live=True),
    S("limits.memory_high", SIZE, None, "Memory level above which the container is throttled "
      "and reclaimed (v2 memory.high, v1 memory.soft_limit_in_bytes).", live=True),
    S("limits.memory_swap", SIZE, None, "Memory plus swap limit (v2 memory.swap.max = this - "
      "memory, v1 memory.memsw.limit_in_bytes).", live=True),
    S("limits.cpus", "number", None, "CPU quota in CPUs, like 1.5 (v2 cpu.max, v1 "
      "cpu.cfs_quota_us).", parse=_float_pos, live=True),
    S("limits.cpu_weight", "int", None, "Relative CPU weight 1-10000, default 100 (v2 "
      "cpu.weight, v1 cpu.shares).", parse=_int(1, 10000), live=True),
    S("limits.cpuset", "cpu list", None, "CPUs the container may run on, like \"0-1\".",
      parse=_cpuset, live=True),
    S("limits.cpuset_mems", "node list", None, "Memory nodes the container may use.",
      parse=_cpuset, live=True),
    S("limits.pids", "int", None, "Maximum number of tasks (v2/v1 pids.max).",
      parse=_int(1), live=True),
    S("limits.io_weight", "int", None, "Relative block I/O weight 1-10000 (v2 io.weight, v1 "
      "blkio.weight scaled to 10-1000).", parse=_int(1, 10000), live=True),
    S("limits.hugepages", "table", {}, "Huge page limits per page size, like "
      "{ \"2MB\" = \"64M\" }.", parse=_hugepages, live=True),
    S("limits.disk", "size", None, "What the container may write to its rootfs, at least 1M: "
      "a btrfs qgroup on its subvolume (exclusive bytes: shared with a snapshot origin is not "
      "counted; df / inside shows the whole filesystem), or an ext4/xfs project quota on its "
      "tree (dir) or delta (overlay; df / inside shows the limit). Applied at once by "
      "lxpy-config set, running or not; an error where the filesystem cannot enforce it "
      "(lxpy-checkconfig, lxpy-storage).", parse=_disk_limit, example="20G",
      live=True),
    S("limits.raw.v1", "table", {}, "Raw cgroup v1 files to write, applied only on v1 "
      "(like \"memory.swappiness\" = \"10\").", parse=_raw_cgroup),
    S("limits.raw.v2", "table", {}, "Raw cgroup v2 files to write, applied only on v2 "
      "(like \"memory.high\" = \"400M\").", parse=_raw_cgroup),

    S("devices.allow", "list of devices", (), "Devices beyond the default set (null zero full "
      "random urandom tty console ptmx pts): fuse, tun, kvm, loop.",
      parse=lambda v: tuple(_enum("fuse", "tun", "kvm", "loop")(x) for x in _str_list(v))),

    S("idmap", "id map", IdmapSetting("auto"), "Which host ids stand for the container's "
      "ids (its user namespace): \"auto\" (its own block of 65536 ids from root's range in "
      "/etc/subuid and /etc/subgid, allocated at create and kept until destroy), \"shared\" "
      "(one block all such containers share, as LXC does), \"none\" (privileged: no user "
      "namespace, root inside is root on the host; lxpy-create --privileged), or explicit "
      "maps: { uid = [[0, 100000, 65536]], gid = [[0, 100000, 65536]] } (also written as an "
      "[idmap] table with uid and gid).", parse=_idmap, example="auto"),
    S("idmap_pass", "list of ids", (), "Host ids the container sees as the same ids, for a "
      "shared directory: [1000, \"uid 33\", \"gid 100\"] (a number is both a uid and a "
      "gid); each punches a hole in the id map (inside N is host N).", parse=_idmap_pass,
      example="[1000]"),

    S("security.cap_drop", "list of capabilities", ("mac_admin", "mac_override", "sys_time",
      "sys_module", "sys_rawio", "syslog"), "Capabilities removed from the container "
      "(syslog: the host's kernel log, dmesg).", parse=_caps),
    S("security.cap_keep", "list of capabilities", (), "If set, only these capabilities are "
      "kept (cap_drop is then ignored).", parse=_caps),
    S("security.seccomp", "profile", "default", "Seccomp profile: default (deny kexec, "
      "module loading, open_by_handle_at ...), none, or an absolute path to a profile.",
      parse=lambda v: v if v in ("default", "none") else _abs_path(v)),
    S("security.no_new_privs", BOOL, False, "Set PR_SET_NO_NEW_PRIVS for init and attached "
      "commands."),
    S("security.masked_paths", "list of paths", (
        "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/kallsyms",
        "/proc/latency_stats", "/proc/timer_stats", "/proc/scsi", "/proc/acpi",
        "/sys/firmware", "/sys/devices/virtual/powercap"),
      "Paths hidden from the container (an empty file or tmpfs over them).",
      parse=_abs_path_list),
    S("security.readonly_paths", "list of paths", (
        "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"),
      "Paths mounted read-only in the container.", parse=_abs_path_list),
    S("security.prlimits", "table", {}, "Resource limits for init, like { nofile = "
      "\"1024:4096\" }.", parse=_prlimits),
    S("security.sysctl", "table", {}, "Namespaced sysctls set before init, like "
      "{ \"net.ipv4.ip_forward\" = \"1\" }.", parse=_str_map),

    S("proc.lxcfs", "auto or bool", "auto", "Bind lxcfs's proc/meminfo, cpuinfo, stat, "
      "uptime, loadavg, diskstats, swaps and sys/devices/system/cpu over the container's own "
      "(read-only, as LXC's lxcfs hook does), so free, top and uptime show its memory limit, "
      "its CPUs (limits.cpuset; limits.cpus too when lxcfs runs with --enable-cfs) and its "
      "start (nproc asks the kernel for its cpuset): \"auto\" when lxcfs runs at "
      "proc.lxcfs_path, true (the start fails when it does not) or false. If lxcfs stops or "
      "restarts, the container keeps running with a stale view (lxpy-info says so): restart "
      "the container once lxcfs runs again to refresh it.",
      parse=_auto_bool, example="auto"),
    S("proc.lxcfs_path", "path", "/var/lib/lxcfs", "Where lxcfs is mounted on the host "
      "(Debian's lxcfs.service: /var/lib/lxcfs).", parse=_abs_path),

    S("tty.max", "int", 4, "Number of ttys (/dev/tty1..N) for gettys.", parse=_int(0, 64)),
    S("tty.ptys", "int", 1024, "Maximum number of ptys in the container's devpts.",
      parse=_int(1, 1 << 20)),
    S("console.log", BOOL, True, "Keep a log of the console."),
    S("console.log_size", SIZE, 1 << 20, "Size at which the console log is rotated."),

    S("hooks.pre_start", STRLIST, (), "Commands run on the host before the namespaces are made."),
    S("hooks.start", STRLIST, (), "Commands run in the container right before init is executed."),
    S("hooks.stop", STRLIST, (), "Commands run on the host when the container stops, before "
      "cleanup."),
    S("hooks.post_stop", STRLIST, (), "Commands run on the host after the container stopped."),
    S("hooks.clone", STRLIST, (), "Commands run on the host after the container was cloned."),
    S("hooks.destroy", STRLIST, (), "Commands run on the host before the container is "
      "destroyed."),

    S("autostart.enabled", BOOL, False, "Start the container at boot (lxpy.service / "
      "lxpy-autostart)."),
    S("autostart.order", INT, 0, "Start order, ascending; stop is the reverse."),
    S("autostart.delay", "int", 0, "Seconds to wait after starting this container.",
      parse=_int(0, 3600)),
    S("autostart.groups", STRLIST, (), "Autostart groups the container belongs to."),
    S("autostart.restart", "policy", "no", "Restart the container when its init dies: no; "
      "on-failure (killed, crashed or exited with a non-zero status; not a poweroff or halt "
      "from inside, not lxpy-stop); always (also after a clean exit or poweroff from inside; "
      "never after lxpy-stop). The monitor restarts it, whoever started it (lxpy-start, "
      "lxpy.service or lxpy@NAME.service), and writes why in the container's lxpy.log.",
      parse=_enum("no", "on-failure", "always")),
    S("autostart.restart_delay", "int", 1, "Seconds before a restart; doubled for each "
      "further restart within autostart.restart_limit's window (at most 300).",
      parse=_int(0, 300)),
    S("autostart.restart_limit", "restarts/time", "5/300s", "Give up after this many "
      "restarts within this time (\"5/300s\": a 6th failure within 5 minutes stops the "
      "container for good, and lxpy.log says so).", parse=_restart_limit, example="5/300s"),
)

# Array-of-tables sections: a list of items, each with its own small table.
MOUNT_SETTINGS: tuple[Setting, ...] = (
    S("source", STR, "", "What to mount: a host path (bind), or a name for tmpfs."),
    S("target", "path", "", "Where, inside the container.", parse=_abs_path),
    S("type", "mount type", "bind", "bind, tmpfs or overlay.",
      parse=_enum("bind", "tmpfs", "overlay")),
    S("options", "list of options", (), "mount(8) options, plus create=dir|file, optional "
      "and noidmap (a bind mount in an unprivileged container: not idmapped, host ids "
      "as they are).",
      parse=_mount_options),
)

NET_SETTINGS: tuple[Setting, ...] = (
    S("type", "net type", "veth", "veth, macvlan, ipvlan, vlan, routed, phys, empty or none.",
      parse=_enum("veth", "macvlan", "ipvlan", "vlan", "routed", "phys", "empty", "none")),
    S("link", STR, "", "veth: bridge to attach the host end to; macvlan/ipvlan/vlan/phys: host "
      "device; routed: the host device to answer ARP/NDP on for the addresses (optional)."),
    S("name", "interface name", "eth0", "Interface name inside the container.", parse=_ifname),
    S("veth_host", "interface name", "", "veth/routed: name of the host end (default: from "
      "the container's name).", parse=_ifname),
    S("hwaddr", "MAC address", "", "MAC address; xx is filled with random digits at create.",
      parse=_hwaddr),
    S("mtu", "int", 0, "MTU (0: the kernel's default).", parse=_int(0, 65535)),
    S("macvlan_mode", "mode", "bridge", "macvlan: private, vepa, bridge or passthru.",
      parse=_enum("private", "vepa", "bridge", "passthru")),
    S("ipvlan_mode", "mode", "l3s", "ipvlan: l2, l3 or l3s (l3 modes route through the host "
      "device; no gateway is needed).", parse=_enum("l2", "l3", "l3s")),
    S("vlan", "int", None, "vlan: the VLAN id (1-4094) on link.", parse=_int(1, 4094)),
    S("ipv4", "list of addresses", (), "Static IPv4 addresses with prefix (routed: /32).",
      parse=_addr_list(4)),
    S("ipv6", "list of addresses", (), "Static IPv6 addresses with prefix (routed: /128).",
      parse=_addr_list(6)),
    S("gateway4", "address", "", "IPv4 default gateway (or \"auto\": the bridge's address).",
      parse=_gateway(4)),
    S("gateway6", "address", "", "IPv6 default gateway.", parse=_gateway(6)),
    S("dhcp", BOOL, False, "Ask for an address by DHCP inside the guest."),
    S("ingress", "rate", "", "veth/routed: limit what the container receives, like "
      "\"100mbit\" (tc tbf on the host end).", parse=_rate, example="100mbit"),
    S("egress", "rate", "", "veth/routed: limit what the container sends, like \"100mbit\" "
      "(the host end's ingress redirected to an ifb device shaped by tbf).",
      parse=_rate, example="100mbit"),
    S("mac_filtering", BOOL, False, "veth/routed: drop frames the container sends from "
      "another MAC than its own (nft table netdev lxpy-filter-HOSTEND)."),
    S("ipv4_filtering", BOOL, False, "veth/routed: drop IPv4 and ARP the container sends "
      "from another address than its net.N.ipv4 (with dhcp: the reserved lease); implies "
      "mac_filtering."),
    S("ipv6_filtering", BOOL, False, "veth/routed: drop IPv6 the container sends from "
      "another address than its net.N.ipv6 and its MAC's EUI-64 link-local; implies "
      "mac_filtering."),
)

FORWARD_SETTINGS: tuple[Setting, ...] = (
    S("proto", "protocol", "tcp", "tcp or udp.", parse=_enum("tcp", "udp")),
    S("listen", "listen address", "", "Host side: a port (every host address, IPv4 and "
      "IPv6), or \"ADDR:PORT\" / \"[V6ADDR]:PORT\" (that address only; 0.0.0.0 and [::] "
      "every address of one family).", parse=_listen, example="0.0.0.0:8080"),
    S("port", "int", None, "The port in the container (default: the listen port).",
      parse=_port, example="80"),
)

LIST_SECTIONS: dict[str, tuple[Setting, ...]] = {"mount": MOUNT_SETTINGS, "net": NET_SETTINGS,
                                                  "forward": FORWARD_SETTINGS}

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}

# Keys whose value is a table of arbitrary names (not sections to descend into).
TABLE_VALUED = {s.key for s in SETTINGS if s.kind.name == "table"}
# an entry of a table-valued setting, as a dotted key: environment.FOO, limits.raw.v2.memory.high
MAP_ENTRY = Setting("entry", STR, None, "An entry of a table-valued setting.")


def map_entry(key: str) -> tuple[str, str] | None:
    """'environment.FOO' -> ('environment', 'FOO'); 'limits.raw.v2.memory.high' ->
    ('limits.raw.v2', 'memory.high'): the longest table-valued setting the key starts with,
    and the rest as one name (cgroup file names hold dots). None when it is no such key."""
    for table in sorted(TABLE_VALUED, key=len, reverse=True):
        if key.startswith(table + ".") and len(key) > len(table) + 1:
            return table, key[len(table) + 1:]
    return None


def all_keys() -> list[str]:
    keys = list(BY_KEY)
    for sec, table in LIST_SECTIONS.items():
        keys += [f"{sec}.N.{s.key}" for s in table]
    return keys


# every table name of the settings table (the prefixes of its dotted keys): "limits",
# "limits.raw", "security", ...
SECTIONS = frozenset(k.rsplit(".", i)[0] for k in BY_KEY for i in range(1, k.count(".") + 1))


def closest(word: str, candidates: list[str], cutoff: float = 0.6) -> str | None:
    """The candidate nearest to word, or None. difflib's similarity, but ties go to the
    longest common prefix, then to the first in candidates (the schema's order), never
    to the alphabetically last as with difflib.get_close_matches (gateway -> gateway6)."""
    best: tuple[float, int, int] | None = None
    found = None
    for n, c in enumerate(candidates):
        r = difflib.SequenceMatcher(None, word, c).ratio()
        if r < cutoff:
            continue
        prefix = len(os.path.commonprefix([word, c]))
        rank = (r, prefix, -n)
        if best is None or rank > best:
            best, found = rank, c
    return found


def did_you_mean(key: str, table: bool = False) -> str:
    """' (did you mean KEY?)' for an unknown key, or ''; table: key names a table
    ([limitz]), so the table names are the candidates."""
    if table:
        guess = closest(key, sorted(SECTIONS | set(LIST_SECTIONS)))
        return f" (did you mean {guess}?)" if guess else ""
    generic = key
    parts = key.split(".")
    if len(parts) > 2 and parts[1].isdigit():
        generic = ".".join([parts[0], "N", *parts[2:]])
    guess = closest(generic, all_keys())
    if not guess:
        return ""
    if ".N." in guess and len(parts) > 1:
        guess = guess.replace(".N.", f".{parts[1]}.")
    return f" (did you mean {guess}?)"

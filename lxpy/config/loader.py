"""Loading a container's config: profiles merged in order, then the file itself,
validated against the settings table into frozen objects."""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LxpyError
from ..paths import profile_dirs
from .schema import BY_KEY, LIST_SECTIONS, SECTIONS, SETTINGS, Setting, closest, did_you_mean
from .view import ENTRIES, Config

# ---------------------------------------------------------------------------
# Reading and merging files


def read_toml(path: Path, error: type[LxpyError] = ConfigError,
              hint: str | None = "fix the syntax, or check it with lxpy-config validate"
              ) -> dict[str, Any]:
    """A TOML file's table; each failure an `error` that names the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML: {e}", hint) from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None


_PROFILES: dict[str, tuple[tuple[int, int, int, int], dict[str, Any]]] = {}


def _read_profile(path: Path) -> dict[str, Any]:
    """read_toml for profiles, parsed once per process while the file stays the same (lxpy-ls
    -f loads every container's config: most include the same few profiles). Callers never
    mutate what the config layer reads (merge() and validate() build new objects)."""
    try:
        st = os.stat(path)
    except OSError:
        return read_toml(path)
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    hit = _PROFILES.get(str(path))
    if hit is not None and hit[0] == key:
        return hit[1]
    data = read_toml(path)
    _PROFILES[str(path)] = (key, data)
    return data


def find_profile(name: str, relative_to: Path | None = None) -> Path:
    if "/" in name or name.endswith(".toml"):
        p = Path(name)
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        if p.is_file():
            return p
        raise ConfigError(f"include {name!r}: no such profile file")
    for d in profile_dirs():
        p = d / f"{name}.toml"
        if p.is_file():
            return p
    known = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.toml")
                    if p.stem != "lxpy"})
    near = difflib.get_close_matches(name, known, 1)
    hint = f"did you mean {near[0]}?" if near else f"known profiles: {', '.join(known) or 'none'}"
    raise ConfigError(f"include {name!r}: no such profile", hint)


def merge(base: dict[str, Any], over: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge over onto base. Tables merge; lists replace, except [[mount]] appends."""
    out = dict(base)
    for k, v in over.items():
        key = f"{path}{k}"
        if key == "mount" and isinstance(v, list) and isinstance(out.get(k), list):
            out[k] = out[k] + v
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v, key + ".")
        else:
            out[k] = v
    return out


def expand(data: dict[str, Any], source: Path, seen: tuple[Path, ...],
           files: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    includes = data.get("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        raise ConfigError(f"{source}: include: {includes!r} is not a list of profile names")
    for name in includes:
        if not isinstance(name, str):
            raise ConfigError(f"{source}: include: {name!r} is not a profile name")
        p = find_profile(name, source.parent).resolve()
        if p in seen:
            raise ConfigError(f"{source}: include {name!r} includes itself "
                              f"({' -> '.join(str(s) for s in seen + (p,))})")
        sub = expand(_read_profile(p), p, seen + (p,), files)
        merged = merge(merged, sub)
    files.append(str(source))
    own = {k: v for k, v in data.items() if k != "include"}
    return merge(merged, own)


# ---------------------------------------------------------------------------
# Validation


def _walk(data: dict[str, Any], prefix: str, where: str, out: dict[str, Any]) -> None:
    for k, v in data.items():
        key = f"{prefix}{k}"
        if key in BY_KEY or key in LIST_SECTIONS and not prefix:
            out[key] = v
        elif isinstance(v, dict) and key in SECTIONS:
            _walk(v, key + ".", where, out)
        elif isinstance(v, dict) and key not in BY_KEY:
            raise ConfigError(f"{where}: [{key}] is not a config table"
                              f"{did_you_mean(key, table=True)}",
                              "see lxpy-config help for the keys")
        else:
            raise ConfigError(f"{where}: {key!r} is not a config key{did_you_mean(key)}",
                              "see lxpy-config help for the keys")


def _parse_one(setting: Setting, value: Any, key: str, where: str) -> Any:
    try:
        return setting.parse(value)
    except ValueError as e:
        raise ConfigError(f"{where}: {key}: {e}") from None


def validate(data: dict[str, Any], where: str, files: tuple[str, ...] = ()) -> Config:
    raw: dict[str, Any] = {}
    _walk(data, "", where, raw)
    values: dict[str, Any] = {}
    for s in SETTINGS:
        if s.key in raw:
            values[s.key] = _parse_one(s, raw[s.key], s.key, where)
        else:
            values[s.key] = s.default
    lists: dict[str, tuple[Any, ...]] = {}
    for sec, table in LIST_SECTIONS.items():
        items = raw.get(sec, [])
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise ConfigError(f"{where}: {sec}: write entries as [[{sec}]] tables")
        by = {s.key: s for s in table}
        parsed = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ConfigError(f"{where}: {sec}.{i}: write entries as [[{sec}]] tables")
            vals = {}
            for k, v in item.items():
                if k not in by:
                    near = closest(k, list(by))
                    hint = f" (did you mean {sec}.{i}.{near}?)" if near else ""
                    raise ConfigError(f"{where}: {sec}.{i}.{k!r} is not a config key{hint}",
                                      f"{sec} entries take: {', '.join(by)}")
                vals[k] = _parse_one(by[k], v, f"{sec}.{i}.{k}", where)
            for s in table:
                vals.setdefault(s.key, s.default)
            parsed.append(ENTRIES[sec](**vals))
        lists[sec] = tuple(parsed)
    _check_cross(values, lists, where)
    return Config(values=values, mount=lists["mount"], net=lists["net"], files=files,
                  explicit=frozenset(raw), forward=lists["forward"])


def _check_cross(values: dict[str, Any], lists: dict[str, tuple], where: str) -> None:
    for m in lists["mount"]:
        if not m.target:
            raise ConfigError(f"{where}: mount: an entry has no target",
                              "give every [[mount]] a target inside the container")
        if m.type == "bind" and not m.source:
            raise ConfigError(f"{where}: mount {m.target}: a bind mount needs a source")
    names = set()
    for i, n in enumerate(lists["net"]):
        if n.type in ("veth", "macvlan", "phys") and n.name in names:
            raise ConfigError(f"{where}: net.{i}.name: {n.name!r} is used twice")
        names.add(n.name)
        if n.type in ("macvlan", "ipvlan", "vlan", "phys") and not n.link:
            raise ConfigError(f"{where}: net.{i}.link: a {n.type} interface needs the host "
                              "device it uses")
        _check_net_hosting(n, f"{where}: net.{i}")
    _check_forwards(lists, where)
    if values["idmap_pass"] and values["idmap"].mode == "none":
        raise ConfigError(f"{where}: idmap_pass: a privileged container (idmap = \"none\") "
                          "sees every host id as it is; there is nothing to pass through",
                          "drop idmap_pass, or give the container an id map (idmap = \"auto\")")
    if values["limits.memory_swap"] is not None and values["limits.memory"] is not None \
            and values["limits.memory_swap"] < values["limits.memory"]:
        raise ConfigError(f"{where}: limits.memory_swap must be at least limits.memory")


def _check_net_hosting(n: Any, where: str) -> None:
    """Rate limits, filtering and the routed/vlan types: what each type takes."""
    host_end = n.type in ("veth", "routed")
    for key in ("ingress", "egress", "mac_filtering", "ipv4_filtering", "ipv6_filtering"):
        if getattr(n, key) and not host_end:
            raise ConfigError(f"{where}.{key}: only veth and routed interfaces have a host end "
                              f"to enforce it on (this one is {n.type})",
                              f"use type veth or routed, or remove {key}")
    if n.vlan is not None and n.type != "vlan":
        raise ConfigError(f"{where}.vlan: only a vlan interface takes a VLAN id")
    if n.type == "vlan" and n.vlan is None:
        raise ConfigError(f"{where}.vlan: a vlan interface needs its VLAN id (1-4094)")
    if n.ipv4_filtering and n.dhcp and not n.ipv4:
        raise ConfigError(f"{where}.ipv4_filtering: with dhcp, the allowed address is the "
                          "reserved lease", "set the address in ipv4 (it becomes the lease)")
    if n.type == "routed":
        if n.dhcp:
            raise ConfigError(f"{where}.dhcp: a routed interface has static addresses only")
        if not (n.ipv4 or n.ipv6):
            raise ConfigError(f"{where}: a routed interface needs ipv4 or ipv6 addresses",
                              "set ipv4 = [\"ADDR/32\"]")
        for a in tuple(n.ipv4) + tuple(n.ipv6):
            if "/" in a and a.split("/")[1] not in ("32", "128"):
                raise ConfigError(f"{where}: routed address {a} must be a single address "
                                  "(/32 or /128)", "the host routes each address to the "
                                  "container; no subnet is shared")


def _forward_key(f: Any) -> tuple[str, str, int]:
    """(proto, listen address or "", host port) of a [[forward]] entry."""
    listen = str(f.listen)
    addr, _sep, port = listen.rpartition(":")
    return f.proto, addr.strip("[]"), int(port)


def _check_forwards(lists: dict[str, tuple], where: str) -> None:
    seen: dict[tuple[str, str, int], int] = {}
    for i, f in enumerate(lists["forward"]):
        if not f.listen:
            raise ConfigError(f"{where}: forward.{i}.listen: say which host port (like "
                              "listen = \"0.0.0.0:8080\" or listen = 8080)")
        k = _forward_key(f)
        if k in seen:
            raise ConfigError(f"{where}: forward.{i}: {f.proto} {f.listen} is also "
                              f"forward.{seen[k]}")
        seen[k] = i
    if lists["forward"] and not any(n.type in ("veth", "routed", "macvlan", "ipvlan", "vlan",
                                                "phys") and (n.ipv4 or n.ipv6)
                                    for n in lists["net"]):
        raise ConfigError(f"{where}: forward: a forward needs an interface with a fixed "
                          "address to forward to",
                          "set net.0.ipv4 (with dhcp = true it becomes a static lease)")


def load(path: Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load a container's config.toml with its profiles merged in."""
    path = Path(path)
    data = read_toml(path)
    files: list[str] = []
    merged = expand(data, path, (path.resolve(),), files)
    if overrides:
        merged = merge(merged, overrides)
    return validate(merged, str(path), tuple(files))


def load_data(data: dict[str, Any], where: str = "<config>",
              base_dir: Path | None = None) -> Config:
    """Validate config data that is not (yet) in a file, profiles included."""
    files: list[str] = []
    merged = expand(data, (base_dir or Path.cwd()) / where, (), files)
    return validate(merged, where, tuple(files[:-1]) + (where,))

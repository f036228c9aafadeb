"""Loading a container's config: profiles merged in order, then the file itself,
validated against the settings table into frozen objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..record import Record
from .schema import BY_KEY, LIST_SECTIONS, SETTINGS, Setting, all_keys

# ---------------------------------------------------------------------------
# Frozen views over the validated values: cfg.limits.memory reads values["limits.memory"].
# Plain classes (no generated dataclasses) keep `import lxpy.config` cheap: every command
# pays for it, and lxpy-copy / lxpy-info are called in loops.

_SECTIONS = frozenset(k.rsplit(".", i)[0] for k in BY_KEY for i in range(1, k.count(".") + 1))


class Section:
    """A read-only view of one table of the config (cfg.limits, cfg.limits.raw)."""

    __slots__ = ("_values", "_prefix")

    def __init__(self, values: dict[str, Any], prefix: str):
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        key = self._prefix + name
        try:
            return self._values[key]
        except KeyError:
            if key in _SECTIONS:
                return Section(self._values, key + ".")
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("config objects are read-only")

    def __repr__(self) -> str:
        p = self._prefix
        return f"Section({ {k[len(p):]: v for k, v in self._values.items() if k.startswith(p)} })"


class Entry:
    """One [[net]] or [[mount]] entry, read-only: entry.ipv4, entry.target."""

    __slots__ = ("_d",)

    def __init__(self, **values: Any):
        object.__setattr__(self, "_d", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._d[name]
        except KeyError:
            raise AttributeError(f"config entry has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("config objects are read-only")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and other._d == self._d

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._d.items())))

    def __repr__(self) -> str:
        return f"Entry({self._d})"

    def as_dict(self) -> dict[str, Any]:
        return dict(self._d)


class Config(Record):
    """A validated container config. `values` holds every key (defaults filled)."""

    __slots__ = ("values", "mount", "net", "files", "explicit")
    values: dict[str, Any]
    mount: tuple[Any, ...]
    net: tuple[Any, ...]
    files: tuple[str, ...]          # the files merged, in order
    explicit: frozenset[str]        # keys some file set (not defaults)

    def get(self, key: str) -> Any:
        parts = key.split(".")
        if parts[0] in LIST_SECTIONS and len(parts) >= 3 and parts[1].isdigit():
            items = getattr(self, parts[0])
            idx = int(parts[1])
            if idx >= len(items):
                raise ConfigError(f"{key}: there is no {parts[0]} entry {idx} "
                                  f"(the config has {len(items)})")
            return getattr(items[idx], ".".join(parts[2:]))
        if key not in self.values:
            from .schema import map_entry
            entry = map_entry(key)
            if entry is None:
                raise ConfigError(f"{key!r} is not a config key{_did_you_mean(key)}")
            table, name = entry
            if name not in (self.values.get(table) or {}):
                raise ConfigError(f"{key}: {table} has no entry {name!r}",
                                  f"lxpy-config get {table} shows them all")
            return self.values[table][name]
        return self.values[key]

    def __getattr__(self, name: str) -> Any:
        # cfg.limits.memory, cfg.init.cmd, cfg.hostname
        return getattr(Section(self.values, ""), name)

    def to_dict(self, explicit_only: bool = False) -> dict[str, Any]:
        """The effective config as nested plain data, ready for TOML or JSON."""
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            if explicit_only and key not in self.explicit:
                continue
            if value is None:
                continue
            _set_nested(out, key, _plain(BY_KEY[key], value))
        for sec, table in LIST_SECTIONS.items():
            items = getattr(self, sec)
            if items:
                out[sec] = [{s.key: _plain(s, getattr(it, s.key)) for s in table
                             if getattr(it, s.key) not in (None, "", ())} for it in items]
        return out


def _plain(setting: Setting, value: Any) -> Any:
    if isinstance(value, tuple):
        return [list(v) if isinstance(v, tuple) else v for v in value]
    if isinstance(value, dict):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
    return value


def _set_nested(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def closest(word: str, candidates: list[str], cutoff: float = 0.6) -> str | None:
    """The candidate nearest to word, or None. difflib's similarity, but ties go to the
    longest common prefix, then to the first in candidates (the schema's order), never
    to the alphabetically last as with difflib.get_close_matches (gateway -> gateway6)."""
    import difflib
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


def _did_you_mean(key: str) -> str:
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


# ---------------------------------------------------------------------------
# Reading and merging files


def read_toml(path: Path) -> dict[str, Any]:
    import tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}",
                          "fix the syntax, or check it with lxpy-config validate") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


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


def profile_dirs() -> list[Path]:
    from ..paths import shipped_dir
    dirs = []
    env = os.environ.get("LXPY_PROFILES")
    if env:
        dirs += [Path(p) for p in env.split(":") if p]
    dirs += [Path("/etc/lxpy/profiles"), Path("/usr/share/lxpy/config")]
    dirs.append(shipped_dir("config"))
    return dirs


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
    import difflib
    near = difflib.get_close_matches(name, known, 1)
    hint = f"did you mean {near[0]}?" if near else f"known profiles: {', '.join(known) or 'none'}"
    raise ConfigError(f"include {name!r}: no such profile", hint)


_FOUND: dict[tuple, tuple[tuple, Path]] = {}


def _dir_key(d: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(d)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _find_profile_resolved(name: str, relative_to: Path | None) -> Path:
    """find_profile(...).resolve(), remembered for a profile name while none of the profile
    directories changes (adding, removing or replacing a profile changes its directory)."""
    if "/" in name or name.endswith(".toml"):
        return find_profile(name, relative_to).resolve()
    dirs = tuple(profile_dirs())
    key = (name, dirs)
    state = tuple(_dir_key(d) for d in dirs)
    hit = _FOUND.get(key)
    if hit is not None and hit[0] == state:
        return hit[1]
    p = find_profile(name, relative_to).resolve()
    _FOUND[key] = (state, p)
    return p


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


def _expand(data: dict[str, Any], source: Path, seen: tuple[Path, ...],
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
        p = _find_profile_resolved(name, source.parent)
        if p in seen:
            raise ConfigError(f"{source}: include {name!r} includes itself "
                              f"({' -> '.join(str(s) for s in seen + (p,))})")
        sub = _expand(_read_profile(p), p, seen + (p,), files)
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
        elif isinstance(v, dict) and any(s.startswith(key + ".") for s in BY_KEY):
            _walk(v, key + ".", where, out)
        else:
            raise ConfigError(f"{where}: {key!r} is not a config key{_did_you_mean(key)}",
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
            parsed.append(Entry(**vals))
        lists[sec] = tuple(parsed)
    _check_cross(values, lists, where)
    return Config(values=values, mount=lists["mount"], net=lists["net"], files=files,
                  explicit=frozenset(raw))


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
        if n.type in ("macvlan", "phys") and not n.link:
            raise ConfigError(f"{where}: net.{i}.link: a {n.type} interface needs the host "
                              "device it uses")
    uid, gid = values["idmap.uid"], values["idmap.gid"]
    if bool(uid) != bool(gid):
        raise ConfigError(f"{where}: idmap: set both idmap.uid and idmap.gid, or neither")
    if values["limits.memory_swap"] is not None and values["limits.memory"] is not None \
            and values["limits.memory_swap"] < values["limits.memory"]:
        raise ConfigError(f"{where}: limits.memory_swap must be at least limits.memory")


def load(path: Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load a container's config.toml with its profiles merged in."""
    path = Path(path)
    data = read_toml(path)
    files: list[str] = []
    merged = _expand(data, path, (path.resolve(),), files)
    if overrides:
        merged = merge(merged, overrides)
    return validate(merged, str(path), tuple(files))


def load_data(data: dict[str, Any], where: str = "<config>",
              base_dir: Path | None = None) -> Config:
    """Validate config data that is not (yet) in a file, profiles included."""
    files: list[str] = []
    merged = _expand(data, (base_dir or Path.cwd()) / where, (), files)
    return validate(merged, where, tuple(files[:-1]) + (where,))

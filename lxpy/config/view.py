"""Frozen views over a validated config: cfg.limits.memory reads values["limits.memory"].

Plain classes (no generated dataclasses), and no import of the settings table, tomllib or
typing: a config loaded from its cache (cache.py) is built from these alone, and every
command that looks at a container pays for what is imported here. The table's section
names come from the cache or, when a config is validated, from the table itself."""

from __future__ import annotations

from ..errors import ConfigError
from ..record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SECTIONS: frozenset[str] | None = None     # "limits", "limits.raw", "security", ...
LISTS = ("mount", "net")    # the [[array]] tables: schema.LIST_SECTIONS (a test checks)


def sections() -> frozenset[str]:
    """Every table name of the settings table (the prefixes of its dotted keys)."""
    global _SECTIONS
    if _SECTIONS is None:
        from .schema import BY_KEY
        _SECTIONS = frozenset(k.rsplit(".", i)[0] for k in BY_KEY
                              for i in range(1, k.count(".") + 1))
    return _SECTIONS


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
            if key in (_SECTIONS or sections()):
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
        if parts[0] in LISTS and len(parts) >= 3 and parts[1].isdigit():
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
                from .loader import _did_you_mean
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
        from .loader import _plain, _set_nested
        from .schema import BY_KEY, LIST_SECTIONS
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

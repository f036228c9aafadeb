"""A validated config, read-only: cfg.limits.memory reads values["limits.memory"]; its
[[mount]], [[net]] and [[forward]] entries are frozen dataclasses made from their settings
tables."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .schema import BY_KEY, LIST_SECTIONS, SECTIONS, Setting, did_you_mean, map_entry


def _plain(setting: Setting, value: Any) -> Any:
    if hasattr(value, "plain"):             # a value object (idmap): as written in TOML
        return value.plain()
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


def _entry_class(sec: str, table: tuple[Setting, ...]) -> type:
    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    return dataclasses.make_dataclass(
        f"{sec.capitalize()}Entry",
        [(s.key, Any, dataclasses.field(default=s.default)) for s in table],
        namespace={"as_dict": as_dict}, frozen=True)


# one [[mount]] or [[net]] entry: entry.ipv4, entry.target
ENTRIES: dict[str, type] = {sec: _entry_class(sec, t) for sec, t in LIST_SECTIONS.items()}


@dataclass(frozen=True)
class Section:
    """A read-only view of one table of the config (cfg.limits, cfg.limits.raw)."""

    values: dict[str, Any]
    prefix: str

    def __getattr__(self, name: str) -> Any:
        key = self.prefix + name
        try:
            return self.values[key]
        except KeyError:
            if key in SECTIONS:
                return Section(self.values, key + ".")
            raise AttributeError(f"config has no key {key!r}") from None


@dataclass(frozen=True)
class Config:
    """A validated container config. `values` holds every key (defaults filled)."""

    values: dict[str, Any]
    mount: tuple[Any, ...]
    net: tuple[Any, ...]
    files: tuple[str, ...]          # the files merged, in order
    explicit: frozenset[str]        # keys some file set (not defaults)
    forward: tuple[Any, ...] = ()   # [[forward]]: published ports

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
            entry = map_entry(key)
            if entry is None:
                raise ConfigError(f"{key!r} is not a config key{did_you_mean(key)}")
            table, name = entry
            if name not in (self.values.get(table) or {}):
                raise ConfigError(f"{key}: {table} has no entry {name!r}",
                                  f"lxpy-config get {table} shows them all")
            return self.values[table][name]
        value = self.values[key]
        return value.plain() if hasattr(value, "plain") else value     # idmap: as written

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

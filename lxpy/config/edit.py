"""Comment-preserving edits of a config.toml (tomlkit), validated before they land."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .atomic import write_new
from .loader import expand, validate
from .schema import BY_KEY, LIST_SECTIONS, MAP_ENTRY, Setting, did_you_mean, map_entry

_TOML_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
             "\r": "\\r"}


def toml_str(s: str) -> str:
    """A TOML basic string token for s (one line, escaped)."""
    return '"' + "".join(_TOML_ESC.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f"
                                               else c) for c in str(s)) + '"'


def _setting_for(key: str) -> tuple[Setting, list[str | int]]:
    """The table entry for a dotted key and the path to it in the TOML document."""
    parts = key.split(".")
    if parts[0] in LIST_SECTIONS:
        if len(parts) != 3 or not parts[1].isdigit():
            raise ConfigError(f"{key!r}: say which entry, like {parts[0]}.0."
                              f"{parts[-1] if len(parts) > 1 else 'KEY'}")
        table = {s.key: s for s in LIST_SECTIONS[parts[0]]}
        if parts[2] not in table:
            raise ConfigError(f"{key!r} is not a config key{did_you_mean(key)}")
        return table[parts[2]], [parts[0], int(parts[1]), parts[2]]
    if key not in BY_KEY:
        entry = map_entry(key)
        if entry is not None:           # environment.FOO: one entry of a table
            return MAP_ENTRY, [*entry[0].split("."), entry[1]]
        raise ConfigError(f"{key!r} is not a config key{did_you_mean(key)}",
                          "lxpy-config help lists the keys")
    return BY_KEY[key], parts


def coerce(setting: Setting, key: str, text: Any) -> Any:
    """Turn a command-line string into the TOML value to store (validated)."""
    value: Any = text
    if isinstance(text, str):
        s = text.strip()
        kind = setting.kind.name
        if kind in ("int", "number"):
            try:
                value = int(s)
            except ValueError:
                try:
                    value = float(s)
                except ValueError:
                    value = s
        elif kind == "bool":
            value = s.lower() in ("true", "yes", "on", "1") if s.lower() in (
                "true", "yes", "on", "1", "false", "no", "off", "0") else s
        elif kind == "table" or (s.startswith("[") or s.startswith("{")):
            try:
                value = tomllib.loads(f"v = {s}")["v"]
            except tomllib.TOMLDecodeError:
                example = setting.kind.example or '["a"]'
                raise ConfigError(f"{key}: {text!r} is not a TOML value (like {example})") from None
        elif ("list" in kind and kind not in ("cpu list", "node list")) or kind == "command":
            value = [x.strip() for x in s.split(",") if x.strip()] if s else []
    try:
        setting.parse(value)
    except ValueError as e:
        raise ConfigError(f"{key}: {e}") from None
    return value


def _doc(path: Path):
    import tomlkit  # reason: heavy third-party, only config edits need it
    try:
        return tomlkit.parse(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except Exception as e:  # tomlkit raises its own parse errors
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _store(doc, path_parts: list[str | int], value: Any, key: str) -> None:
    import tomlkit  # reason: heavy third-party, only config edits need it
    node = doc
    for i, p in enumerate(path_parts[:-1]):
        if isinstance(p, int):
            if p >= len(node):
                raise ConfigError(f"{key}: there is no {path_parts[0]} entry {p} in this file "
                                  f"(it has {len(node)}); add entries as [[{path_parts[0]}]]")
            node = node[p]
            continue
        nxt = path_parts[i + 1]
        if p not in node:
            if isinstance(nxt, int):
                raise ConfigError(f"{key}: this file has no [[{p}]] entries")
            # a table that only holds tables ([limits.raw.v2]) prints no header of its own
            node[p] = tomlkit.table(is_super_table=i + 2 < len(path_parts))
        node = node[p]
    _put(node, path_parts[-1], value)


def _put(node, name, value: Any) -> None:
    """node[name] = value; a new key goes right after the table's last key, not after the
    comments and blank lines that end its body: those introduce what follows (the next
    table), and tomlkit would put the key between such a comment and its table."""
    if isinstance(name, int) or name in node:
        node[name] = value
        return
    container = node if hasattr(node, "body") else getattr(node, "value", None)  # Table
    body = getattr(container, "body", None)
    last, trailing, first_table = None, False, None
    for i, (key, item) in enumerate(body or ()):
        if key is None:                             # a comment or whitespace
            trailing = trailing or last is not None
            continue
        if item.__class__.__name__ in ("Table", "AoT"):
            first_table = i
            break
        last, trailing = i, False
    try:                                            # tomlkit 0.11 (Debian 12) to 0.15.3
        if last is not None and trailing:           # (0.15.3 has no _insert_after)
            container._insert_at(last + 1, name, value)
            return
        if last is None and first_table is not None:
            at = first_table                        # no key yet: above the comments that
            while at > 0 and body[at - 1][1].__class__.__name__ == "Comment":
                at -= 1                             # sit right on top of the first table
            container._insert_at(at, name, value)
            return
    except Exception:  # noqa: BLE001 - a tomlkit without them: the plain append, still valid
        pass
    node[name] = value


def _remove(doc, path_parts: list[str | int]) -> bool:
    node = doc
    for p in path_parts[:-1]:
        try:
            node = node[p]
        except (KeyError, IndexError):
            return False
    last = path_parts[-1]
    if last in node:
        del node[last]
        return True
    return False


def _edit(doc, changes: dict[str, Any], unset) -> None:
    for key in unset:
        _remove(doc, _setting_for(key)[1])
    for key, value in changes.items():
        _store(doc, _setting_for(key)[1], value, key)


def set_keys(path: Path, changes: dict[str, Any], unset: list[str] = ()) -> None:
    """Set (and unset) dotted keys in path, keeping comments and order; the result is
    validated (with profiles) before it replaces the file."""
    path = Path(path)
    doc = _doc(path)
    _edit(doc, {key: coerce(_setting_for(key)[0], key, text) for key, text in changes.items()},
          unset)
    _write_checked(path, doc)


def _write_checked(path: Path, doc) -> None:
    """doc validated (with profiles), then written over path."""
    import tomlkit  # reason: heavy third-party, only config edits need it
    text = tomlkit.dumps(doc)
    data = tomllib.loads(text)
    files: list[str] = []
    merged = expand(data, path, (path.resolve(),), files)
    validate(merged, str(path), tuple(files))
    write_new(path, text)


def add_entry(path: Path, section: str, entry: dict[str, Any]) -> None:
    """Append an [[section]] table (like [[forward]]) to path, comments kept; validated
    before it lands."""
    import tomlkit  # reason: heavy third-party, only config edits need it
    path = Path(path)
    doc = _doc(path)
    if section not in doc:
        doc.append(section, tomlkit.aot())
    table = tomlkit.table()
    for k, v in entry.items():
        table[k] = v
    table.add(tomlkit.nl())
    doc[section].append(table)
    _write_checked(path, doc)


def remove_entries(path: Path, section: str, which: Callable[[dict[str, Any]], bool]) -> int:
    """Remove the [[section]] tables of path that which(table) picks; how many went."""
    path = Path(path)
    doc = _doc(path)
    items = doc.get(section, [])
    gone = [i for i, t in enumerate(items) if which(dict(t))]
    for i in reversed(gone):
        del items[i]
    if gone and not len(items):
        del doc[section]
    if gone:
        _write_checked(path, doc)
    return len(gone)


def _merge_into(node, data: dict[str, Any]) -> None:
    for k, v in data.items():
        if isinstance(v, dict) and k in node and hasattr(node[k], "items"):
            _merge_into(node[k], v)
        else:
            node[k] = v


def _map_strings(node, fn: Callable[[str], str]) -> None:
    items = node.items() if hasattr(node, "items") else enumerate(node)
    for k, v in list(items):
        if isinstance(v, str):
            if fn(v) != v:
                node[k] = fn(v)
        elif hasattr(v, "items") or isinstance(v, list):
            _map_strings(v, fn)


def edit_text(text: str, changes: dict[str, Any] | None = None, unset: Iterable[str] = (), *,
              merge: dict[str, Any] | None = None, strings: Callable[[str], str] | None = None,
              hwaddr: Callable[[str, str | None], str | None] | None = None) -> str:
    """text (a config.toml) edited, comments kept: merge (a table) merged in, strings applied
    to every string value, the dotted keys unset, then changes set (TOML values), and each
    [[net]] entry's hwaddr set to hwaddr(type, hwaddr or None) where that is not None. Not
    validated: the caller loads the result."""
    import tomlkit  # reason: heavy third-party, only config edits need it
    doc = tomlkit.parse(text)
    if merge:
        _merge_into(doc, merge)
    if strings is not None:
        _map_strings(doc, strings)
    _edit(doc, changes or {}, unset)
    if hwaddr is not None:
        for entry in doc.get("net", []):
            new = hwaddr(str(entry.get("type", "veth")), entry.get("hwaddr"))
            if new is not None:
                entry["hwaddr"] = new
    return tomlkit.dumps(doc)

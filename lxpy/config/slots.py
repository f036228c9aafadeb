"""Editing a few string values of a config.toml without a TOML parser, provably.

lxpy-copy and the seal of a snapshot clone (storage/clone.py) change only a handful of
values of a container's config.toml: its hostname, its [[net]] MAC addresses and the keys
of its [rootfs] table, keeping everything else (comments included) byte for byte. tomlkit
costs ~30 ms to import and tomllib ~13 ms (with typing, datetime, re); this module edits
the lines instead, and never trusts a line it has not proven.

A *layout* of a config text says, for some of its lines, "this line is exactly the key/value
pair PATH = <one-line string token at [start:end)>" (PATH: ("hostname",), ("rootfs", KEY)
or ("net", I, "hwaddr")), and which line is the [rootfs] header. It is found by a small
line scanner (`scan`), then proven once with tomllib (`prove`): every string token the
scanner claims is replaced by a unique sentinel string and a sentinel key line is inserted
after the [rootfs] header; the result must parse to exactly the original data with the
sentinels at those paths and nowhere else. Then, for any values:

  - replacing those tokens by other one-line basic-string tokens (`toml_str`: a string token
    is self-delimiting, nothing else on the line or in the file is read differently) changes
    exactly those values;
  - deleting a proven line removes exactly that key (a TOML key/value pair owns its line);
  - lines `KEY = <token>` inserted right after the proven [rootfs] header are keys of rootfs.

So `render` needs no parser, and the layout of what it writes follows from the layout it
started from (the same argument): lxpy-copy records it for the clone and for a sealed
source at once. A layout is kept in <container dir>/.config.slots (marshal) with the text
it is about and that text's parsed data; it is used only while config.toml's text is that
text, byte for byte: a content key, so no clocks, inodes or races are involved."""

from __future__ import annotations

import marshal
import os

FORMAT = 1
NAME = ".config.slots"
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_TOML_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
             "\r": "\\r"}


def toml_str(s: str) -> str:
    """A TOML basic string token for s (one line, escaped)."""
    return '"' + "".join(_TOML_ESC.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f"
                                               else c) for c in str(s)) + '"'


class Layout:
    """A config text with its proven lines (see the module's docstring)."""

    __slots__ = ("text", "data", "slots", "rootfs")

    def __init__(self, text: str, data: dict, slots: dict, rootfs: int | None):
        self.text = text            # the config.toml text
        self.data = data            # what it parses to (tomllib)
        self.slots = slots          # path -> (line index, start, end) of its string token
        self.rootfs = rootfs        # line index of the [rootfs] header, or None

    def value(self, path: tuple):
        d = self.data
        for k in path:
            d = d[k]
        return d

    def get(self, path: tuple, default=None):
        try:
            return self.value(path)
        except (KeyError, IndexError, TypeError):
            return default


def _lines(text: str) -> list[str]:
    """text's lines as TOML sees them (split at \\n only), each ending in \\n."""
    lines = [ln + "\n" for ln in text.split("\n")]
    if lines[-1] == "\n":
        lines.pop()
    return lines


# -- scanning ---------------------------------------------------------------------------------

def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _rest_ok(s: str, i: int) -> bool:
    """Only blanks, then an optional comment, then the end of the line from s[i]."""
    i = _skip_ws(s, i)
    return i == len(s) or s[i] in "\r\n#"


def _header(line: str) -> tuple[bool, str] | None:
    """(array?, name) for a `[name]` / `[[name]]` line with a bare (dotted) name, else None."""
    s = line.strip()
    arr = s.startswith("[[")
    i = 2 if arr else 1
    j = s.find("]]" if arr else "]", i)
    if j < 0 or not _rest_ok(s, j + (2 if arr else 1)):
        return None
    name = s[i:j].strip()
    if not name or not all(p and set(p) <= _BARE for p in name.split(".")):
        return None
    return arr, name


def _string_kv(line: str) -> tuple[str, int, int] | None:
    """(key, start, end) for `key = "one-line string"` (or 'literal'), comment allowed."""
    i = _skip_ws(line, 0)
    j = i
    while j < len(line) and line[j] in _BARE:
        j += 1
    key = line[i:j]
    k = _skip_ws(line, j)
    if not key or k >= len(line) or line[k] != "=":
        return None
    start = _skip_ws(line, k + 1)
    q = line[start:start + 1]
    if q not in ('"', "'") or line.startswith(q * 3, start):
        return None
    e = start + 1
    while e < len(line):
        c = line[e]
        if c == q:
            break
        if c in "\r\n":
            return None
        e += 2 if c == "\\" and q == '"' else 1
    else:
        return None
    return (key, start, e + 1) if _rest_ok(line, e + 1) else None


def scan(lines: list[str]) -> tuple[dict, int | None]:
    """The claims to prove: string-valued hostname, rootfs.* and net.N.hwaddr lines, and the
    [rootfs] header."""
    slots: dict = {}
    rootfs = None
    table: str | None = ""
    net = -1
    for n, line in enumerate(lines):
        if line.lstrip().startswith("["):
            h = _header(line)
            table = None if h is None else h[1]
            if h == (True, "net"):
                net += 1
            elif h == (False, "rootfs") and rootfs is None:
                rootfs = n
            elif h is not None and h[1] == "net":
                table = None
            continue
        kv = _string_kv(line)
        if kv is None:
            continue
        key, start, end = kv
        if table == "" and key == "hostname":
            path: tuple = ("hostname",)
        elif table == "rootfs" and rootfs is not None:
            path = ("rootfs", key)
        elif table == "net" and key == "hwaddr" and net >= 0:
            path = ("net", net, "hwaddr")
        else:
            continue
        slots.setdefault(path, (n, start, end))
    return slots, rootfs


# -- proving ----------------------------------------------------------------------------------

def _set(data, path: tuple, value) -> None:
    for k in path[:-1]:
        data = data[k]
    data[path[-1]] = value


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def prove(text: str) -> Layout | None:
    """The layout of text, proven with tomllib (see the module's docstring); None when the
    text does not parse or the scanner's claims do not hold (then edit it with tomlkit)."""
    import tomllib
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        return None
    lines = _lines(text)
    slots, rootfs = scan(lines)
    tag = f"lxpy-slot-{os.urandom(6).hex()}-"
    if tag in text:
        return None
    want = _copy(data)
    out = list(lines)
    try:
        for i, (path, (n, s, e)) in enumerate(sorted(slots.items(), key=lambda x: x[1],
                                                      reverse=True)):
            out[n] = out[n][:s] + toml_str(f"{tag}{i}") + out[n][e:]
            _set(want, path, f"{tag}{i}")
        if rootfs is not None:
            t = want.get("rootfs")
            if not isinstance(t, dict) or "lxpyslot" in t:
                return None
            t["lxpyslot"] = f"{tag}ins"
            out.insert(rootfs + 1, f"lxpyslot = {toml_str(tag + 'ins')}\n")
        if tomllib.loads("".join(out)) != want:
            return None
    except (tomllib.TOMLDecodeError, ValueError, KeyError, IndexError, TypeError):
        return None
    return Layout(text, data, slots, rootfs)


# -- rendering --------------------------------------------------------------------------------

def render(lay: Layout, values: dict, drop: tuple = (), insert: dict | None = None) -> Layout:
    """A new layout: lay's text with the string values of the proven paths in `values`
    replaced, the proven rootfs keys in `drop` deleted, and `insert` (rootfs key -> string)
    written right after the [rootfs] header, in order (their old lines deleted). KeyError
    when something asked for has no proven line (the caller then uses tomlkit)."""
    insert = insert or {}
    lines = _lines(lay.text)
    data = _copy(lay.data)
    gone = {("rootfs", k) for k in (*drop, *insert)}
    for p in values:
        if p not in lay.slots or p in gone or not isinstance(values[p], str):
            raise KeyError(p)
    for p in gone:
        if p not in lay.slots and p[1] in data.get("rootfs", {}):
            raise KeyError(p)           # a rootfs key on a line not proven: tomlkit
    if insert and lay.rootfs is None:
        raise KeyError("rootfs")
    edits: dict[int, tuple] = {}        # line -> (path, start, end) to replace
    dropped = set()
    for p, (n, s, e) in lay.slots.items():
        if p in gone:
            dropped.add(n)
        elif p in values:
            edits[n] = (p, s, e)
    out: list[str] = []
    slots: dict = {}
    rootfs = None
    for n, line in enumerate(lines):
        if n in dropped:
            continue
        if n in edits:
            p, s, e = edits[n]
            tok = toml_str(values[p])
            line = line[:s] + tok + line[e:]
            slots[p] = (len(out), s, s + len(tok))
        else:
            for p, (m, s, e) in lay.slots.items():
                if m == n:
                    slots[p] = (len(out), s, e)
        out.append(line)
        if n == lay.rootfs:
            rootfs = len(out) - 1
            for k, v in insert.items():
                tok = toml_str(v)
                slots[("rootfs", k)] = (len(out), len(k) + 3, len(k) + 3 + len(tok))
                out.append(f"{k} = {tok}\n")
    for p in values:
        _set(data, p, values[p])
    rt = data.get("rootfs")
    for k in (*drop, *insert):
        rt.pop(k, None)
    rt.update(insert)
    return Layout("".join(out), data, slots, rootfs)


# -- the cache beside config.toml -------------------------------------------------------------

def load(cdir: str, text: str) -> Layout | None:
    """The proven layout of text (config.toml's text in cdir): from cdir/.config.slots when
    it is about this very text, else proven now and kept there. None when unprovable."""
    from .cache import _read
    hit = _read(os.path.join(cdir, NAME))
    if type(hit) is dict and hit.get("format") == FORMAT and hit.get("text") == text:
        try:
            return Layout(text, hit["data"], hit["slots"], hit["rootfs"])
        except KeyError:
            pass
    lay = prove(text)
    if lay is not None:
        save(cdir, lay)
    return lay


def save(cdir: str, lay: Layout) -> None:
    """Keep lay for cdir (its config.toml's text is, or is about to be, lay.text)."""
    from .cache import _write
    try:
        marshal.dumps(lay.data)
    except ValueError:              # a TOML date or time: not kept, proven again next time
        return
    _write(os.path.join(cdir, NAME), {"format": FORMAT, "text": lay.text, "data": lay.data,
                                      "slots": lay.slots, "rootfs": lay.rootfs})


# -- the Config that goes with an edit ---------------------------------------------------------

def config_after(cfg, before: Layout, after: Layout, config_path: str):
    """The Config of config_path, whose text is after.text, given cfg, the Config of a file
    whose text was before.text (in any directory), when that follows from the edit alone:
    the values render() changed are set (normalized as the settings table does), the rest is
    as it was, profiles included. None when it may not (a profile named by a path, a rootfs
    key deleted but not set again, something else changed): then parse the file."""
    from . import view
    inc = before.data.get("include", [])
    if isinstance(inc, str):
        inc = [inc]
    if not isinstance(inc, list) or inc != after.data.get("include", inc) or any(
            not isinstance(n, str) or "/" in n or n.endswith(".toml") for n in inc):
        return None
    b, a = _copy(before.data), after.data
    values = dict(cfg.values)
    net = list(cfg.net)
    for k in ("hostname",):
        if a.get(k) != b.get(k):
            if not isinstance(a.get(k), str):
                return None
            values[k] = b[k] = a[k]
    ra, rb = a.get("rootfs"), b.get("rootfs")
    if not isinstance(ra, dict) or not isinstance(rb, dict) or not set(rb) <= set(ra):
        return None
    explicit = set(cfg.explicit)
    for k, v in ra.items():
        if rb.get(k) != v:
            if not isinstance(v, str) or f"rootfs.{k}" not in values:
                return None
            values[f"rootfs.{k}"] = rb[k] = v
            explicit.add(f"rootfs.{k}")
    na, nb = a.get("net"), b.get("net")
    if na != nb:
        if not isinstance(na, list) or not isinstance(nb, list) or len(na) != len(nb) \
                or len(net) != len(na):
            return None
        for i, (ea, eb) in enumerate(zip(na, nb, strict=True)):
            if ea != eb:
                hw = ea.get("hwaddr")
                if not isinstance(hw, str) or {**eb, "hwaddr": hw} != ea:
                    return None
                net[i] = view.Entry(**{**net[i]._d, "hwaddr": hw.lower()})
                eb["hwaddr"] = hw
    if b != a:
        return None                     # something else changed
    files = tuple(cfg.files[:-1]) + (config_path,)
    return view.Config(values=values, mount=cfg.mount, net=tuple(net), files=files,
                       explicit=frozenset(explicit))

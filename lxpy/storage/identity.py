"""What makes a clone another machine than its source: its config's edit (name, hostname,
MAC addresses, rootfs keys) and its /etc/hostname and /etc/hosts. Without pathlib or re
(lxpy-copy -s, storage/fastclone.py)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HOST_FILES = ("etc/hostname", "etc/hosts")


def new_hwaddr(mac: str) -> str:
    """Keep the first three octets (the OUI), draw the other three at random."""
    parts = str(mac or "00:16:3e:xx:xx:xx").split(":")
    if len(parts) != 6:
        parts = ["00", "16", "3e", "xx", "xx", "xx"]
    rnd = os.urandom(6)          # as random.SystemRandom, without importing random
    out = [p if i < 3 and p.lower() != "xx" else f"{rnd[i]:02x}"
           for i, p in enumerate(parts)]
    if parts[0].lower() == "xx":      # a random first octet: unicast, locally administered
        out[0] = f"{(int(out[0], 16) & 0xFC) | 0x02:02x}"
    return ":".join(out)


def rewritten(v: str, old: str) -> bool:
    """Whether the clone's config gets new instead of the old container directory in v."""
    return v == old or v.startswith(old + "/") or (":" in v and old + "/" in v)


def any_rewritten(node: Any, old: str) -> bool:
    if isinstance(node, str):
        return rewritten(node, old)
    if isinstance(node, dict):
        node = node.values()
    elif not isinstance(node, list):
        return False
    return any(any_rewritten(v, old) for v in node)


def clone_layout(src: Any, *, keys: dict[str, str], old_dir: Any, new_dir: Any,
                 old_name: str, new_name: str, keep_hostname: bool, keep_macs: bool,
                 origin: str | None) -> Any:
    """storage.clone.render_config without tomlkit (~30 ms to import): the edit as a
    config.slots layout (src: the source's layout, or its text, proven here), or None when
    the edit needs tomlkit (a path to rewrite, a line to add, a line the layout has not
    proven)."""
    from ..config import slots
    lay = slots.prove(src) if isinstance(src, str) else src
    if lay is None:
        return None
    data = lay.data
    old, new = os.fspath(old_dir), os.fspath(new_dir)
    rt = data.get("rootfs")
    if not isinstance(rt, dict) or (old != new and any_rewritten(data, old)):
        return None
    values: dict[tuple, str] = {}
    if not keep_hostname and data.get("hostname") == old_name and new_name != old_name:
        values[("hostname",)] = new_name
    if not keep_macs:
        nets = data.get("net", [])
        if not isinstance(nets, list):
            return None
        for i, entry in enumerate(nets):
            if not isinstance(entry, dict):
                return None
            if entry.get("type", "veth") in ("veth", "macvlan") or "hwaddr" in entry:
                if "hwaddr" not in entry:
                    return None            # a line to add: tomlkit
                values[("net", i, "hwaddr")] = new_hwaddr(str(entry.get("hwaddr") or ""))
    insert = {k.removeprefix("rootfs."): v for k, v in keys.items()}
    if origin:
        insert["origin"] = origin
    try:
        return slots.render(lay, values, drop=("lower", "origin"), insert=insert)
    except KeyError:
        return None


_HOST_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_HOST_REST = _HOST_START | frozenset(".-")


def _hostname_like(s: str) -> bool:
    """re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", s)"""
    return 0 < len(s) <= 253 and s[0] in _HOST_START and set(s[1:]) <= _HOST_REST


def _word(c: str) -> bool:
    """re's \\w for one character of a str pattern."""
    return c.isalnum() or c == "_"


def replace_names(text: str, olds: list[str], new: str) -> str:
    """re.sub(rf"(?<![\\w.-])(?:{'|'.join(map(re.escape, olds))})(?![\\w-])", new, text)
    without re (~9 ms to import, with enum): olds tried in the order given at each place."""
    out = []
    i = done = 0
    n = len(text)
    while i < n:
        hit = None
        if i == 0 or not (_word(text[i - 1]) or text[i - 1] in ".-"):
            for o in olds:
                j = i + len(o)
                if o and text.startswith(o, i) and (j >= n or not (_word(text[j])
                                                                     or text[j] == "-")):
                    hit = j
                    break
        if hit is None:
            i += 1
            continue
        out.append(text[done:i])
        out.append(new)
        i = done = hit
    out.append(text[done:])
    return "".join(out)


def renamed_host_files(hostname: bytes | None, hosts: bytes | None, old: str,
                       new: str) -> tuple[bytes, bytes | None]:
    """What update_hostname writes, from the files' present contents (None: absent):
    /etc/hostname's new content and /etc/hosts' (None: hosts stays as it is)."""
    olds = {old}
    if hostname:
        first = hostname.decode(errors="replace").strip().split()
        if first and _hostname_like(first[0]):
            olds.add(first[0])
    olds.discard(new)
    new_hosts = None
    if hosts is not None and olds:
        text = hosts.decode(errors="surrogateescape")
        order = sorted(olds, key=len, reverse=True)
        lines = []
        for line in text.splitlines(keepends=True):
            body, hash_, comment = line.partition("#")
            lines.append(replace_names(body, order, new) + hash_ + comment)
        new_text = "".join(lines)
        if new_text != text:
            new_hosts = new_text.encode(errors="surrogateescape")
    return f"{new}\n".encode(), new_hosts


def _read_host_files(r: Any) -> dict[str, bytes | None]:
    before: dict[str, bytes | None] = {}
    for rel in HOST_FILES:
        try:
            before[rel] = r.read(rel) if r.exists(rel) else None
        except OSError:
            before[rel] = None
    return before


def read_host_files(root: Any) -> dict[str, bytes | None]:
    """/etc/hostname's and /etc/hosts' contents (None: absent), through safefs: what
    update_hostname would return, read before it changes anything."""
    from ..safefs import Root
    with Root(root) as r:
        return _read_host_files(r)


def update_hostname(root: Any, old: str, new: str,
                    before: dict[str, bytes | None] | None = None) -> dict[str, bytes | None]:
    """Set /etc/hostname to new and replace old by new in /etc/hosts, through the
    symlink-safe writer. Returns the previous contents (None: the file was absent);
    before: those contents, read already (read_host_files)."""
    from ..safefs import Root
    with Root(root) as r:
        if before is None:
            before = _read_host_files(r)
        hostname, hosts = renamed_host_files(before["etc/hostname"], before["etc/hosts"],
                                             old, new)
        if before["etc/hostname"] is not None or r.is_dir("etc"):
            r.write("etc/hostname", hostname)
        if hosts is not None:
            r.write("etc/hosts", hosts)
    return before


def restore_files(root: Any, before: dict[str, bytes | None]) -> None:
    from ..safefs import Root
    with Root(root) as r:
        for rel, data in before.items():
            if data is None:
                r.unlink(rel)
            else:
                r.write(rel, data)

"""What makes a clone another machine than its source: new MAC addresses, paths in its
config, and its /etc/hostname and /etc/hosts."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from ..config.edit import edit_text
from ..safefs import Root

HOST_FILES = ("etc/hostname", "etc/hosts")


def new_hwaddr(mac: str) -> str:
    """Keep the first three octets (the OUI), draw the other three at random."""
    parts = str(mac or "00:16:3e:xx:xx:xx").split(":")
    if len(parts) != 6:
        parts = ["00", "16", "3e", "xx", "xx", "xx"]
    rnd = os.urandom(6)
    out = [p if i < 3 and p.lower() != "xx" else f"{rnd[i]:02x}"
           for i, p in enumerate(parts)]
    if parts[0].lower() == "xx":      # a random first octet: unicast, locally administered
        out[0] = f"{(int(out[0], 16) & 0xFC) | 0x02:02x}"
    return ":".join(out)


def rewritten(v: str, old: str) -> bool:
    """Whether the clone's config gets new instead of the old container directory in v."""
    return v == old or v.startswith(old + "/") or (":" in v and old + "/" in v)


def replace_names(text: str, olds: list[str], new: str) -> str:
    """Each of olds (tried in the order given at each place) as a whole name in text
    replaced by new."""
    alt = "|".join(re.escape(o) for o in olds if o)
    return re.sub(rf"(?<![\w.-])(?:{alt})(?![\w-])", new, text) if alt else text


def renamed_host_files(hostname: bytes | None, hosts: bytes | None, old: str,
                       new: str) -> tuple[bytes, bytes | None]:
    """What update_hostname writes, from the files' present contents (None: absent):
    /etc/hostname's new content and /etc/hosts' (None: hosts stays as it is)."""
    olds = {old}
    if hostname:
        first = hostname.decode(errors="replace").strip().split()
        if first and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", first[0]):
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
    with Root(root) as r:
        return _read_host_files(r)


def update_hostname(root: Any, old: str, new: str,
                    before: dict[str, bytes | None] | None = None) -> dict[str, bytes | None]:
    """Set /etc/hostname to new and replace old by new in /etc/hosts, through the
    symlink-safe writer. Returns the previous contents (None: the file was absent);
    before: those contents, read already (read_host_files)."""
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
    with Root(root) as r:
        for rel, data in before.items():
            if data is None:
                r.unlink(rel)
            else:
                r.write(rel, data)


def clone_config(src_text: str, *, keys: dict[str, str] | None, old_dir: Path, new_dir: Path,
                 old_name: str, new_name: str, keep_hostname: bool, keep_macs: bool,
                 origin: str | None) -> str:
    """The clone's config.toml: the source's, comments kept, with the rootfs keys (lower
    and origin only when given; keys None: all kept, as a rename does), paths, hostname and
    MAC addresses changed."""
    old, new = os.fspath(old_dir), os.fspath(new_dir)
    changes: dict[str, Any] = {**(keys or {}), **({"rootfs.origin": origin} if origin else {})}
    if not keep_hostname and tomllib.loads(src_text).get("hostname") == old_name:
        changes["hostname"] = new_name
    return edit_text(
        src_text, changes, () if keys is None else ("rootfs.lower", "rootfs.origin"),
        strings=lambda v: v.replace(old, new) if rewritten(v, old) else v,
        hwaddr=None if keep_macs else
        lambda kind, mac: new_hwaddr(str(mac or "")) if kind in ("veth", "macvlan") or
        mac is not None else None)

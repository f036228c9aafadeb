"""nftables through the nft command: lxpy only ever touches its own tables."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from ..errors import NetworkError


def _nft() -> str:
    exe = shutil.which("nft") or "/usr/sbin/nft"
    return exe


def run(ruleset: str) -> None:
    """Apply a ruleset (nft -f -) in one transaction."""
    try:
        r = subprocess.run([_nft(), "-f", "-"], input=ruleset, capture_output=True, text=True,
                           timeout=30)
    except FileNotFoundError:
        raise NetworkError("nft is not installed", "apt install nftables") from None
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or ["?"])[0]
        raise NetworkError(f"nft refused lxpy's rules: {first}")


def replace_table(family: str, name: str, body: str) -> None:
    """Create or atomically replace `table family name { body }`."""
    run(f"table {family} {name} {{}}\ndelete table {family} {name}\n"
        f"table {family} {name} {{\n{body}\n}}\n")


def delete_table(family: str, name: str) -> None:
    if table_exists(family, name):
        run(f"delete table {family} {name}\n")


def tables() -> list[tuple[str, str]]:
    r = subprocess.run([_nft(), "-j", "list", "tables"], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        return []
    out = []
    for item in json.loads(r.stdout or "{}").get("nftables", []):
        t = item.get("table")
        if t:
            out.append((t["family"], t["name"]))
    return out


def table_exists(family: str, name: str) -> bool:
    return (family, name) in tables()


def list_table(family: str, name: str, as_json: bool = False) -> Any:
    cmd = [_nft()] + (["-j"] if as_json else []) + ["list", "table", family, name]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout) if as_json else r.stdout


def quote(name: str) -> str:
    return '"' + name.replace('"', "") + '"'

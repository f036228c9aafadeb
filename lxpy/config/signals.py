"""Signal names as the config writes them ('SIGRTMIN+3', 'RTMIN+3', 'PWR', 15) -> numbers.

Apart from the settings table (schema.py uses it to validate): lxpy-start and lxpy-stop
need the numbers without importing the table, re, or the signal module's enums."""

from __future__ import annotations

import _signal


def _names() -> dict[str, int]:
    return {n: v for n, v in vars(_signal).items()
            if n.startswith("SIG") and "_" not in n and n.isupper() and isinstance(v, int)
            and n not in ("SIGRTMIN", "SIGRTMAX")}


def _offset(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_signal(v) -> int:
    """'SIGRTMIN+3', 'RTMIN+3', 'SIGPWR', 'TERM' or a number -> signal number; ValueError
    with the phrase for the config error otherwise."""
    lo, hi = _signal.SIGRTMIN, _signal.SIGRTMAX
    if isinstance(v, int) and not isinstance(v, bool):
        if 1 <= v <= hi:
            return v
        raise ValueError(f"{v} is not a signal number")
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a signal")
    s = v.strip().upper()
    if s.isdigit():
        return parse_signal(int(s))
    if not s.startswith("SIG"):
        s = "SIG" + s
    for base, sign, start in (("SIGRTMIN", "+", lo), ("SIGRTMAX", "-", hi)):
        if s == base:
            return start
        if s.startswith(base + sign):
            k = _offset(s[len(base) + 1:])
            if k is not None and lo <= start + (k if sign == "+" else -k) <= hi:
                return start + (k if sign == "+" else -k)
    n = _names().get(s)
    if n is None:
        raise ValueError(f"{v!r} is not a signal (like SIGRTMIN+3, SIGPWR, SIGTERM)")
    return n

"""Signal names as the config writes them ('SIGRTMIN+3', 'RTMIN+3', 'PWR', 15) -> numbers."""

from __future__ import annotations

import signal


def parse_signal(v) -> int:
    """'SIGRTMIN+3', 'RTMIN+3', 'SIGPWR', 'TERM' or a number -> signal number; ValueError
    with the phrase for the config error otherwise."""
    lo, hi = signal.SIGRTMIN, signal.SIGRTMAX
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
        k = s.removeprefix(base + sign)
        if k != s and k.isdigit() and lo <= start + (int(k) if sign == "+" else -int(k)) <= hi:
            return start + (int(k) if sign == "+" else -int(k))
    try:
        return signal.Signals[s].value
    except KeyError:
        raise ValueError(f"{v!r} is not a signal (like SIGRTMIN+3, SIGPWR, SIGTERM)") from None

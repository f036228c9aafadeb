"""lxpy-autostart: start, stop, reboot or kill the auto-started containers, in order.

The same selection as LXC's lxc-autostart:
- by default only containers with autostart.enabled = true (-A: every container);
- groups: -g takes a comma list and may be repeated; an empty name is the unnamed group
  (containers with no autostart.groups). Without -g only the unnamed group is processed;
  -a processes every container whatever its groups. Groups are processed in the order given,
  each container once (the first group that names it wins);
- within a group: ascending autostart.order, then name. Stop and kill go in exactly the
  reverse order of start, so `-s` mirrors what a start did;
- start only acts on stopped containers, stop/kill/reboot only on running ones; after a
  container started (or rebooted) it waits that container's autostart.delay seconds before
  the next one (not after the last: nothing waits for it);
- -L prints what would be done instead of doing it: "NAME DELAY" lines for start and reboot,
  "NAME" lines for stop and kill (LXC's format).

Library code: raises lxpy.errors; cli/autostart.py prints.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .container import Container
from .errors import LxpyError, UsageError
from .status import state_of

log = logging.getLogger("lxpy.autostart")

ACTIONS = ("start", "stop", "kill", "reboot")
RUNNING_STATES = ("RUNNING", "FROZEN", "FREEZING", "STARTING", "STOPPING")


@dataclass(frozen=True)
class Entry:
    name: str
    enabled: bool = False
    order: int = 0
    delay: int = 0
    groups: tuple[str, ...] = ()
    stop_timeout: int = 60
    error: str | None = None            # the config could not be read


def parse_groups(values: Iterable[str] | None) -> list[str] | None:
    """-g values (each a comma list) -> ordered unique group names; "" is the unnamed group.

    None (no -g at all) stays None. `-g ""` and `-g ,web` both select the unnamed group.
    """
    if values is None:
        return None
    out: list[str] = []
    for v in values:
        for g in v.split(","):
            g = g.strip()
            if g in out:
                log.warning("group %r given twice; ignoring the second", g or "(unnamed)")
                continue
            out.append(g)
    return out


def _sort_key(e: Entry) -> tuple[int, str]:
    return (e.order, e.name)


def select(entries: Sequence[Entry], *, all_groups: bool = False, ignore_auto: bool = False,
           groups: Sequence[str] | None = None) -> list[Entry]:
    """The containers affected, in start order (see the module docstring)."""
    if all_groups and groups is not None:
        raise UsageError("-a selects every group; give -a or -g, not both")
    candidates = sorted((e for e in entries if e.error is None and (ignore_auto or e.enabled)),
                        key=_sort_key)
    if all_groups:
        return candidates
    passes = list(groups) if groups is not None else [""]
    out: list[Entry] = []
    seen: set[str] = set()
    for g in passes:
        for e in candidates:
            if e.name in seen:
                continue
            if (g == "" and not e.groups) or (g != "" and g in e.groups):
                out.append(e)
                seen.add(e.name)
    return out


def plan(entries: Sequence[Entry], action: str, **selection) -> list[Entry]:
    """select() in the order the action runs: start/reboot ascending, stop/kill reversed."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}")
    chosen = select(entries, **selection)
    if action in ("stop", "kill"):
        chosen.reverse()
    return chosen


def list_line(e: Entry, action: str) -> str:
    """One -L line, as lxc-autostart prints it."""
    return f"{e.name} {e.delay}" if action in ("start", "reboot") else e.name


def acts_on(action: str, running: bool) -> bool:
    return not running if action == "start" else running


# ---------------------------------------------------------------------------
# Reading containers


def entries(lxpath: Path | str | None = None) -> list[Entry]:
    """Every container of the lxpath with its autostart settings (broken configs carry error)."""
    out = []
    for c in Container.all(lxpath):
        try:
            cfg = c.config
            a = cfg.autostart
            out.append(Entry(c.name, bool(a.enabled), int(a.order), int(a.delay),
                             tuple(a.groups), int(cfg.init.stop_timeout)))
        except LxpyError as e:
            out.append(Entry(c.name, error=str(e)))
    return out


def is_running(name: str, lxpath: Path | str | None) -> bool:
    return state_of(Container(name, lxpath)).state in RUNNING_STATES


# ---------------------------------------------------------------------------
# Doing it


def command(verb: str) -> list[str]:
    """How to run lxpy-<verb>: the one next to the running command (same install), else PATH,
    else this interpreter's module."""
    here = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] else None
    for cand in ([here / f"lxpy-{verb}"] if here else []):
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)]
    found = shutil.which(f"lxpy-{verb}")
    if found:
        return [found]
    return [sys.executable, "-m", "lxpy", verb]


@dataclass
class Result:
    name: str
    ok: bool
    detail: str = ""


class Runner:
    """Runs the real lxpy-start / lxpy-stop commands (each container's failure is its own:
    its message goes to our stderr, and the next container is processed)."""

    def __init__(self, lxpath: Path | str | None, *, timeout: int | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 running: Callable[[str], bool] | None = None,
                 extra_args: Sequence[str] = ()):
        self.lxpath = lxpath
        self.timeout = timeout
        self.sleep = sleep
        self.running = running or (lambda name: is_running(name, lxpath))
        self.extra_args = list(extra_args)

    def _run(self, verb: str, name: str, *args: str, limit: float | None = None) -> Result:
        argv = command(verb)
        if self.lxpath is not None:
            argv += ["-P", str(self.lxpath)]
        argv += ["-n", name, *args, *self.extra_args]
        log.debug("running %s", " ".join(argv))
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=limit)
        except subprocess.TimeoutExpired:
            return Result(name, False, f"lxpy-{verb} did not finish in {limit:.0f} s")
        except OSError as e:
            return Result(name, False, f"cannot run lxpy-{verb}: {e.strerror}")
        if r.returncode == 0:
            return Result(name, True)
        return Result(name, False, f"lxpy-{verb} exited {r.returncode}")

    def _stop_limit(self, e: Entry) -> float:
        t = self.timeout if self.timeout is not None else e.stop_timeout
        return t + 60.0          # lxpy-stop kills after its own timeout: this is a backstop

    def start(self, e: Entry) -> Result:
        return self._run("start", e.name, limit=None)

    def stop(self, e: Entry) -> Result:
        args = ["-t", str(self.timeout)] if self.timeout is not None else []
        return self._run("stop", e.name, *args, limit=self._stop_limit(e))

    def kill(self, e: Entry) -> Result:
        return self._run("stop", e.name, "-k", limit=60.0)

    def reboot(self, e: Entry) -> Result:
        args = ["-t", str(self.timeout)] if self.timeout is not None else []
        return self._run("stop", e.name, "-r", *args, limit=self._stop_limit(e))


def execute(todo: Sequence[Entry], action: str, runner: Runner) -> list[Result]:
    """Do `action` to each entry in order (skipping those already in the wanted state) and
    wait autostart.delay after each successful start or reboot."""
    results = []
    for i, e in enumerate(todo):
        if not acts_on(action, runner.running(e.name)):
            log.info("%s: already %s", e.name, "running" if action == "start" else "stopped")
            continue
        log.info("%s %s", {"start": "starting", "stop": "stopping", "kill": "killing",
                           "reboot": "rebooting"}[action], e.name)
        r = getattr(runner, action)(e)
        results.append(r)
        if not r.ok:
            log.error("%s: %s", e.name, r.detail)
            continue
        if action in ("start", "reboot") and e.delay > 0 and i < len(todo) - 1:
            log.info("%s: waiting %d s (autostart.delay)", e.name, e.delay)
            runner.sleep(e.delay)
    return results

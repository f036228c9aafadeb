"""lxpy-autostart: selection, groups, order and delays (logic; the real starts are in
tests/integration/test_autostart.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lxpy import autostart
from lxpy.autostart import Entry, Result
from lxpy.errors import UsageError

BIN = Path(sys.executable).parent

E = [
    Entry("c30", True, 30, 1),
    Entry("c10", True, 10, 2),
    Entry("c20", True, 20, 0),
    Entry("web2", True, 5, 0, ("web",)),
    Entry("web1", True, 5, 0, ("web",)),
    Entry("db", True, 1, 0, ("db", "web")),
    Entry("off", False, 0, 0),
    Entry("broken", error="bad config"),
]


def names(es):
    return [e.name for e in es]


def test_default_is_the_unnamed_group_ascending():
    assert names(autostart.plan(E, "start")) == ["c10", "c20", "c30"]


def test_stop_and_kill_are_the_reverse_of_start():
    start = names(autostart.plan(E, "start", all_groups=True))
    assert names(autostart.plan(E, "stop", all_groups=True)) == start[::-1]
    assert names(autostart.plan(E, "kill", all_groups=True)) == start[::-1]
    assert names(autostart.plan(E, "reboot", all_groups=True)) == start


def test_all_ignores_groups_and_ties_break_by_name():
    assert names(autostart.plan(E, "start", all_groups=True)) == [
        "db", "web1", "web2", "c10", "c20", "c30"]


def test_ignore_auto_adds_disabled_containers_never_broken_ones():
    got = names(autostart.plan(E, "start", all_groups=True, ignore_auto=True))
    assert "off" in got and "broken" not in got


def test_groups_in_the_order_given_each_container_once():
    g = autostart.parse_groups(["web"])
    assert names(autostart.plan(E, "start", groups=g)) == ["db", "web1", "web2"]
    g = autostart.parse_groups(["db,web"])
    assert names(autostart.plan(E, "start", groups=g)) == ["db", "web1", "web2"]


@pytest.mark.parametrize("spec,expected", [
    ([",web"], ["", "web"]),
    ([""], [""]),
    (["web,"], ["web", ""]),
    (["web", "db"], ["web", "db"]),
    (["web,web"], ["web"]),
])
def test_parse_groups_keeps_the_unnamed_group(spec, expected):
    assert autostart.parse_groups(spec) == expected


def test_unnamed_group_then_named():
    g = autostart.parse_groups([",web"])
    assert names(autostart.plan(E, "start", groups=g)) == [
        "c10", "c20", "c30", "db", "web1", "web2"]


def test_all_with_groups_is_a_usage_error():
    with pytest.raises(UsageError):
        autostart.plan(E, "start", all_groups=True, groups=["web"])


def test_list_lines_match_lxc():
    e = Entry("web1", True, 10, 5)
    assert autostart.list_line(e, "start") == "web1 5"
    assert autostart.list_line(e, "reboot") == "web1 5"
    assert autostart.list_line(e, "stop") == "web1"
    assert autostart.list_line(e, "kill") == "web1"


class FakeRunner:
    def __init__(self, running=(), fail=()):
        self.log: list[tuple[str, str]] = []
        self.is_up = set(running)
        self.fail = set(fail)
        self.timeout = None

    def running(self, name):
        return name in self.is_up

    def sleep(self, s):
        self.log.append(("sleep", str(s)))

    def _do(self, what, e):
        self.log.append((what, e.name))
        ok = e.name not in self.fail
        if ok:
            (self.is_up.add if what in ("start", "reboot") else self.is_up.discard)(e.name)
        return Result(e.name, ok, "" if ok else "boom")

    def start(self, e):
        return self._do("start", e)

    def stop(self, e):
        return self._do("stop", e)

    def kill(self, e):
        return self._do("kill", e)

    def reboot(self, e):
        return self._do("reboot", e)


def test_execute_start_waits_delays_and_skips_running():
    r = FakeRunner(running={"c20"})
    todo = autostart.plan(E, "start")
    res = autostart.execute(todo, "start", r)
    assert r.log == [("start", "c10"), ("sleep", "2"), ("start", "c30")]
    assert all(x.ok for x in res)


def test_execute_failure_goes_on_without_delay():
    r = FakeRunner(fail={"c10"})
    res = autostart.execute(autostart.plan(E, "start"), "start", r)
    assert r.log == [("start", "c10"), ("start", "c20"), ("start", "c30")]
    assert [x.name for x in res if not x.ok] == ["c10"]


def test_execute_stop_only_running_in_reverse():
    r = FakeRunner(running={"c10", "c30"})
    autostart.execute(autostart.plan(E, "stop"), "stop", r)
    assert r.log == [("stop", "c30"), ("stop", "c10")]


# -- the command, on containers written by hand (no root needed for a listing) ------------

def _container(lxpath: Path, name: str, body: str) -> None:
    d = lxpath / name
    d.mkdir(parents=True)
    (d / "config.toml").write_text(body)


def _run(*args, lxpath):
    return subprocess.run([str(BIN / "lxpy-autostart"), "-P", str(lxpath), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def lxpath3(tmp_path):
    lp = tmp_path / "lxpath"
    for name, order, delay, groups in (("a30", 30, 3, []), ("a10", 10, 1, []),
                                       ("a20", 20, 2, ["web"])):
        _container(lp, name, f"[autostart]\nenabled = true\norder = {order}\n"
                             f"delay = {delay}\ngroups = {json.dumps(groups)}\n")
    _container(lp, "manual", "[autostart]\nenabled = false\n")
    _container(lp, "bad", "[autostart]\nenabled = \"maybe\"\n")
    return lp


def test_cli_list(lxpath3):
    r = _run("-L", "-a", lxpath=lxpath3)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["a10 1", "a20 2", "a30 3"]
    assert "bad" in r.stderr                       # a broken config is reported, not fatal
    r = _run("-L", lxpath=lxpath3)
    assert r.stdout.splitlines() == ["a10 1", "a30 3"]
    r = _run("-L", "-g", "web", lxpath=lxpath3)
    assert r.stdout.splitlines() == ["a20 2"]
    r = _run("-L", "-g", ",web", lxpath=lxpath3)
    assert r.stdout.splitlines() == ["a10 1", "a30 3", "a20 2"]
    r = _run("-L", "-a", "-A", lxpath=lxpath3)
    assert r.stdout.splitlines() == ["manual 0", "a10 1", "a20 2", "a30 3"]


def test_cli_list_stop_prints_only_running(lxpath3):
    r = _run("-L", "-a", "-s", lxpath=lxpath3)     # nothing runs here
    assert r.returncode == 0 and r.stdout == ""


def test_cli_list_json(lxpath3):
    r = _run("-L", "-a", "--format", "json", lxpath=lxpath3)
    rows = json.loads(r.stdout)
    assert [(x["name"], x["order"], x["delay"]) for x in rows] == [
        ("a10", 10, 1), ("a20", 20, 2), ("a30", 30, 3)]


@pytest.mark.parametrize("args", [["-s", "-k"], ["-a", "-g", "web"], ["-t", "-1"], ["-t", "x"]])
def test_cli_usage_errors(lxpath3, args):
    r = _run(*args, lxpath=lxpath3)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr

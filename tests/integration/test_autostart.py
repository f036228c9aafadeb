"""lxpy-autostart with the real lxpy-start/lxpy-stop: order, delays, groups, reverse stop,
kill and reboot, observed through the containers' own hooks and state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import wait_for


def info(lxpy, name: str) -> dict:
    return json.loads(lxpy("info", "-n", name, "--json").stdout)


def make(lxpy, lxpath: Path, name: str, order: int, delay: int, groups: list[str],
         log: Path, enabled: bool = True) -> None:
    lxpy("create", "-n", name, "-t", "busybox")
    with open(lxpath / name / "config.toml", "a") as f:
        f.write(f"\n[autostart]\nenabled = {'true' if enabled else 'false'}\norder = {order}\n"
                f"delay = {delay}\ngroups = {json.dumps(groups)}\n\n[hooks]\n"
                f"pre_start = [\"echo start $LXPY_NAME >> {log}\"]\n"
                f"post_stop = [\"echo stop $LXPY_NAME >> {log}\"]\n")
    lxpy("config", "-n", name, "validate")


def events(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def three(lxpy, lxpath, unique, tmp_path):
    log = tmp_path / "events"
    names = {o: f"{unique}-{o}" for o in (30, 10, 20)}
    make(lxpy, lxpath, names[30], 30, 0, [], log)
    make(lxpy, lxpath, names[10], 10, 2, [], log)
    make(lxpy, lxpath, names[20], 20, 1, ["web"], log)
    yield names, log
    lxpy("autostart", "-a", "-A", "-k", check=False)


def test_start_in_order_with_delays_and_stop_in_reverse(lxpy, lxpath, unique, three):
    names, log = three
    n10, n20, n30 = names[10], names[20], names[30]
    make(lxpy, lxpath, f"{unique}-off", 0, 0, [], log, enabled=False)
    listed = lxpy("autostart", "-a", "-L").stdout.splitlines()
    assert listed == [f"{n10} 2", f"{n20} 1", f"{n30} 0"]      # lxc-autostart -L format

    lxpy("autostart", "-a")
    assert events(log) == [f"start {n10}", f"start {n20}", f"start {n30}"]
    st = {o: info(lxpy, n) for o, n in names.items()}
    assert all(s["state"] == "RUNNING" for s in st.values())
    assert info(lxpy, f"{unique}-off")["state"] == "STOPPED"     # not autostart
    # each start waited the previous container's delay
    assert st[20]["started"] - st[10]["started"] >= 2 - 0.05
    assert st[30]["started"] - st[20]["started"] >= 1 - 0.05

    # nothing left to start; -s lists what would stop, in reverse, names only
    assert lxpy("autostart", "-a", "-L").stdout == ""
    assert lxpy("autostart", "-a", "-s", "-L").stdout.splitlines() == [n30, n20, n10]
    lxpy("autostart", "-a", "-s", "-t", "20")
    assert events(log)[3:] == [f"stop {n30}", f"stop {n20}", f"stop {n10}"]
    assert all(info(lxpy, n)["state"] == "STOPPED" for n in names.values())


def test_groups_unnamed_group_kill_and_reboot(lxpy, three):
    names, log = three
    n10, n20, n30 = names[10], names[20], names[30]
    # without -g: only the containers in no group
    assert lxpy("autostart", "-L").stdout.splitlines() == [f"{n10} 2", f"{n30} 0"]
    lxpy("autostart", "-g", "web")
    assert events(log) == [f"start {n20}"]
    assert info(lxpy, n10)["state"] == "STOPPED"
    # the unnamed group first, then web (already running: skipped)
    assert lxpy("autostart", "-g", ",web", "-L").stdout.splitlines() == [f"{n10} 2",
                                                                        f"{n30} 0"]
    pid20 = info(lxpy, n20)["pid"]
    lxpy("autostart", "-g", "web", "-r", "-t", "20")
    # a reboot is asynchronous: wait for the new init
    wait_for(lambda: (i := info(lxpy, n20))["pid"] not in (pid20, None)
             and i["state"] == "RUNNING", 60, f"{n20} rebooted")
    lxpy("autostart", "-a", "-A", "-k")
    assert info(lxpy, n20)["state"] == "STOPPED"


def test_a_failing_container_does_not_stop_the_others(lxpy, lxpath, three):
    names, log = three
    (lxpath / names[10] / "config.toml").write_text(
        (lxpath / names[10] / "config.toml").read_text().replace(
            "pre_start = [", "pre_start = [\"false\", "))
    r = lxpy("autostart", "-a", check=False)
    assert r.returncode == 1
    assert names[10] in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr
    assert info(lxpy, names[20])["state"] == "RUNNING"
    assert info(lxpy, names[30])["state"] == "RUNNING"
    assert info(lxpy, names[10])["state"] == "STOPPED"

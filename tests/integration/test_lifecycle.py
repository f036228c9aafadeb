"""create / ls / info / config / destroy as an admin uses them, with bad input of every kind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import tomllib

import pytest

from tests.conftest import BIN


def names(lxpy) -> list[str]:
    return [r["name"] for r in json.loads(lxpy("ls", "--format", "json").stdout)]


def visible_entries(lxpath) -> list[str]:
    """What is in the lxpath, lock files aside (they are dot files and hold no data)."""
    return sorted(p.name for p in lxpath.iterdir() if not p.name.endswith(".lock"))


def assert_one_line_error(r, status=1, contains=""):
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert contains in lines[0], lines[0]


@pytest.mark.parametrize("bad", ["../x", "a/b", "-x", "", "x" * 300, ".hidden", "a b", "ä"])
def test_hostile_names_are_refused(lxpy, lxpath, bad):
    r = lxpy("create", "-n", bad, "-t", "busybox", check=False)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "name" in r.stderr
    assert visible_entries(lxpath) == []
    assert not (lxpath.parent / "x").exists()


def test_busybox_create_list_info_config_destroy(lxpy, lxpath):
    r = lxpy("create", "-n", "bb", "-t", "busybox")
    assert "created bb" in r.stdout
    assert names(lxpy) == ["bb"]
    assert (lxpath / "bb" / "config.toml").is_file()

    table = lxpy("ls", "-f").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "AUTOSTART", "GROUPS", "IPV4", "IPV6",
                                "PRIVILEGED"]
    assert table[1].split()[:3] == ["bb", "STOPPED", "0"]
    assert lxpy("ls", "-1").stdout.split() == ["bb"]
    assert lxpy("ls", "--running").stdout.split() == []
    assert lxpy("ls", "--stopped").stdout.split() == ["bb"]

    info = json.loads(lxpy("info", "-n", "bb", "--json").stdout)
    assert info["name"] == "bb" and info["state"] == "STOPPED" and info["pid"] is None
    assert info["template"] == "busybox"
    assert os.path.isdir(info["rootfs"]) or info["backend"] == "overlay"
    text = lxpy("info", "bb").stdout
    assert "State:" in text and "STOPPED" in text and "Backend:" in text

    # config: set keeps comments, get reads the effective value, validate passes
    cfgfile = lxpath / "bb" / "config.toml"
    cfgfile.write_text("# my notes about bb\n" + cfgfile.read_text())
    lxpy("config", "-n", "bb", "set", "limits.memory", "256M")
    assert lxpy("config", "-n", "bb", "get", "limits.memory").stdout.strip() == str(256 << 20)
    assert "# my notes about bb" in cfgfile.read_text()
    assert tomllib.loads(cfgfile.read_text())["limits"]["memory"] == "256M"
    assert "ok" in lxpy("config", "-n", "bb", "validate").stdout
    shown = tomllib.loads(lxpy("config", "-n", "bb", "show").stdout)
    assert shown["limits"]["memory"] == 256 << 20
    assert shown["init"]["cmd"]

    # a bad set: one line, the file untouched
    before = cfgfile.read_bytes()
    r = lxpy("config", "-n", "bb", "set", "limits.memroy", "1G", check=False)
    assert_one_line_error(r, 1, "did you mean limits.memory?")
    r = lxpy("config", "-n", "bb", "set", "limits.pids", "many", check=False)
    assert_one_line_error(r, 1, "limits.pids")
    assert cfgfile.read_bytes() == before

    lxpy("destroy", "-n", "bb")
    assert names(lxpy) == []
    assert visible_entries(lxpath) == []


def test_root_password_from_stdin_never_in_argv(lxpy, lxpath):
    """`--root-password -` takes the password from stdin: root's hash in the container's
    /etc/shadow matches it; with nothing on stdin it is a usage error that makes nothing."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # noqa: PLC0415 - deprecated, present in Debian 12's Python 3.11
    lxpy("create", "-n", "pw", "-t", "busybox", "--", "--root-password", "-",
         input="from stdin 42\n")
    # the container's own files: its overlay upper, or its rootfs on a dir backend
    shadow = next(f for f in (lxpath / "pw/delta/etc/shadow", lxpath / "pw/rootfs/etc/shadow")
                  if f.exists()).read_text()
    h = next(line.split(":")[1] for line in shadow.splitlines() if line.startswith("root:"))
    assert h.startswith("$6$") and crypt.crypt("from stdin 42", h) == h
    r = lxpy("create", "-n", "pw2", "-t", "busybox", "--", "--root-password", "-",
             input="", check=False)
    assert_one_line_error(r, 2, "no password on stdin")
    assert names(lxpy) == ["pw"]


def test_duplicate_name_keeps_the_original(lxpy, lxpath):
    lxpy("create", "-n", "dup", "-t", "busybox")
    marker = lxpath / "dup" / "config.toml"
    before = marker.read_bytes()
    r = lxpy("create", "-n", "dup", "-t", "busybox", check=False)
    assert_one_line_error(r, 1, "already exists")
    assert marker.read_bytes() == before
    assert names(lxpy) == ["dup"]


def test_missing_template_and_bad_template_option_leave_nothing(lxpy, lxpath):
    r = lxpy("create", "-n", "x1", "-t", "no-such-template", check=False)
    assert_one_line_error(r, 1, "no-such-template")
    r = lxpy("create", "-n", "x2", "-t", "busybox", "--", "--no-such-option", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    r = lxpy("create", "-n", "x3", check=False)
    assert r.returncode == 2
    assert visible_entries(lxpath) == []
    assert names(lxpy) == []


def test_commands_on_a_missing_container_say_so(lxpy):
    for verb, extra in [("info", []), ("destroy", []), ("config", ["show"])]:
        r = lxpy(verb, "-n", "ghost", *extra, check=False)
        assert_one_line_error(r, 1, "'ghost' does not exist")


def test_extra_config_file_is_merged_and_validated(lxpy, lxpath, tmp_path):
    extra = tmp_path / "extra.toml"
    extra.write_text('[limits]\npids = 77\n[autostart]\nenabled = true\ngroups = ["web"]\n')
    lxpy("create", "-n", "ex", "-t", "busybox", "-f", str(extra))
    assert lxpy("config", "-n", "ex", "get", "limits.pids").stdout.strip() == "77"
    assert lxpy("ls", "-g", "web").stdout.split() == ["ex"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[limits]\npids = "lots"\n')
    r = lxpy("create", "-n", "ex2", "-t", "busybox", "-f", str(bad), check=False)
    assert_one_line_error(r, 1, "limits.pids")
    assert names(lxpy) == ["ex"]


def test_create_interrupted_leaves_nothing_and_retry_works(lxpy, lxpath):
    """SIGKILL and SIGINT at moments through a create: nothing listed, a retry works."""
    cmd = [str(BIN / "lxpy-create"), "-P", str(lxpath), "-n", "kill", "-t", "busybox", "-q"]
    for i, delay in enumerate([0.0, 0.05, 0.1, 0.15, 0.2, 0.3]):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)   # choosing the moment of the kill, not waiting for a result
        p.send_signal(signal.SIGKILL if i % 2 == 0 else signal.SIGINT)
        p.wait(timeout=60)
        got = names(lxpy)
        if got:  # it finished before the signal: a complete container, then remove it
            assert got == ["kill"]
            assert "busybox" in lxpy("config", "-n", "kill", "get", "template").stdout
            lxpy("destroy", "-n", "kill")
    lxpy("create", "-n", "kill", "-t", "busybox")
    assert names(lxpy) == ["kill"]
    lxpy("destroy", "-n", "kill")
    assert visible_entries(lxpath) == []


def test_umbrella_runs_the_same_code(lxpy, lxpath):
    r = subprocess.run([str(BIN / "lxpy"), "ls", "-P", str(lxpath), "--format", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout) == []
    r = subprocess.run([str(BIN / "lxpy"), "lss"], capture_output=True, text=True)
    assert r.returncode == 2 and "did you mean ls?" in r.stderr


def test_checkconfig_reports_this_kernel():
    r = subprocess.run([str(BIN / "lxpy-checkconfig")], capture_output=True, text=True)
    assert "Traceback" not in r.stderr
    for word in ("Mount namespace", "PID namespace", "Cgroup layout", "overlayfs", "veth",
                 "Seccomp"):
        assert word in r.stdout
    data = json.loads(subprocess.run([str(BIN / "lxpy-checkconfig"), "--format", "json"],
                                     capture_output=True, text=True).stdout)
    assert any(c["name"] == "Network namespace" and c["ok"] for c in data)
    # unprivileged containers (the default) take their blocks from root's subordinate ids
    sub = next(c for c in data if c["name"].startswith("Subordinate ids for root"))
    assert sub["ok"] and "blocks of 65536 ids" in sub["detail"], sub


@pytest.mark.parametrize("backend", ["overlay", "dir"])
def test_destroy_keeps_a_rootfs_path_outside_the_container(lxpy, lxpath, tmp_path, backend):
    """rootfs.path pointing elsewhere (absolute, or with "..") names the admin's tree:
    lxpy-destroy removes the container, never that tree."""
    victims = []
    for i, where in enumerate((str(tmp_path / "victim-abs"), "../../victim-rel")):
        name = f"v{i}"
        lxpy("create", "-n", name, "-t", "busybox", "-B", backend)
        target = tmp_path / "victim-abs" if i == 0 else (lxpath / name / where).resolve()
        (target / "sub").mkdir(parents=True)
        (target / "sub" / "data").write_text("precious\n")
        victims.append(target)
        lxpy("config", "-n", name, "set", "rootfs.path", where)
        lxpy("destroy", "-n", name)
        assert not (lxpath / name).exists()
        assert (target / "sub" / "data").read_text() == "precious\n", where
    assert names(lxpy) == []


BROKEN = {
    "not TOML": lambda text: text.replace("[rootfs]", "[rootfs", 1),
    "an unknown key": lambda text: text + "\n[limits]\nmemroy = \"512M\"\n",
    "an unknown table": lambda text: text + "\n[limitz]\nmemory = \"512M\"\n",
    "a bad backend": lambda text: re.sub(r'backend = "\w+"', 'backend = "ovrlay"', text),
}


@pytest.mark.parametrize("force,backend", [(False, "overlay"), (True, "overlay"),
                                           (False, "dir")])
@pytest.mark.parametrize("how", list(BROKEN))
def test_a_broken_config_never_traps_a_container(lxpy, lxpath, how, force, backend):
    """info says what is wrong with it, destroy (with or without -f) removes it: the
    backend it needs is read from what of the file reads, else from what is on disk."""
    lxpy("create", "-n", "bb", "-t", "busybox", "-B", backend)
    cfg = lxpath / "bb" / "config.toml"
    cfg.write_text(BROKEN[how](cfg.read_text()))
    r = lxpy("config", "-n", "bb", "get", "hostname", check=False)
    assert_one_line_error(r)
    error = r.stderr.strip().removeprefix("lxpy-config: ").split("\n")[0]
    info = json.loads(lxpy("info", "-n", "bb", "--json").stdout)
    assert info["state"] == "STOPPED" and info["backend"] == backend
    assert info["config_error"] in error
    text = lxpy("info", "-n", "bb").stdout
    assert "Config error:" in text and f"Backend:      {backend}" in text
    if how == "an unknown table":
        assert "[limitz] is not a config table (did you mean limits?)" in text
    assert "BROKEN" in lxpy("ls", "-f").stdout
    r = lxpy("destroy", "-n", "bb", *(["-f"] if force else []))
    assert "destroyed bb" in r.stdout and "Traceback" not in r.stderr
    assert names(lxpy) == [] and visible_entries(lxpath) == []
    assert str(lxpath) not in open("/proc/self/mountinfo").read()


def test_a_running_container_with_a_broken_config_stops_and_is_destroyed(lxpy, lxpath):
    for n in ("bb", "bc"):
        lxpy("create", "-n", n, "-t", "busybox", "-B", "overlay")
        lxpy("start", "-n", n)
        lxpy("wait", "-n", n, "-s", "RUNNING", "-t", "30")
        cfg = lxpath / n / "config.toml"
        cfg.write_text(cfg.read_text() + "\nnot toml at all\n")
    info = json.loads(lxpy("info", "-n", "bb", "--json").stdout)
    assert info["state"] == "RUNNING" and info["pid"] and "not valid TOML" in info["config_error"]
    r = lxpy("destroy", "-n", "bb", check=False)
    assert_one_line_error(r, contains="running")
    lxpy("destroy", "-n", "bb", "-f")
    lxpy("stop", "-n", "bc", "-k")
    assert json.loads(lxpy("info", "-n", "bc", "--json").stdout)["state"] == "STOPPED"
    lxpy("destroy", "-n", "bc")
    assert names(lxpy) == [] and visible_entries(lxpath) == []
    assert str(lxpath) not in open("/proc/self/mountinfo").read()

"""The commands: a console script for every verb ([project.scripts]), `lxpy <verb>` and
`python -m lxpy <verb>` running the same code, and the one wrapper's (cli._run) arguments,
logging and exit statuses."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from lxpy import __version__
from lxpy.cli import COMMANDS, main, scripts
from tests.conftest import BIN, REPO


def _progs() -> set[str]:
    return {"lxpy"} | {f"lxpy-{v}" for v in COMMANDS}


def test_every_command_has_a_console_script():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(declared) == _progs()
    assert declared["lxpy"] == "lxpy.cli:umbrella"
    for verb in COMMANDS:
        assert declared[f"lxpy-{verb}"] == f"lxpy.cli:scripts.{verb}"
        assert callable(getattr(scripts, verb))
    # installed into the venv (pip install -e), as setup-host and the .deb install them
    assert {p.name for p in BIN.glob("lxpy*")} >= _progs()


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd="/")


def test_umbrella_lists_the_commands_and_python_m_lxpy_is_it():
    for argv in ([str(BIN / "lxpy"), "-h"], [sys.executable, "-m", "lxpy", "--help"]):
        r = _run(*argv)
        assert r.returncode == 0, r.stderr
        assert set(COMMANDS) <= set(r.stdout.split())
    r = _run(sys.executable, "-m", "lxpy", "info", "--version")
    assert (r.returncode, r.stdout) == (0, f"lxpy {__version__}\n")
    r = _run(str(BIN / "lxpy"))
    assert r.returncode == 2 and "usage: lxpy" in r.stdout
    r = _run(str(BIN / "lxpy"), "lss")
    assert r.returncode == 2 and "'lss' is not a command (did you mean ls?)" in r.stderr


def test_usage_errors_are_one_line_with_status_2():
    for argv in ([], ["-n", "a", "b"], ["--bogus", "a"], ["-n"]):
        r = _run(str(BIN / "lxpy-info"), *argv)
        assert r.returncode == 2, argv
        assert len(r.stderr.splitlines()) == 1 and "(see lxpy-info -h)" in r.stderr, argv
    r = _run(str(BIN / "lxpy-info"), "../x")
    assert r.returncode == 2 and r.stderr.startswith("lxpy-info: invalid container name")
    r = _run(str(BIN / "lxpy-info"), "-l", "LOUD", "web1")
    assert r.returncode == 2 and "-l LOUD: not a log level" in r.stderr


def test_name_first_or_dash_n_and_extra_after_dashes(monkeypatch, tmp_path):
    """NAME as the first argument or -n NAME; what follows -- is the command's."""
    from lxpy.cli import execute
    seen = []
    monkeypatch.setattr(execute, "run", lambda args: seen.append(
        (args.name, args.lxpath, args.extra)) or 7)
    assert main("execute", ["bb", "-P", str(tmp_path), "--", "sh", "-c", "exit 3"]) == 7
    assert main("execute", ["-n", "bb", "--", "-h"]) == 7
    assert seen == [("bb", str(tmp_path), ["sh", "-c", "exit 3"]), ("bb", None, ["-h"])]


def test_attach_options(monkeypatch):
    from lxpy.cli import attach
    seen = []
    monkeypatch.setattr(attach, "run", seen.append)
    assert main("attach", ["-n", "web1", "-P", "/x", "-u", "1000", "--cwd=/tmp", "-vA=1",
                           "--set-var", "B=2", "--keep-env", "--", "ls", "-l", "--", "x"]) == 0
    a = seen.pop()
    assert (a.name, a.lxpath, a.uid, a.cwd, a.set_var, a.keep_env, a.extra) == (
        "web1", "/x", "1000", "/tmp", ["A=1", "B=2"], True, ["ls", "-l", "--", "x"])
    main("attach", ["web1"])
    a = seen.pop()
    assert (a.name, a.extra, a.keep_env, a.namespaces) == ("web1", None, False, None)
    for argv in (["web1", "other"], ["-n", "a", "b"], ["x", "--clear-env", "--keep-env"]):
        with pytest.raises(SystemExit) as e:
            main("attach", argv)
        assert e.value.code == 2, argv
    assert seen == []


@pytest.mark.parametrize("exc, status, said", [
    (KeyboardInterrupt(), 130, "lxpy-execute: interrupted\n"),
    (OSError(13, "Permission denied", "/x"), 1, "lxpy-execute: Permission denied: /x\n"),
    (ValueError("oops"), 1, "lxpy-execute: internal error: ValueError: oops (rerun with "
     "--debug for a traceback, and report it)\n"),
])
def test_errors_become_exit_statuses(monkeypatch, capsys, exc, status, said):
    from lxpy.cli import execute

    def run(args):
        raise exc
    monkeypatch.setattr(execute, "run", run)
    assert main("execute", ["bb", "--", "true"]) == status
    assert capsys.readouterr().err == said


def test_a_reader_that_goes_away_is_quiet():
    """lxpy-config help | head -1: no traceback, no 'Exception ignored' at exit."""
    r, w = os.pipe()
    os.close(r)                 # the reader has gone before anything is written
    try:
        p = subprocess.run([str(BIN / "lxpy-config"), "help"], stdout=w, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    finally:
        os.close(w)
    assert (p.returncode, p.stderr) == (1, "")


def test_logging_is_configured_from_the_options():
    code = """
import sys
sys.argv = ["lxpy-demo"]
from types import SimpleNamespace
import logging
from lxpy.cli._run import setup_logging
setup_logging(SimpleNamespace(logpriority=None, debug=False, logfile=None))
logging.getLogger("lxpy.demo").warning("careful")
logging.getLogger("lxpy.demo").info("not shown")
"""
    r = _run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "lxpy-demo: WARNING: careful\n"
    code = code.replace("logpriority=None", "logpriority='INFO'")
    r = _run(sys.executable, "-c", code)
    assert r.stderr == "lxpy-demo: WARNING: careful\nlxpy-demo: INFO: not shown\n"


def test_container_name_check_is_the_schema_regex():
    from hypothesis import given
    from hypothesis import strategies as st

    from lxpy.config.schema import CONTAINER_NAME_RE
    from lxpy.container import name_ok

    @given(st.text(alphabet="aZ09._-ä /\n", max_size=70))
    def check(name):
        assert name_ok(name) == bool(CONTAINER_NAME_RE.fullmatch(name))
    check()
    assert name_ok("a" * 63) and not name_ok("a" * 64) and not name_ok("web1\n")


def test_record_is_a_read_only_value():
    from lxpy.config.schema import Kind, Setting
    k = Kind("int", int)
    assert k.example == "" and k == Kind("int", int, "") and hash(k) == hash(Kind("int", int))
    s = Setting("a.b", k, 1, "help")
    assert s.live is False and s.parse("3") == 3
    assert repr(s).startswith("Setting(key='a.b', kind=Kind(name='int'")
    with pytest.raises(AttributeError):
        s.key = "x"
    with pytest.raises(TypeError):
        Setting("a.b", k, 1)
    with pytest.raises(TypeError):
        Setting("a.b", k, 1, "h", nope=1)

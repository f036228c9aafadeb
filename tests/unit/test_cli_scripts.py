"""bin/: the installed commands (bin/README.md). One template for all, in step with
lxpy.cli.COMMANDS and pyproject.toml, and the -I -S start that setup-host's install uses."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

from lxpy.cli import COMMANDS
from tests.conftest import REPO

BIN = REPO / "bin"


def _progs() -> list[str]:
    return ["lxpy"] + [f"lxpy-{v}" for v in COMMANDS]


def test_one_script_per_command_and_pyproject_lists_them():
    have = {p.name for p in BIN.iterdir() if p.name.startswith("lxpy")}
    assert have == set(_progs())
    files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "script-files"]
    assert sorted(files) == sorted(f"bin/{p}" for p in _progs())
    assert "scripts" not in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_scripts_are_the_same_template():
    ref = (BIN / "lxpy-ls").read_text()
    for prog in _progs():
        p = BIN / prog
        assert os.access(p, os.X_OK), prog
        text = p.read_text()
        assert text.startswith("#!python\n"), prog
        verb = prog.removeprefix("lxpy-")
        if prog == "lxpy":
            want = ref.replace("lxpy-ls:", "lxpy:").replace(
                "from lxpy.cli import command\ncommand('ls')",
                "from lxpy.cli import umbrella\numbrella()")
        else:
            want = ref.replace("lxpy-ls:", f"{prog}:").replace("command('ls')",
                                                                f"command({verb!r})")
        assert text == want, prog
        assert "import re" not in text


def _run(python: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run([python, *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd="/")


def test_without_flags_and_with_site_fallback():
    # this checkout's venv (editable: only site finds lxpy) -> the -S branch falls back
    for flags in ([], ["-IS"]):
        r = _run(sys.executable, *flags, str(BIN / "lxpy-info"), "--version")
        assert (r.returncode, r.stdout) == (0, f"lxpy {_version()}\n"), r.stderr
        r = _run(sys.executable, *flags, str(BIN / "lxpy"), "nosuch")
        assert r.returncode == 2 and "'nosuch' is not a command" in r.stderr


def test_plain_venv_starts_without_site(tmp_path):
    # a venv as setup-host makes it: lxpy in its own site-packages, no system site packages
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    base = os.path.realpath(sys.executable)
    os.symlink(base, root / "bin" / "python3")
    (root / "pyvenv.cfg").write_text(f"home = {os.path.dirname(base)}\n"
                                     "include-system-site-packages = false\n")
    sp = root / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    sp.mkdir(parents=True)
    os.symlink(REPO / "lxpy", sp / "lxpy")
    py = str(root / "bin" / "python3")
    r = _run(py, "-IS", "-X", "importtime", str(BIN / "lxpy-attach"), "--version")
    assert (r.returncode, r.stdout) == (0, f"lxpy {_version()}\n"), r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()}
    assert "lxpy" in imported and "site" not in imported
    # with system site packages the script lets site do it
    (root / "pyvenv.cfg").write_text(f"home = {os.path.dirname(base)}\n"
                                     "include-system-site-packages = true\n")
    r = _run(py, "-IS", "-X", "importtime", str(BIN / "lxpy-attach"), "--version")
    assert (r.returncode, r.stdout) == (0, f"lxpy {_version()}\n"), r.stderr
    assert "site" in {line.split("|")[-1].strip() for line in r.stderr.splitlines()}


def _version() -> str:
    from lxpy import __version__
    return __version__


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
    import pytest

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


def test_logging_is_configured_when_something_imports_it():
    code = """
import sys
sys.argv = ["lxpy-demo"]
from types import SimpleNamespace
from lxpy.cli._run import setup_logging
setup_logging(SimpleNamespace(logpriority=None, debug=False, logfile=None))
assert "logging" not in sys.modules
import logging.handlers  # as a module deep in a command would
logging.getLogger("lxpy.demo").warning("careful")
logging.getLogger("lxpy.demo").info("not shown")
"""
    r = _run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "lxpy-demo: WARNING: careful\n"


def test_lazy_logger_drops_debug_and_info_without_importing_logging():
    code = """
import sys
sys.argv = ["lxpy-demo"]
from types import SimpleNamespace
from lxpy import log
from lxpy.cli._run import setup_logging
lg = log.get("lxpy.demo")
setup_logging(SimpleNamespace(logpriority=None, debug=False, logfile=None))
lg.info("dropped %s", 1)
lg.debug("dropped")
assert "logging" not in sys.modules
lg.warning("careful")
assert "logging" in sys.modules
lg.info("still not shown")
"""
    r = _run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "lxpy-demo: WARNING: careful\n"
    code = """
import sys
sys.argv = ["lxpy-demo"]
from types import SimpleNamespace
from lxpy import log
from lxpy.cli._run import setup_logging
setup_logging(SimpleNamespace(logpriority="INFO", debug=False, logfile=None))
log.get("lxpy.demo").info("shown %s", 2)
log.get("lxpy.demo").debug("not shown")
"""
    r = _run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "lxpy-demo: INFO: shown 2\n"


def _slow_args(verb: str, argv: list[str], extra: list[str] | None = None) -> dict:
    import importlib

    from lxpy.cli import COMMANDS as cmds
    from lxpy.cli._run import _parse
    mod = importlib.import_module(cmds[verb])
    return vars(_parse(verb, mod, argv, extra))


def test_fast_args_are_what_argparse_gives():
    import importlib

    from lxpy.cli._run import fast_args
    cases = {
        "ls": [[], ["-f"], ["--fancy", "-P", "/x"], ["-1", "--running", "web"],
               ["--stopped", "--frozen", "-g", "a,b", "--format", "json"],
               ["--filter", "^w", "-f"], ["web", "--lxpath", "/y", "--groups", "g"],
               ["-P", "/a", "-P", "/b"], ["--line"], ["-"]],
        "info": [["web1"], ["-n", "web1"], ["--name", "web1", "-P", "/x", "--json"],
                 ["web1", "-s", "-p"], ["-H", "--no-size", "web1"],
                 ["--state", "--pid", "--no-humanize", "-n", "a.b_c-1"]],
        "start": [["web1"], ["-n", "web1", "-F"], ["-d", "--name", "w", "-P", "/x"],
                  ["--foreground", "--daemon", "w"], ["-w", "web1"],
                  ["-w", "-t", "10", "web1"], ["--wait-ready", "--timeout", "2.5", "-n", "w"]],
        "stop": [["web1"], ["-n", "web1", "-t", "10"], ["-t", "1.5", "-k", "w"],
                 ["-r", "-W", "--timeout", "0", "--kill", "--reboot", "--nowait", "w"]],
        "execute": [["bb"], ["-n", "bb"], ["-P", "/x", "bb"]],
        "copy": [["-n", "a", "-N", "b"], ["a", "-N", "b", "-s", "-q", "-P", "/x"],
                 ["-n", "a", "--newname", "b", "-p", "/y", "-B", "dir", "-K", "-M"],
                 ["-R", "-N", "b", "a"], ["-e", "-t", "a"], ["-a", "-s", "-N", "b", "a"],
                 ["--snapshot", "--keepname", "--keepmac", "--allowrunning", "--quiet",
                  "--backingstorage", "overlay", "--newpath", "/z", "-N", "c", "-n", "a"],
                 ["--backend", "best", "--rename", "--ephemeral", "--tmpfs", "-N", "c", "a"]],
    }
    for verb, argvs in cases.items():
        mod = importlib.import_module(COMMANDS[verb])
        for argv in argvs:
            fast = fast_args(mod, argv, None)
            assert fast is not None, (verb, argv)
            assert vars(fast) == _slow_args(verb, argv), (verb, argv)
    # what follows -- goes through for lxpy-execute, whose command it is
    mod = importlib.import_module(COMMANDS["execute"])
    for argv, extra in ((["bb"], ["/bin/sh", "-c", "exit 3"]), (["-n", "bb"], ["-h"])):
        fast = fast_args(mod, argv, extra)
        assert fast is not None and fast.extra == extra
        assert vars(fast) == _slow_args("execute", argv, extra)


def test_fast_args_leave_the_rest_to_argparse():
    import importlib

    from lxpy.cli._run import fast_args
    cases = {
        "ls": [["-h"], ["--version"], ["-f", "--debug"], ["-l", "INFO"], ["-o", "f"],
               ["--fan"], ["-f1"], ["--format", "xml"], ["--format=json"], ["a", "b"],
               ["-g"], ["-g", "-f"], ["-n", "x"], ["-P"], ["--filter", ""], ["-x"]],
        "info": [[], ["-n", "a", "b"], ["-n"], ["a", "b"], ["--json=1"], ["-sp", "a"],
                 ["a", "--bogus"], ["-n", "-s"]],
        "start": [["-w", "10", "web1"], ["web1", "-h"], ["-Fd", "w"], ["-t", "-1", "w"]],
        "stop": [["-t", "x", "w"], ["-t", "-1", "w"], ["-t", "w"], ["w", "-kr"]],
        "execute": [["-h"], ["bb", "-x"]],
        "copy": [["-h"], ["a", "-N"], ["a", "-N", "-s"], ["a", "-sq", "-N", "b"],
                 ["a", "b"], ["-N", "b"], ["a", "--newname=b"], ["a", "-N", "b", "--bogus"]],
    }
    for verb, argvs in cases.items():
        mod = importlib.import_module(COMMANDS[verb])
        for argv in argvs:
            assert fast_args(mod, argv, None) is None, (verb, argv)
    assert fast_args(importlib.import_module(COMMANDS["ls"]), [], ["x"]) is None
    assert fast_args(importlib.import_module(COMMANDS["start"]), ["a"], ["x"]) is None
    assert fast_args(importlib.import_module(COMMANDS["destroy"]), ["a"], None) is None


def test_fast_args_check_the_name():
    import importlib

    import pytest

    from lxpy.cli._run import fast_args
    from lxpy.errors import UsageError
    with pytest.raises(UsageError):
        fast_args(importlib.import_module(COMMANDS["info"]), ["../x"], None)

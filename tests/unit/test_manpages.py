"""Man pages come from the parsers and the settings table: nothing can be left out."""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess

import pytest

from lxpy.cli import COMMANDS, manpages
from lxpy.cli._run import build_parser
from lxpy.config.schema import LIST_SECTIONS, SETTINGS
from lxpy.paths import SYSTEM_SETTINGS


def importable() -> list[str]:
    out = []
    for verb, mod in COMMANDS.items():
        try:
            importlib.import_module(mod)
        except ImportError:
            continue
        out.append(verb)
    return sorted(out)


def unesc(roff: str) -> str:
    return roff.replace("\\-", "-").replace("\\e", "\\").replace("\\fB", "").replace(
        "\\fR", "").replace("\\fI", "").replace("\\&", "")


@pytest.mark.parametrize("verb", importable())
def test_every_option_of_every_command_is_documented(verb):
    page = unesc(manpages.command_page(verb))
    p = build_parser(verb, importlib.import_module(COMMANDS[verb]))
    actions = list(p._actions)
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                assert f"\n{name}\n" in page, name
                actions += sub._actions
    for a in actions:
        if a.help == argparse.SUPPRESS:
            continue
        for opt in a.option_strings:
            assert opt in page, f"lxpy-{verb}: {opt} missing from its man page"
    assert page.startswith(f'.TH "LXPY-{verb.upper()}" "1"')


def test_every_setting_is_in_the_config_page():
    page = unesc(manpages.container_config_page())
    for s in SETTINGS:
        assert f"\n{s.key} (" in page, s.key
    for sec, table in LIST_SECTIONS.items():
        for s in table:
            assert f"\n{sec}.N.{s.key} (" in page, s.key


def test_every_system_setting_is_in_lxpy_toml_5():
    page = unesc(manpages.system_config_page())
    for s in SYSTEM_SETTINGS:
        assert f"\n{s.key}" in page, s.key


def test_write_all(tmp_path):
    written, skipped = manpages.write_all(tmp_path)
    names = {p.name for p in written}
    for verb in importable():
        assert f"lxpy-{verb}.1" in names
    assert {"lxpy.1", "lxpy.toml.5", "lxpy.container.toml.5", "lxpy-config.5"} <= names
    assert set(skipped) == set(COMMANDS) - set(importable())


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db not installed")
def test_pages_render_without_warnings(tmp_path):
    written, _ = manpages.write_all(tmp_path)
    for p in written:
        if p.read_text().startswith(".so"):
            continue
        r = subprocess.run(["man", "--warnings", "-l", str(p)], capture_output=True, text=True,
                           env={"MANWIDTH": "80", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
                           timeout=60)
        assert r.returncode == 0 and r.stderr == "", (p.name, r.stderr)
        assert "NAME" in r.stdout

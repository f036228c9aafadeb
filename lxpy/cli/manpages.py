"""Man pages generated from the code, so they cannot drift from it.

    packaging/gen-man.py OUTDIR          (write_all() below)

writes OUTDIR/man1/lxpy.1 and lxpy-<verb>.1 for every command (from the argparse parser each
command builds: lxpy/cli/_run.py build_parser + lxpy/cli/<verb>.py), OUTDIR/man5/lxpy.toml.5
(the system defaults, from SYSTEM_SETTINGS) and OUTDIR/man5/lxpy.container.toml.5 (a
container's config.toml, from SETTINGS and LIST_SECTIONS; also reachable as lxpy-config(5)).
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from pathlib import Path
from typing import Any

from lxpy import __version__
from lxpy.cli import COMMANDS
from lxpy.cli._run import build_parser
from lxpy.config.schema import LIST_SECTIONS, SETTINGS
from lxpy.paths import SYSTEM_SETTINGS

SOURCE = "lxpy"


def esc(text: str) -> str:
    """Plain text -> roff: backslashes, dashes, and lines that would start a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    out = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def _date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = time.gmtime(int(epoch)) if epoch and epoch.isdigit() else time.gmtime()
    return time.strftime("%Y-%m-%d", t)


def header(name: str, section: int, title: str) -> str:
    return (f'.TH "{name.upper()}" "{section}" "{_date()}" "{SOURCE} {__version__}" '
            f'"{title}"\n.nh\n')


def _fmt_default(v: Any) -> str:
    if v is None or v == () or v == {} or v == "":
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


# ---------------------------------------------------------------------------
# Commands


def _option_label(a: argparse.Action) -> str:
    if a.option_strings:
        if a.nargs == 0:
            arg = ""
        else:
            mv = a.metavar or (a.dest.upper() if not a.choices else
                               "{" + ",".join(map(str, a.choices)) + "}")
            arg = f" {mv}"
        return ", ".join(f"\\fB{esc(o)}\\fR" for o in a.option_strings) + (
            f" \\fI{esc(arg.strip())}\\fR" if arg else "")
    return f"\\fI{esc(a.metavar or a.dest.upper())}\\fR"


def _option_help(a: argparse.Action) -> str:
    text = a.help or ""
    if "%(" in text:
        try:
            text = text % {**vars(a), "prog": ""}
        except (KeyError, TypeError, ValueError):
            pass
    if (a.option_strings and a.nargs != 0 and a.default not in (None, False, argparse.SUPPRESS)
            and "default" not in text):
        text += f" (default: {a.default})"
    if a.choices and a.option_strings and "{" not in (a.metavar or "{"):
        text += " One of: " + ", ".join(map(str, a.choices)) + "."
    return esc(text)


def _actions_roff(actions: list[argparse.Action]) -> str:
    out = ""
    for a in actions:
        if a.help == argparse.SUPPRESS or isinstance(a, argparse._SubParsersAction):
            continue
        out += f".TP\n{_option_label(a)}\n{_option_help(a)}\n"
    return out


def command_page(verb: str, module: str | None = None) -> str:
    mod = importlib.import_module(module or COMMANDS[verb])
    p = build_parser(verb, mod)
    prog = f"lxpy-{verb}"
    help_line = (getattr(mod, "HELP", "") or "").rstrip(".")
    out = header(prog, 1, "lxpy commands")
    out += f".SH NAME\n{esc(prog)} \\- {esc(help_line[:1].lower() + help_line[1:])}\n"
    usage = " ".join(p.format_usage().removeprefix("usage: ").split())
    out += f".SH SYNOPSIS\n.ad l\n{esc(usage)}\n.ad\n"
    out += f".SH DESCRIPTION\n{esc(getattr(mod, 'HELP', '') or '')}\n"
    if getattr(mod, "TAKES_NAME", True) and getattr(mod, "NAME_POSITIONAL", True):
        out += (".PP\nThe container can be named with \\fB\\-n\\fR \\fINAME\\fR or as the "
                "first argument.\n")
    groups = [g for g in p._action_groups if g._group_actions]
    common = [g for g in groups if g.title == "common options"]
    own = [g for g in groups if g.title != "common options"]
    out += ".SH OPTIONS\n"
    for g in own:
        body = _actions_roff(g._group_actions)
        if body:
            if g.title not in ("options", "optional arguments", "positional arguments"):
                out += f".SS {esc(g.title or '')}\n"
            out += body
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    for sp in subs:
        out += ".SH ACTIONS\n"
        helps = {c.dest: c.help for c in sp._choices_actions}
        for name, sub in sp.choices.items():
            usage = " ".join(sub.format_usage().removeprefix("usage: ").split())
            usage = usage.replace(f"{prog} ", "", 1) if usage.startswith(prog) else usage
            out += f".TP\n\\fB{esc(name)}\\fR\n{esc(helps.get(name) or '')}\n"
            out += f".RS\n.PP\n.ad l\n{esc(usage)}\n.ad\n"
            body = _actions_roff([a for a in sub._actions
                                  if not isinstance(a, argparse._HelpAction)])
            if body:
                out += body
            out += ".RE\n"
    if common:
        out += ".SS common options\n" + _actions_roff(common[0]._group_actions)
    epilog = getattr(mod, "EPILOG", None)
    if epilog:
        out += f".SH NOTES\n.nf\n{esc(epilog)}\n.fi\n"
    out += (".SH ENVIRONMENT\n.TP\n\\fBLXPY_PATH\\fR\nThe default lxpath (\\fB\\-P\\fR "
            "overrides it).\n.TP\n\\fBLXPY_CONFIG\\fR\nThe system config file instead of "
            "/etc/lxpy/lxpy.toml.\n")
    out += (".SH EXIT STATUS\n0 on success, 1 on an error (one line on standard error "
            "says what is wrong), 2 on a usage error, 130 when interrupted.\n")
    out += _see_also(verb)
    return out


def _see_also(verb: str | None) -> str:
    refs = [f"\\fBlxpy\\-{esc(v)}\\fR(1)" for v in sorted(COMMANDS) if v != verb]
    refs += ["\\fBlxpy.container.toml\\fR(5)", "\\fBlxpy.toml\\fR(5)"]
    return ".SH SEE ALSO\n" + ",\n".join(refs) + "\n"


def umbrella_page(verbs: list[str]) -> str:
    out = header("lxpy", 1, "lxpy commands")
    out += ".SH NAME\nlxpy \\- a system container manager in the tradition of LXC\n"
    out += ".SH SYNOPSIS\n.nf\nlxpy \\fICOMMAND\\fR [\\fIOPTIONS\\fR]\n" \
           "lxpy\\-\\fICOMMAND\\fR [\\fIOPTIONS\\fR]\n.fi\n"
    out += (".SH DESCRIPTION\n\\fBlxpy\\fR \\fIcommand\\fR runs the same code as "
            "\\fBlxpy\\-\\fR\\fIcommand\\fR. Containers live in the lxpath "
            "(/var/lib/lxpy, see \\fBlxpy.toml\\fR(5)); each has a config.toml "
            "(see \\fBlxpy.container.toml\\fR(5)).\n.SH COMMANDS\n")
    for v in sorted(COMMANDS):
        help_text = ""
        if v in verbs:
            help_text = getattr(importlib.import_module(COMMANDS[v]), "HELP", "") or ""
        out += f".TP\n\\fBlxpy\\-{esc(v)}\\fR(1)\n{esc(help_text)}\n"
    out += (".SH FILES\n.TP\n/etc/lxpy/lxpy.toml\nSystem defaults.\n.TP\n"
            "/var/lib/lxpy/\\fINAME\\fR/config.toml\nA container's config.\n.TP\n"
            "/var/log/lxpy/\\fINAME\\fR/\nConsole and lxpy logs of a container (of another "
            "lxpath: \\fILXPATH\\fR/\\fINAME\\fR/log/).\n.TP\n"
            "/usr/share/lxpy/templates, /etc/lxpy/templates\nTemplates.\n.TP\n"
            "/usr/share/lxpy/config, /etc/lxpy/profiles\nProfiles.\n")
    out += (".SH SYSTEMD\n\\fBlxpy@\\fR\\fINAME\\fR\\fB.service\\fR runs one container "
            "(\\fBlxpy\\-start \\-F\\fR, ready once its init runs); \\fBlxpy.service\\fR "
            "starts the autostart containers at boot (\\fBlxpy\\-autostart\\fR(1)); "
            "\\fBlxpy\\-net.service\\fR sets up the managed bridge.\n")
    return out + _see_also(None)


# ---------------------------------------------------------------------------
# Config formats


def _setting_roff(key: str, s) -> str:
    default = _fmt_default(s.default)
    meta = s.kind.name + (f", default {default}" if default else "")
    if getattr(s, "live", False):
        meta += "; can be changed on a running container (lxpy-config set --live)"
    return f".TP\n\\fB{esc(key)}\\fR ({esc(meta)})\n{esc(s.help)}\n"


def container_config_page() -> str:
    out = header("lxpy.container.toml", 5, "lxpy file formats")
    out += (".SH NAME\nlxpy.container.toml \\- the config.toml of an lxpy container\n"
            ".SH SYNOPSIS\n/var/lib/lxpy/\\fINAME\\fR/config.toml\n"
            ".SH DESCRIPTION\nA TOML file. Keys are written in their tables "
            "(\\fB[limits]\\fR then \\fBmemory = \"512M\"\\fR) and named in dotted form on the "
            "command line (\\fBlxpy\\-config \\-n web1 set limits.memory 512M\\fR). "
            "Profiles named in \\fBinclude\\fR are merged first, in order. Unknown keys are "
            "errors. Sizes take K, M, G, T (binary units); signals are names like "
            "SIGRTMIN+3.\n")
    sections: dict[str, list] = {}
    for s in SETTINGS:
        sec = s.key.split(".")[0] if "." in s.key else ""
        sections.setdefault(sec, []).append(s)
    out += ".SH TOP-LEVEL KEYS\n"
    for s in sections.pop("", []):
        out += _setting_roff(s.key, s)
    for sec, items in sections.items():
        out += f".SH [{esc(sec)}]\n"
        for s in items:
            out += _setting_roff(s.key, s)
    for sec, table in LIST_SECTIONS.items():
        out += (f".SH [[{esc(sec)}]]\nA list: each \\fB[[{esc(sec)}]]\\fR table is one item; "
                f"on the command line item N is \\fB{esc(sec)}.N.\\fR\\fIkey\\fR.\n")
        for s in table:
            out += _setting_roff(f"{sec}.N.{s.key}", s)
    out += (".SH EXAMPLE\n.nf\n" + esc(
        'include = ["debian"]\nhostname = "web1"\n\n[limits]\nmemory = "512M"\ncpus = 1.5\n\n'
        '[[net]]\ntype = "veth"\nlink = "lxpybr0"\nipv4 = ["10.0.3.50/24"]\n'
        'gateway4 = "10.0.3.1"\n\n[autostart]\nenabled = true\norder = 10\ndelay = 5\n'
        'groups = ["web"]\n') + ".fi\n")
    out += (".SH SEE ALSO\n\\fBlxpy\\-config\\fR(1), \\fBlxpy.toml\\fR(5), "
            "\\fBlxpy\\-autostart\\fR(1)\n")
    return out


def system_config_page() -> str:
    out = header("lxpy.toml", 5, "lxpy file formats")
    out += (".SH NAME\nlxpy.toml \\- lxpy system defaults\n.SH SYNOPSIS\n/etc/lxpy/lxpy.toml\n"
            ".SH DESCRIPTION\nA TOML file read by every lxpy command; every key is optional. "
            "\\fBLXPY_CONFIG\\fR names another file. Unknown keys are errors.\n.SH KEYS\n")
    for s in SYSTEM_SETTINGS:
        d = _fmt_default(s.default)
        out += f".TP\n\\fB{esc(s.key)}\\fR" + (f" (default {esc(d)})" if d else "") + \
            f"\n{esc(s.help)}\n"
    out += (".SH ENVIRONMENT\n.TP\n\\fBLXPY_PATH\\fR, \\fBLXPY_CACHE\\fR, "
            "\\fBLXPY_CGROUP_PARENT\\fR, \\fBLXPY_LOG_DIR\\fR\nOverride lxpath, cache, "
            "cgroup_parent and log_dir.\n")
    out += ".SH SEE ALSO\n\\fBlxpy\\fR(1), \\fBlxpy.container.toml\\fR(5)\n"
    return out


# ---------------------------------------------------------------------------


def write_all(outdir: Path, strict: bool = False) -> tuple[list[Path], dict[str, str]]:
    """Write every page; returns (paths written, {verb: why skipped}). A command module that
    cannot be imported is skipped (strict: the ImportError propagates)."""
    outdir = Path(outdir)
    (outdir / "man1").mkdir(parents=True, exist_ok=True)
    (outdir / "man5").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: dict[str, str] = {}
    verbs = []
    for verb in sorted(COMMANDS):
        try:
            text = command_page(verb)
        except ImportError as e:
            if strict:
                raise
            skipped[verb] = str(e)
            continue
        verbs.append(verb)
        p = outdir / "man1" / f"lxpy-{verb}.1"
        p.write_text(text)
        written.append(p)
    pages = {outdir / "man1" / "lxpy.1": umbrella_page(verbs),
             outdir / "man5" / "lxpy.container.toml.5": container_config_page(),
             outdir / "man5" / "lxpy.toml.5": system_config_page(),
             outdir / "man5" / "lxpy-config.5": ".so man5/lxpy.container.toml.5\n"}
    for p, text in pages.items():
        p.write_text(text)
        written.append(p)
    return written, skipped

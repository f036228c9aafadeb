"""lxpy-config: show, get, set, unset and validate a container's config; list the keys."""

from __future__ import annotations

import json
import sys

from lxpy.cli._live import apply_live
from lxpy.config.edit import set_keys
from lxpy.config.schema import BY_KEY, LIST_SECTIONS, SETTINGS, did_you_mean
from lxpy.container import Container
from lxpy.errors import ConfigError, UsageError
from lxpy.storage import quota

DISK_KEY = "limits.disk"

HELP = "Show, get, set, unset or validate a container's config.toml; 'help' lists the keys."
EPILOG = """examples:
  lxpy-config -n web1 show                    the effective config, profiles merged
  lxpy-config -n web1 show --explicit         only what config.toml and its profiles set
  lxpy-config -n web1 get limits.memory
  lxpy-config -n web1 set limits.memory 512M  comments and order of config.toml kept
  lxpy-config -n web1 set limits.memory 1G --live   also apply to the running container
  lxpy-config -n web1 set limits.disk 30G   the filesystem's quota, changed at once
  lxpy-config -n web1 unset limits.memory
  lxpy-config -n web1 validate
  lxpy-config help [KEY]                      every key with its type, default and help
  lxpy-config web1 get limits.memory          (the name first, as every command takes it)"""
NAME_POSITIONAL = False
NAME_REQUIRED = False
ACTIONS = ("show", "get", "set", "unset", "validate", "help")


def pre_parse(parser, own: list[str], extra) -> None:
    """The name first (lxpy-config web1 get KEY), as the other commands take it: the first
    word when it is not an action."""
    if own and not own[0].startswith("-") and own[0] not in ACTIONS \
            and not {"-n", "--name"} & set(own):
        own[:1] = ["-n", own[0]]


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    s = sub.add_parser("show", help="print the effective config")
    s.add_argument("--format", choices=("toml", "json"), default="toml")
    s.add_argument("--explicit", action="store_true", help="leave out defaults")
    g = sub.add_parser("get", help="print one key's effective value")
    g.add_argument("key")
    g.add_argument("--format", choices=("text", "json"), default="text")
    st = sub.add_parser("set", help="set a key in config.toml")
    st.add_argument("key")
    st.add_argument("value")
    st.add_argument("--live", action="store_true",
                    help="also apply to the running container (limits.* keys)")
    u = sub.add_parser("unset", help="remove a key from config.toml (back to its default)")
    u.add_argument("key")
    sub.add_parser("validate", help="check the config; exit 1 with the reason if it is bad")
    h = sub.add_parser("help", help="list the config keys")
    h.add_argument("key", nargs="?")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(_fmt(v) if not isinstance(v, (tuple, list)) else json.dumps(list(v))
                        for v in value)
    if isinstance(value, dict):
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in value.items()})
    return str(value)


def _help(key: str | None) -> int:
    rows = [(s.key, s) for s in SETTINGS]
    for sec, table in LIST_SECTIONS.items():
        rows += [(f"{sec}.N.{s.key}", s) for s in table]
    if key:
        rows = [r for r in rows if r[0] == key or r[0].startswith(key + ".")]
        if not rows:
            raise ConfigError(f"{key!r} is not a config key{did_you_mean(key)}")
    for k, s in rows:
        default = _fmt(s.default) if s.default not in (None, "", (), {}) else "-"
        live = " (live)" if s.live else ""
        print(f"{k}  [{s.kind.name}, default {default}]{live}\n    {s.help}")
    return 0


def run(args) -> int:
    if args.action is None:
        raise UsageError("say what to do: show, get, set, unset, validate or help",
                         "see lxpy-config -h")
    if args.action == "help":
        return _help(args.key)
    if not args.name:
        raise UsageError("which container? give -n NAME")
    c = Container(args.name, args.lxpath).require()
    if args.action == "validate":
        cfg = c.config
        print(f"{c.config_path}: ok ({len(cfg.files)} file(s): {', '.join(cfg.files)})")
        return 0
    if args.action == "show":
        data = c.config.to_dict(explicit_only=args.explicit)
        if args.format == "json":
            json.dump(data, sys.stdout, indent=2)
            print()
        else:
            import tomlkit  # heavy: only the TOML output needs it
            sys.stdout.write(tomlkit.dumps(data))
        return 0
    if args.action == "get":
        value = c.config.get(args.key)
        if args.format == "json":
            print(json.dumps(value))
        else:
            print(_fmt(value))
        return 0
    if args.action == "set":
        if args.live:
            s = BY_KEY.get(args.key)
            if s is None or not s.live:
                raise ConfigError(f"{args.key} cannot be changed on a running container",
                                  "set it without --live and restart the container")
        if args.key == DISK_KEY:        # refused before config.toml changes
            try:
                BY_KEY[DISK_KEY].parse(args.value)
            except ValueError as e:
                raise ConfigError(f"{DISK_KEY}: {e}") from None
            quota.check(c.name, c.dir, c.config)
        set_keys(c.config_path, {args.key: args.value})
        if args.key == DISK_KEY:        # the filesystem holds it: applied, running or not
            quota.apply(c.name, c.dir, c.reload())
        elif args.live:
            apply_live(c, args.key, args.value)
        return 0
    if args.action == "unset":
        set_keys(c.config_path, {}, unset=[args.key])
        if args.key == DISK_KEY:
            quota.apply(c.name, c.dir, c.reload())
        return 0
    return 2

"""Templates: discovery, their `--` options, and Jinja rendering into a rootfs.

A template is a directory:

    template.toml       how the rootfs is made (method = debootstrap | busybox | tarball),
                        defaults, the options it takes after `--`, per-container [setup]
    rootfs/             files written into each new container's rootfs (*.j2 rendered)
    config.toml.j2      rendered into the container's config.toml

`extends = "debian"` takes everything from another template and overrides it: options
and tables merge, rootfs/ files of the child replace the parent's of the same name.
Rendering runs with StrictUndefined (a missing variable is an error, not an empty string)
and writes only through lxpy.safefs, so nothing lands outside the rootfs.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import os
import re
import stat
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import safefs
from .config.loader import merge, read_toml
from .errors import TemplateError, UsageError
from .paths import shipped_dir, system_config

TEMPLATE_DIRS = (Path("/etc/lxpy/templates"), Path("/usr/share/lxpy/templates"))
OPTION_TYPES = ("str", "int", "bool", "list", "file", "arch")
METHODS = ("debootstrap", "busybox", "tarball", "none")

_DPKG_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "i686": "i386",
              "i386": "i386", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}


def host_arch() -> str:
    """The host's architecture as dpkg names it (amd64, arm64 ...)."""
    m = os.uname().machine
    return _DPKG_ARCH.get(m, m)


def search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("LXPY_TEMPLATES")
    if env:
        dirs += [Path(p) for p in env.split(":") if p]
    dirs += list(TEMPLATE_DIRS)
    dirs.append(shipped_dir("templates"))
    return dirs


def known() -> list[str]:
    names: set[str] = set()
    for d in search_dirs():
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if (p / "template.toml").is_file())
    return sorted(names)


@dataclass(frozen=True)
class Option:
    name: str                   # "root-password" (the key in parsed options: root_password)
    help: str
    type: str = "str"
    default: Any = None
    short: str = ""             # "-r"
    metavar: str = ""
    choices: tuple[str, ...] = ()
    pattern: str = ""           # each value (each item of a list) must match
    required: bool = False

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")

    def flags(self) -> str:
        long = f"--{self.name}"
        return f"{self.short}, {long}" if self.short else long

    def parse(self, text: str, tname: str) -> Any:
        def bad(why: str) -> UsageError:
            return UsageError(f"template {tname}: --{self.name} {text!r}: {why}",
                              f"see lxpy-create -t {tname} -h")
        if self.type == "int":
            try:
                return int(text)
            except ValueError:
                raise bad("not a whole number") from None
        if self.type == "bool":
            low = text.lower()
            if low in ("1", "yes", "true", "on"):
                return True
            if low in ("0", "no", "false", "off"):
                return False
            raise bad("say yes or no")
        if self.type == "list":
            items = [x.strip() for x in re.split(r"[,\s]+", text) if x.strip()]
            for it in items:
                self._check(it, bad)
            return items
        if self.type == "file":
            p = Path(text).expanduser()
            if not p.is_file():
                raise bad("no such file")
            if not os.access(p, os.R_OK):
                raise bad("cannot read it")
            return str(p.resolve())
        if not text:
            raise bad("is empty")
        self._check(text, bad)
        return text

    def _check(self, value: str, bad) -> None:
        if self.choices and value not in self.choices:
            raise bad(f"choose one of {', '.join(self.choices)}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise bad("not a valid value" + (f" ({self.metavar.lower()})" if self.metavar
                                             else ""))

    def default_value(self) -> Any:
        if self.type == "arch" and not self.default:
            return host_arch()
        if self.type == "list":
            return list(self.default or [])
        if self.type == "bool":
            return bool(self.default)
        return self.default


@dataclass
class Template:
    name: str
    path: Path
    meta: dict[str, Any]                    # template.toml, merged over the parents'
    chain: tuple[Path, ...]                 # this template's dir, then its parents'
    options: dict[str, Option] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return str(self.meta.get("method", "none"))

    @property
    def description(self) -> str:
        return str(self.meta.get("description", ""))

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.meta.get("defaults", {}))

    @property
    def setup(self) -> dict[str, Any]:
        return dict(self.meta.get("setup", {}))

    def cache_name(self) -> str:
        """The directory under the cache root (ubuntu extends debian, but caches apart)."""
        return str(self.meta.get("cache_name") or self.name)

    # -- options --------------------------------------------------------------

    def help(self) -> str:
        rows = []
        for o in self.options.values():
            meta = o.metavar or ("" if o.type == "bool" else o.name.upper().replace("-", "_"))
            left = f"  {o.flags()}" + (f" {meta}" if meta else "")
            d = o.default_value()
            extra = ""
            if o.choices:
                extra += f" ({', '.join(o.choices)})"
            if o.required:
                extra += " (required)"
            elif d not in (None, "", [], False):
                shown = ",".join(d) if isinstance(d, list) else d
                extra += f" (default: {shown})"
            text = o.help + extra
            if len(left) < 30:
                rows.append(f"{left:<30}{text}")
            else:
                rows.append(f"{left}\n{'':<30}{text}")
        head = f"{self.name}: {self.description}" if self.description else self.name
        return head + "\n" + ("\n".join(rows) if rows else "  (this template takes no options)")

    def parse_options(self, argv: list[str] | None) -> dict[str, Any]:
        """`-r bookworm --packages a,b` -> {"release": "bookworm", "packages": ["a", "b"],
        every other option at its default}. UsageError (exit 2) for anything unknown."""
        out: dict[str, Any] = {o.key: o.default_value() for o in self.options.values()}
        by_flag: dict[str, Option] = {}
        for o in self.options.values():
            by_flag[f"--{o.name}"] = o
            if o.short:
                by_flag[o.short] = o
        args = list(argv or [])
        given: set[str] = set()
        i = 0
        while i < len(args):
            a = args[i]
            i += 1
            if a == "--":
                continue
            value: str | None = None
            flag = a
            if a.startswith("--") and "=" in a:
                flag, value = a.split("=", 1)
            elif len(a) > 2 and a.startswith("-") and not a.startswith("--") and a[:2] in by_flag:
                flag, value = a[:2], a[2:]
            if not flag.startswith("-") or flag == "-":
                raise UsageError(f"template {self.name}: unexpected argument {a!r}",
                                 f"template options start with --; see lxpy-create -t "
                                 f"{self.name} -h")
            o = by_flag.get(flag)
            if o is None:
                near = difflib.get_close_matches(flag, list(by_flag), 1)
                hint = (f"did you mean {near[0]}?" if near
                        else f"see lxpy-create -t {self.name} -h")
                raise UsageError(f"template {self.name}: unknown option "
                                 f"{flag if flag.isprintable() else repr(flag)}", hint)
            if o.type == "bool" and value is None:
                out[o.key] = True
            else:
                if value is None:
                    if i >= len(args):
                        raise UsageError(f"template {self.name}: {flag} needs a value",
                                         f"see lxpy-create -t {self.name} -h")
                    value = args[i]
                    i += 1
                out[o.key] = o.parse(value, self.name)
            given.add(o.key)
        for o in self.options.values():
            if o.required and o.key not in given:
                raise UsageError(f"template {self.name}: --{o.name} is required",
                                 f"see lxpy-create -t {self.name} -h")
        return out

    # -- files ----------------------------------------------------------------

    def rootfs_files(self) -> dict[str, Path]:
        """Relative path in the container (".j2" kept) -> source file; children win."""
        files: dict[str, Path] = {}
        for d in reversed(self.chain):
            base = d / "rootfs"
            if not base.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames.sort()
                for fn in sorted(filenames):
                    src = Path(dirpath) / fn
                    rel = src.relative_to(base).as_posix()
                    plain = rel[:-3] if rel.endswith(".j2") else rel
                    files.pop(plain, None)
                    files.pop(plain + ".j2", None)
                    files[rel] = src
        return files

    def config_template(self) -> Path | None:
        for d in self.chain:
            p = d / "config.toml.j2"
            if p.is_file():
                return p
        return None


# ---------------------------------------------------------------------------
# Discovery


def _read_meta(path: Path) -> dict[str, Any]:
    f = path / "template.toml"
    if not f.is_file():
        raise TemplateError(f"{path}: not a template (it has no template.toml)")
    return read_toml(f, TemplateError, hint=None)


def _locate(name: str, relative_to: Path | None = None) -> Path:
    if "/" in name or name.startswith("."):
        p = Path(name)
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        p = p.resolve()
        if (p / "template.toml").is_file():
            return p
        raise TemplateError(f"template {name!r}: {p} is not a template directory",
                            "a template directory holds a template.toml")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise TemplateError(f"template {name!r}: not a template name",
                            f"known templates: {', '.join(known()) or 'none'}")
    for d in search_dirs():
        p = d / name
        if (p / "template.toml").is_file():
            return p
    names = known()
    near = difflib.get_close_matches(name, names, 1)
    hint = f"did you mean {near[0]}? " if near else ""
    raise TemplateError(f"no template {name!r}",
                        f"{hint}known templates: {', '.join(names) or 'none'}; or give a "
                        "template directory's path")


def _options(meta: dict[str, Any], where: Path) -> dict[str, Option]:
    opts: dict[str, Option] = {}
    raw = meta.get("options", {})
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}/template.toml: [options] must be a table of options")
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise TemplateError(f"{where}/template.toml: options.{name} must be a table")
        unknown = set(spec) - {"help", "type", "default", "short", "metavar", "choices",
                               "pattern", "required"}
        if unknown:
            raise TemplateError(f"{where}/template.toml: options.{name}: unknown field "
                                f"{sorted(unknown)[0]!r}")
        typ = spec.get("type", "str")
        if typ not in OPTION_TYPES:
            raise TemplateError(f"{where}/template.toml: options.{name}.type {typ!r}: "
                                f"use one of {', '.join(OPTION_TYPES)}")
        short = spec.get("short", "")
        if short and not re.fullmatch(r"-[A-Za-z]", short):
            raise TemplateError(f"{where}/template.toml: options.{name}.short {short!r}: "
                                "use a dash and one letter, like \"-r\"")
        opts[name] = Option(name=name, help=str(spec.get("help", "")), type=typ,
                            default=spec.get("default"), short=short,
                            metavar=str(spec.get("metavar", "")),
                            choices=tuple(spec.get("choices", ())),
                            pattern=str(spec.get("pattern", "")),
                            required=bool(spec.get("required", False)))
    return opts


def find(name_or_path: str | os.PathLike) -> Template:
    """A template by name (/etc/lxpy/templates, /usr/share/lxpy/templates, shipped) or
    by path. TemplateError, listing the known ones, when there is none."""
    name = os.fspath(name_or_path)
    if not name:
        raise TemplateError("no template given", f"known templates: {', '.join(known())}")
    path = _locate(name)
    chain = [path]
    metas = [_read_meta(path)]
    while metas[-1].get("extends"):
        parent = str(metas[-1]["extends"])
        ppath = _locate(parent, chain[-1].parent)
        if ppath in chain:
            raise TemplateError(f"template {path.name}: extends itself "
                                f"({' -> '.join(p.name for p in chain + [ppath])})")
        chain.append(ppath)
        metas.append(_read_meta(ppath))
    meta: dict[str, Any] = {}
    for m in reversed(metas):
        meta = merge(meta, m)
    meta.pop("extends", None)
    method = meta.get("method", "none")
    if method not in METHODS:
        raise TemplateError(f"{path}/template.toml: method {method!r}: use one of "
                            f"{', '.join(METHODS)}")
    t = Template(name=path.name, path=path, meta=meta, chain=tuple(chain))
    t.options = _options(meta, path)
    return t


# ---------------------------------------------------------------------------
# Rendering


class _Skip(Exception):
    pass


def _skip_file() -> str:
    raise _Skip()


def _env(template: Template, config: bool = False):
    import jinja2  # lazy: only create renders

    sub = [d if config else d / "rootfs" for d in template.chain]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in sub]),
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True)
    env.globals["skip_file"] = _skip_file
    return env


def _context(template: Template, context: dict[str, Any]) -> dict[str, Any]:
    ctx = dict(context)
    ctx.setdefault("template", template.name)
    # for templates that bring interfaces up without a loop: space-separated names
    nets = [n for n in ctx.get("net") or () if isinstance(n, dict)
            and n.get("type", "veth") in ("veth", "macvlan", "phys")]
    ctx.setdefault("net_up", " ".join(str(n.get("name")) for n in nets))
    ctx.setdefault("net_dhcp", " ".join(str(n.get("name")) for n in nets if n.get("dhcp")))
    ctx.setdefault("defaults", template.defaults)
    if not ctx.get("arch"):
        ctx["arch"] = host_arch()
    if "bridge_address" not in ctx or "domain" not in ctx or "bridge" not in ctx:
        try:

            sc = system_config()
            net = ipaddress.ip_network(sc.subnet, strict=False)
            ctx.setdefault("bridge_address", str(next(net.hosts())))
            ctx.setdefault("domain", sc.domain)
            ctx.setdefault("bridge", sc.bridge)
        except Exception:  # noqa: BLE001 - a bad system config is reported elsewhere
            ctx.setdefault("bridge_address", "")
            ctx.setdefault("domain", "")
            ctx.setdefault("bridge", "lxpybr0")
    return ctx


_PLAIN_VAR = re.compile(r"\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\}\}")


def _render_plain(text: str, ctx: dict[str, Any]) -> str | None:
    """What jinja renders for a text whose only markup is {{ name }} or {{ dict.key }} of
    strings and numbers, without importing jinja (~60 ms); None for anything else."""
    if "{%" in text or "{#" in text or "\r" in text:
        return None
    out = []
    pos = 0
    for m in _PLAIN_VAR.finditer(text):
        out.append(text[pos:m.start()])
        first, *rest = m.group(1).split(".")
        if first not in ctx:
            return None
        v = ctx[first]
        for key in rest:
            if not isinstance(v, dict) or key not in v or hasattr(v, key):
                return None
            v = v[key]
        if not isinstance(v, (str, int, float)):
            return None
        out.append(str(v))
        pos = m.end()
    out.append(text[pos:])
    if any("{{" in piece for piece in out[::2]) or "{{" in out[-1]:
        return None
    return "".join(out)


def _render_text(env, rel: str, template: Template, ctx: dict[str, Any],
                 src: Path | None = None) -> str | None:
    """rel rendered with ctx; env: a jinja Environment, or a function making one (called
    only when src, the file jinja would load, needs more than _render_plain)."""
    if src is not None:
        try:
            out = _render_plain(src.read_text(encoding="utf-8"), ctx)
        except (OSError, UnicodeDecodeError):
            out = None
        if out is not None:
            return out
    import jinja2  # heavy: only create renders
    if not isinstance(env, jinja2.Environment):
        env = env()
    try:
        return env.get_template(rel).render(ctx)
    except _Skip:
        return None
    except jinja2.UndefinedError as e:
        raise TemplateError(f"template {template.name}: {rel}: {e.message}",
                            "the template uses a variable that was not given") from None
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"template {template.name}: {rel} line {e.lineno}: {e.message}")\
            from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"template {template.name}: {rel}: {e}") from None


def render_config(template: Template, context: dict[str, Any]) -> str:
    """The container's config.toml text from the template's config.toml.j2 ("" if none)."""
    src = template.config_template()
    if src is None:
        return ""
    out = _render_text(lambda: _env(template, config=True), "config.toml.j2", template,
                       _context(template, context), src)
    return out or ""


def _mode(spec: Any, where: str) -> int:
    try:
        return int(str(spec), 8)
    except ValueError:
        raise TemplateError(f"{where}: mode {spec!r} is not an octal mode like \"0755\"") from None


def render_rootfs(template: Template, rootfs: Path, context: dict[str, Any]) -> None:
    """Apply the template's per-container [setup] and write its rootfs/ files into rootfs,
    every write resolved inside rootfs (lxpy.safefs)."""
    ctx = _context(template, context)
    envs: list[Any] = []

    def env():
        if not envs:
            envs.append(_env(template))
        return envs[0]
    setup = template.setup
    modes = {safefs.normalize(k): _mode(v, f"template {template.name}: setup.modes.{k}")
             for k, v in setup.get("modes", {}).items()}
    # Render everything first, so a template error leaves the rootfs untouched.
    planned: list[tuple[str, bytes, int]] = []
    for rel, src in template.rootfs_files().items():
        if rel.endswith(".j2"):
            target = rel[:-3]
            text = _render_text(env, rel, template, ctx, src)
            if text is None:
                continue
            data = text.encode()
        else:
            target = rel
            data = src.read_bytes()
        mode = modes.get(target, stat.S_IMODE(src.stat().st_mode) & 0o7755 or 0o644)
        planned.append((target, data, mode))
    try:
        with safefs.Root(rootfs) as root:
            _apply_setup(root, setup, template)
            for target, data, mode in planned:
                root.write(target, data, mode=mode, uid=0, gid=0)
            _apply_options(root, template, ctx.get("options") or {})
    except OSError as e:
        where = e.filename or rootfs
        raise TemplateError(f"template {template.name}: cannot write {where}: "
                            f"{e.strerror or e}") from None


def _apply_setup(root, setup: dict[str, Any], template: Template) -> None:
    for pattern in setup.get("remove", []):
        parent, _, name = pattern.rpartition("/")
        try:
            names = root.listdir(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for n in names:
            if fnmatch.fnmatchcase(n, name):
                try:
                    root.unlink(f"{parent}/{n}")
                except IsADirectoryError:
                    raise TemplateError(f"template {template.name}: setup.remove {pattern!r} "
                                        f"matches a directory ({parent}/{n})") from None
    for rel in setup.get("empty", []):
        root.write(rel, b"", mode=0o444 if rel.endswith("machine-id") else 0o644, uid=0, gid=0)
    unit_dir = str(setup.get("unit_dir", "etc/systemd/system"))
    for unit in setup.get("mask", []):
        root.symlink(f"{unit_dir}/{unit}", "/dev/null")
    for rel, target in setup.get("symlinks", {}).items():
        root.symlink(rel, str(target))


def _apply_options(root, template: Template, options: dict[str, Any]) -> None:
    """Options every template may declare with a meaning of their own:
    root_password (hash into etc/shadow) and auth_key (root's authorized_keys)."""
    keys = {o.key for o in template.options.values()}
    if "root_password" in keys and options.get("root_password"):
        set_root_password(root, str(options["root_password"]))
    if "auth_key" in keys and options.get("auth_key"):
        key = Path(options["auth_key"]).read_bytes()
        if not key.endswith(b"\n"):
            key += b"\n"
        root.makedirs("root/.ssh", mode=0o700)
        old = root.read("root/.ssh/authorized_keys") if root.exists(
            "root/.ssh/authorized_keys") else b""
        if key not in old:
            root.write("root/.ssh/authorized_keys", old + key, mode=0o600, uid=0, gid=0)


def hash_password(password: str) -> str:
    """A SHA-512 crypt(3) hash ($6$), as chpasswd would write it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # noqa: PLC0415 - removed in 3.13, hence the fallback
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except ImportError:
        r = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password,
                           capture_output=True, text=True, check=False)
        if r.returncode != 0 or not r.stdout.startswith("$6$"):
            raise TemplateError("cannot hash the root password",
                                "install openssl, or use --auth-key") from None
        return r.stdout.strip()


def set_root_password(root, password: str) -> None:
    if "\n" in password or ":" in password:
        raise UsageError("--root-password: must not contain ':' or a newline")
    h = hash_password(password)
    try:
        text = root.read("etc/shadow").decode()
    except FileNotFoundError:
        text = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        f = line.split(":")
        if f[0] == "root":
            f += [""] * (9 - len(f))
            f[1] = h
            lines[i] = ":".join(f)
            break
    else:
        lines.insert(0, f"root:{h}:19000:0:99999:7:::")
    root.write("etc/shadow", "\n".join(lines) + "\n", mode=0o640)

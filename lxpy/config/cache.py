"""A container's parsed config, kept beside its config.toml while nothing it came from has
changed: most commands (lxpy-start, -execute, -info, -ls -f, -stop, -copy) then skip
tomllib, the settings table and the validation (with what they import, ~15-20 ms of each
command here) and build the Config from marshal data.

<container dir>/.config.cache holds the Config's plain data and what it was made from:
  - every file merged (config.toml and the profiles it includes, transitively): inode,
    size, mtime and ctime;
  - the profile directories searched (LXPY_PROFILES, /etc/lxpy/profiles, the shipped
    ones): inode and mtime, or None when absent (a profile added there can shadow another);
  - this code: inode, size and times of the config layer's modules (an upgrade can change
    what a file means), taken before the parse: a process that parsed with the old code
    while it was replaced keys its entry with the old code's times, which then never match.
A hit needs all of them equal; anything else (no file, another owner, garbage) is a miss
and the config is parsed as always. Copies of a container dir cannot hit: config.toml's
inode differs.

An entry can also be keyed by config.toml's text instead of its inode and times
(`remember`): lxpy-copy writes configs whose Config it made from another one without a
parse (config/slots.py), and keeps it so at once; such an entry is used while config.toml
reads exactly that text (and the rest of its key holds), whatever its times.

Racy timestamps: file times come from a coarse kernel clock, so an edit made in the same
tick as the cache was written could leave every key equal. No entry is written while any
file or directory it depends on changed less than RACY seconds ago (as git does with its
index): a later edit then always changes a time. The same holds for the config code (an
upgrade in progress).

The system config (/etc/lxpy/lxpy.toml or $LXPY_CONFIG) gets the same treatment for its
few values, in /run/lxpy (it is needed before any container is known: its lxpath).
"""

from __future__ import annotations

import marshal
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .view import Config

FORMAT = 2
NAME = ".config.cache"
RACY = 2.0
_HERE = os.path.dirname(os.path.abspath(__file__))
_CODE = ("cache.py", "loader.py", "schema.py", "signals.py", "view.py", "slots.py",
         "../paths.py")


def _stat(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _code_key() -> tuple:
    return tuple(_stat(os.path.join(_HERE, f)) for f in _CODE)


_SHIPPED: str | None = None


def shipped_config() -> str:
    """paths.shipped_dir("config") as a string, without importing lxpy.paths (pathlib: a
    unit test keeps them equal)."""
    global _SHIPPED
    if _SHIPPED is None:
        here = os.path.dirname(os.path.realpath(_HERE))
        _SHIPPED = f"{here}/data/config"
        if not os.path.isdir(_SHIPPED) and os.path.isdir(f"{os.path.dirname(here)}/config"):
            _SHIPPED = f"{os.path.dirname(here)}/config"
    return _SHIPPED


def profile_dirs() -> list[str]:
    """Where `include = ["name"]` looks, in order (load.profile_dirs as strings)."""
    env = os.environ.get("LXPY_PROFILES")
    dirs = [p for p in env.split(":") if p] if env else []
    dirs += ["/etc/lxpy/profiles", "/usr/share/lxpy/config", shipped_config()]
    return dirs


def _fresh(keys, now: float) -> bool:
    """Some time in keys is within RACY seconds of now (or in the future)."""
    limit = (now - RACY) * 1e9
    return any(k is not None and (k[2] > limit or k[3] > limit) for k in keys)


def _read(path: str):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            return None             # not ours: never unmarshal what someone else wrote
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None


def _write(path: str, obj) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        try:
            os.unlink(tmp)          # left by a process of this pid that was killed
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, marshal.dumps(obj))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except (OSError, ValueError):      # a read-only lxpath, a full disk: no cache, no harm
        try:
            os.unlink(tmp)
        except OSError:
            pass


def load(config_path: str) -> Config:
    """load.load(config_path), from the cache when it is valid (and made valid when it
    can be)."""
    cpath = os.path.join(os.path.dirname(config_path), NAME)
    dirs = profile_dirs()
    code = _code_key()
    hit = _read(cpath)
    if type(hit) is dict and hit.get("format") == FORMAT and hit.get("path") == config_path:
        try:
            if hit["code"] == code and hit["dirs"] == [(d, _dir_key(d)) for d in dirs] \
                    and all(_stat(f) == k for f, k in hit["files"]) and (
                        hit["self"] == _stat(config_path) if hit["self"] is not None
                        else type(hit["text"]) is str and _text(config_path) == hit["text"]):
                return _build(hit)
        except (KeyError, TypeError, ValueError):
            pass
    from pathlib import Path

    from .loader import load as parse
    cfg = parse(Path(config_path))
    files = [(f, _stat(f)) for f in dict.fromkeys((*cfg.files, config_path))]
    dir_keys = [(d, _dir_key(d)) for d in dirs]
    if all(k is not None for _, k in files) and not _fresh(
            [k for _, k in files] + [(0, *k) for _, k in dir_keys if k] + list(code),
            time.time()):
        from .view import sections
        _write(cpath, {
            "format": FORMAT, "path": config_path, "self": _stat(config_path),
            "code": code, "dirs": dir_keys,
            "files": files, "values": cfg.values, "mount": [e._d for e in cfg.mount],
            "net": [e._d for e in cfg.net], "merged": cfg.files, "explicit": cfg.explicit,
            "sections": sections()})
    return cfg


def _text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except (OSError, ValueError):
        return None


def remember(config_path: str, cfg: Config, text: str, cdir: str | None = None) -> None:
    """Keep cfg as the Config of config_path while config.toml reads text (and its
    profiles, their directories and this code are unchanged): for a config this process
    wrote and knows the Config of without a parse (lxpy-copy). The text is the key, so
    no clock is involved for it. cdir: where to write the entry, when config_path's
    directory is not there yet (a clone being made under a temporary name)."""
    cpath = os.path.join(cdir or os.path.dirname(config_path), NAME)
    code = _code_key()
    files = [(f, _stat(f)) for f in dict.fromkeys(cfg.files) if f != config_path]
    dir_keys = [(d, _dir_key(d)) for d in profile_dirs()]
    if any(k is None for _, k in files) or _fresh(
            [k for _, k in files] + [(0, *k) for _, k in dir_keys if k] + list(code),
            time.time()):
        return
    from .view import sections
    _write(cpath, {
        "format": FORMAT, "path": config_path, "self": None, "text": text, "code": code,
        "dirs": dir_keys, "files": files, "values": cfg.values,
        "mount": [e._d for e in cfg.mount], "net": [e._d for e in cfg.net],
        "merged": cfg.files, "explicit": cfg.explicit, "sections": sections()})


def _dir_key(d: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(d)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns


def _build(hit: dict) -> Config:
    from . import view
    if view._SECTIONS is None:
        view._SECTIONS = frozenset(hit["sections"])
    return view.Config(values=hit["values"], mount=tuple(view.Entry(**d) for d in hit["mount"]),
                       net=tuple(view.Entry(**d) for d in hit["net"]), files=hit["merged"],
                       explicit=hit["explicit"])


# -- the system config -------------------------------------------------------------------

def _system_entry(path: str, run_root: str) -> str:
    # one entry per config file and per installed copy of lxpy (two installs sharing /run
    # would otherwise replace each other's entry on every command: their code keys differ)
    try:
        from _sha256 import sha256  # the C module itself: hashlib loads OpenSSL first
    except ImportError:  # pragma: no cover - Python 3.12+ (_sha2)
        from hashlib import sha256
    name = sha256(os.fsencode(f"{path}\0{_HERE}")).hexdigest()[:12]
    return os.path.join(run_root, f".system.{name}")


def _system_hit(cpath: str, path: str, key, code) -> dict | None:
    hit = _read(cpath)
    if type(hit) is dict and hit.get("format") == FORMAT and hit.get("path") == path \
            and hit.get("key") == key and hit.get("code") == code:
        return hit["values"]
    return None


RUN_ROOT = "/run/lxpy"     # paths.RUN_ROOT, without importing lxpy.paths (a test keeps them equal)


def system_values_cached(path: str, run_root: str | None = None) -> dict | None:
    """system_values(path, ...) when its entry in run_root (paths.RUN_ROOT) is valid, else
    None: without a parse, and without importing lxpy.paths (pathlib)."""
    return _system_hit(_system_entry(path, run_root or RUN_ROOT), path, _stat(path),
                       _code_key())


def system_values(path: str, parse) -> dict:
    """parse(path) -> the system config's flat values; remembered in /run/lxpy by the
    file's identity and times (a missing file is remembered too)."""
    from ..paths import RUN_ROOT
    key = _stat(path)
    code = _code_key()
    cpath = _system_entry(path, str(RUN_ROOT))
    hit = _system_hit(cpath, path, key, code)
    if hit is not None:
        return hit
    values = parse()
    if not _fresh([key, *code], time.time()):
        try:
            os.makedirs(str(RUN_ROOT), exist_ok=True)
        except OSError:
            return values
        _write(cpath, {"format": FORMAT, "path": path, "key": key, "code": code,
                       "values": values})
    return values

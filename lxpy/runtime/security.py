"""The container's security policy: capabilities, no_new_privs, seccomp.

The policy is resolved once from the config into a small JSON-able dict (`resolve(cfg)`),
so that whoever applies it later (the container's PID 1 right before exec of init,
`lxpy-attach` right before exec of the command) needs neither the TOML config nor its
validation:

    {"v": 1,
     "drop": [16, 17, ...] | None,       # capabilities to drop (security.cap_drop) ...
     "keep": [0, 1, ...] | None,         # ... or to keep (security.cap_keep wins)
     "no_new_privs": false,
     "seccomp": None | {"default": <action>, "rules": [[syscall, <action>, [cond, ...]], ...]},
     "bpf": "<hex>" | None}              # the compiled seccomp program, if compile_bpf() ran

`apply(policy_or_cfg)` enforces it on the calling process, in this order:
bounding set (CAP_SETPCAP dropped last) and ambient set -> no_new_privs -> seccomp (while
CAP_SYS_ADMIN is still effective, so no_new_privs is not needed) -> an optional
`switch_user` callback (attach -u/-g) -> effective/permitted/inheritable sets.

Seccomp profiles
================

`security.seccomp` is "default", "none" or the absolute path of a profile file. A profile
is text, one rule a line; '#' starts a comment:

    # what happens to syscalls no rule names: allow (the default), errno NAME|NUMBER,
    # kill (the process), kill_thread, trap or log
    default allow
    # start from lxpy's default denylist (kexec, modules, open_by_handle_at ...)
    include default
    # SYSCALL [ACTION] [CONDITION ...]
    # no ACTION: errno EPERM when the default is allow, allow otherwise (an allowlist)
    kexec_load
    keyctl errno ENOSYS
    ptrace kill
    # CONDITION: argN OP VALUE, or argN & MASK == VALUE; OP is == != < <= > >=;
    # several conditions must all hold; numbers in C notation (0x10, 010, 16)
    umount2 errno EACCES arg1 & 0x1 == 0x1
    personality errno EPERM arg0 != 0

The filter covers the native ABI and the compat ones (x86 and x32 on x86_64, arm on
aarch64). An unknown syscall name is an error (with a suggestion), an unknown errno too.
"""

from __future__ import annotations

import difflib
import errno as _errno
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxpy.errors import ConfigError, KernelFeatureError
from lxpy.linux import caps, prctl, seccomp
from lxpy.linux.caps import last_cap, name

POLICY_VERSION = 1

# Actions, as libseccomp encodes them (kept here so parsing needs no ctypes).
ACT_ALLOW = 0x7FFF0000
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_LOG = 0x7FFC0000


def ACT_ERRNO(err: int) -> int:  # noqa: N802 - the C macro's name
    return 0x00050000 | (err & 0xFFFF)


_ACTION_WORDS = {"allow": ACT_ALLOW, "kill": ACT_KILL_PROCESS, "kill_process": ACT_KILL_PROCESS,
                 "kill_thread": ACT_KILL_THREAD, "trap": ACT_TRAP, "log": ACT_LOG}
_OPS = {"!=": 1, "<": 2, "<=": 3, "==": 4, ">=": 5, ">": 6}
_MASKED_EQ = 7

# The default denylist: what a system container never needs and what lets root in a
# container reach the host kernel. Everything systemd uses in a container stays allowed
# (mount, umount, unshare, setns, keyctl, bpf, reboot -- reboot() in a pid namespace only
# signals the container's init --, name_to_handle_at, personality ...).
MNT_FORCE = 1
DEFAULT_RULES: tuple[tuple[str, int, tuple[tuple[int, int, int, int], ...]], ...] = (
    ("kexec_load", ACT_ERRNO(_errno.EPERM), ()),
    ("kexec_file_load", ACT_ERRNO(_errno.EPERM), ()),
    ("open_by_handle_at", ACT_ERRNO(_errno.EPERM), ()),   # "shocker": reads host files
    ("init_module", ACT_ERRNO(_errno.EPERM), ()),
    ("finit_module", ACT_ERRNO(_errno.EPERM), ()),
    ("delete_module", ACT_ERRNO(_errno.EPERM), ()),
    ("create_module", ACT_ERRNO(_errno.EPERM), ()),
    ("query_module", ACT_ERRNO(_errno.EPERM), ()),
    ("get_kernel_syms", ACT_ERRNO(_errno.EPERM), ()),
    ("iopl", ACT_ERRNO(_errno.EPERM), ()),
    ("ioperm", ACT_ERRNO(_errno.EPERM), ()),
    ("swapon", ACT_ERRNO(_errno.EPERM), ()),
    ("swapoff", ACT_ERRNO(_errno.EPERM), ()),
    ("lookup_dcookie", ACT_ERRNO(_errno.EPERM), ()),
    ("nfsservctl", ACT_ERRNO(_errno.EPERM), ()),
    ("uselib", ACT_ERRNO(_errno.EPERM), ()),
    ("vm86", ACT_ERRNO(_errno.EPERM), ()),
    ("vm86old", ACT_ERRNO(_errno.EPERM), ()),
    # LXC's reject_force_umount: umount2(..., MNT_FORCE) could force host mounts away.
    ("umount2", ACT_ERRNO(_errno.EACCES), ((1, _MASKED_EQ, MNT_FORCE, MNT_FORCE),)),
)


# -- profiles ---------------------------------------------------------------------

def _action_name(act: int) -> str:
    for w, v in _ACTION_WORDS.items():
        if v == act:
            return w
    if act & 0xFFFF0000 == 0x00050000:
        err = act & 0xFFFF
        return f"errno {_errno.errorcode.get(err, err)}"
    return hex(act)


def _parse_errno(tok: str) -> int:
    if tok.isascii() and tok.isdigit():
        n = int(tok)
        if 0 <= n <= 4095:
            return n
    elif tok.upper().startswith("E") and isinstance(getattr(_errno, tok.upper(), None), int):
        return int(getattr(_errno, tok.upper()))
    raise ValueError(f"{tok!r} is not an errno (like EPERM, ENOSYS or 1)")


def _parse_action(toks: list[str]) -> tuple[int | None, list[str]]:
    """Take an action off the front of toks; None if toks does not start with one."""
    if not toks:
        return None, toks
    w = toks[0].lower()
    if w == "errno":
        if len(toks) < 2:
            raise ValueError("errno needs a value (like errno EPERM)")
        return ACT_ERRNO(_parse_errno(toks[1])), toks[2:]
    if w in _ACTION_WORDS:
        return _ACTION_WORDS[w], toks[1:]
    return None, toks


_COND_PATTERN = r"\s*arg([0-5])\s*(?:&\s*(\w+)\s*)?(==|!=|<=|>=|<|>)\s*(\w+)\s*"


def _parse_conditions(text: str) -> tuple[tuple[int, int, int, int], ...]:
    cond_re = re.compile(_COND_PATTERN)
    out = []
    pos = 0
    while pos < len(text):
        m = cond_re.match(text, pos)
        if not m:
            raise ValueError(f"{text[pos:].strip()!r} is not a condition "
                             "(like arg1 == 0 or arg1 & 0x1 == 0x1)")
        idx, maskt, op, valt = m.groups()
        try:
            val = int(valt, 0)
            mask = int(maskt, 0) if maskt else None
        except ValueError:
            raise ValueError(f"{m.group(0).strip()!r}: values are numbers (like 0x1)") from None
        if mask is not None:
            if op != "==":
                raise ValueError(f"{m.group(0).strip()!r}: a masked condition takes == only")
            out.append((int(idx), _MASKED_EQ, mask, val))
        else:
            out.append((int(idx), _OPS[op], val, 0))
        pos = m.end()
    if len(out) > 6:
        raise ValueError("at most 6 conditions")
    return tuple(out)


def parse_profile(text: str, source: str = "<profile>", *,
                  check_name: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Profile text -> {"default": action, "rules": [[syscall, action, [cond...]], ...]}.

    check_name, if given, says whether a syscall name is known (libseccomp's table);
    unknown names are then errors. Raises ConfigError naming the file and line.
    """
    default = ACT_ALLOW
    rules: list[list[Any]] = []
    pending: list[tuple[int, str, list[str], str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        where = f"{source}:{lineno}"
        try:
            if toks[0] == "default":
                act, rest = _parse_action(toks[1:])
                if act is None or rest:
                    raise ValueError("say default allow, default errno NAME, default kill, "
                                     "default trap or default log")
                default = act
            elif toks[0] == "include":
                if toks[1:] != ["default"]:
                    raise ValueError("only 'include default' (lxpy's default denylist) exists")
                rules.extend([n, a, [list(c) for c in cs]] for n, a, cs in DEFAULT_RULES)
            else:
                name = toks[0]
                if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                    raise ValueError(f"{name!r} is not a syscall name")
                pending.append((lineno, name, toks[1:], line))
        except ValueError as e:
            raise ConfigError(f"seccomp profile {where}: {e}") from None
    for lineno, name, toks, _line in pending:
        where = f"{source}:{lineno}"
        try:
            act, rest = _parse_action(toks)
            if act is None:
                act = ACT_ERRNO(_errno.EPERM) if default == ACT_ALLOW else ACT_ALLOW
            # The conditions: the rest of the line after the syscall and action words.
            conds_text = " ".join(rest)
            conds = _parse_conditions(conds_text) if conds_text else ()
        except ValueError as e:
            raise ConfigError(f"seccomp profile {where}: {e}") from None
        if check_name is not None and not check_name(name):
            raise ConfigError(f"seccomp profile {where}: {name!r} is not a syscall "
                              "libseccomp knows", _near_syscall(name))
        if act == default:
            continue  # the same as what happens anyway; libseccomp refuses such rules
        rules.append([name, act, [list(c) for c in conds]])
    return {"default": default, "rules": rules}


def _near_syscall(name: str) -> str | None:
    words = [r[0] for r in DEFAULT_RULES] + [
        "mount", "umount2", "unshare", "setns", "keyctl", "bpf", "ptrace", "reboot", "kcmp",
        "perf_event_open", "personality", "userfaultfd", "acct", "quotactl", "syslog",
        "add_key", "request_key", "clock_settime", "settimeofday", "adjtimex", "pivot_root"]
    near = difflib.get_close_matches(name, words, 1)
    return f"did you mean {near[0]}?" if near else "see man 2 syscalls for the names"


def default_profile() -> dict[str, Any]:
    return {"default": ACT_ALLOW,
            "rules": [[n, a, [list(c) for c in cs]] for n, a, cs in DEFAULT_RULES]}


def load_profile(spec: str, *, strict: bool = True) -> dict[str, Any] | None:
    """"default", "none" or an absolute path -> the profile dict (None for "none")."""
    if spec == "none":
        return None
    if spec == "default":
        return default_profile()
    try:
        with open(spec, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"security.seccomp: {spec}: no such profile file",
                          "give an absolute path to a profile, or \"default\" or \"none\"") \
            from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"security.seccomp: {spec}: cannot read it: {e}") from None
    check_name = None
    if strict:
        ok, _why = seccomp.available()
        if ok:
            def check_name(n: str) -> bool:
                return seccomp.resolve(n) is not None
    return parse_profile(text, spec, check_name=check_name)


# -- the policy ---------------------------------------------------------------------

def resolve(cfg: Any) -> dict[str, Any]:
    """Config -> the policy dict (see the module docstring). Raises ConfigError."""
    sec = cfg.security
    keep = tuple(sec.cap_keep or ())
    pol: dict[str, Any] = {
        "v": POLICY_VERSION,
        "drop": None if keep else sorted({caps.number(c) for c in sec.cap_drop}),
        "keep": sorted({caps.number(c) for c in keep}) if keep else None,
        "no_new_privs": bool(sec.no_new_privs),
        "seccomp": load_profile(sec.seccomp),
        "bpf": None,
    }
    return pol


def compile_bpf(policy: dict[str, Any]) -> dict[str, Any]:
    """A copy of policy with its seccomp filter compiled ("bpf"), so that applying it needs
    no libseccomp and no rule building: what the monitor saves for lxpy-attach."""
    prof = policy.get("seccomp")
    if not prof:
        return dict(policy, bpf=None)
    with _build_filter(prof) as f:
        return dict(policy, bpf=f.export_bpf().hex())


def save(policy: dict[str, Any], path: Path) -> None:
    """Write the policy as JSON (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(policy, f, separators=(",", ":"))
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        pol = json.loads(f.read())
    if not isinstance(pol, dict) or pol.get("v") != POLICY_VERSION:
        raise ConfigError(f"{path}: not an lxpy security policy of version {POLICY_VERSION}",
                          "restart the container to rewrite it")
    return pol


def dropped(policy: dict[str, Any], last: int | None = None) -> list[int]:
    """The capability numbers the policy removes, on this kernel."""
    if last is None:
        last = last_cap()
    keep = policy.get("keep")
    if keep is not None:
        k = set(keep)
        return [c for c in range(last + 1) if c not in k]
    return sorted(c for c in (policy.get("drop") or ()) if c <= last)


def _build_filter(prof: dict[str, Any]):
    f = seccomp.Filter(prof["default"])
    try:
        for name, act, conds in prof["rules"]:
            f.add(act, name, [tuple(c) for c in conds])
    except BaseException:
        f.release()
        raise
    return f


def prepare(policy: dict[str, Any]) -> None:
    """Load now everything apply(policy) will need: call it before pivot_root/setns. After
    that the process sees the container's filesystem, where lxpy's modules are not, and
    where no library (libseccomp) may be dlopen()ed by a process that still has privileges
    the container's own code must not get."""
    from lxpy.linux import caps, prctl  # noqa: F401
    if policy.get("seccomp") or policy.get("bpf"):
        if not policy.get("bpf"):
            seccomp._load()


def apply(policy_or_cfg: Any, *, switch_user: Callable[[], None] | None = None) -> None:
    """Enforce the policy on this process (run in the process that execs next).

    switch_user, if given, runs after seccomp is loaded and before the capability sets
    are lowered (so CAP_SETUID/CAP_SETGID are still there for it).
    Raises OSError (naming the syscall) or KernelFeatureError.
    """
    pol = policy_or_cfg if isinstance(policy_or_cfg, dict) else resolve(policy_or_cfg)
    drop = dropped(pol)
    dmask = caps.mask(drop)

    # 1. bounding set; CAP_SETPCAP (needed to drop) goes last.
    for c in sorted(drop, key=lambda c: c == caps.CAP_SETPCAP):
        caps.bset_drop(c)
    # 2. ambient set
    if dmask:
        try:
            for c in drop:
                caps.ambient_lower(c)
        except OSError as e:
            if e.errno != _errno.EINVAL:  # kernel without ambient capabilities
                raise
    # 3. no_new_privs
    if pol.get("no_new_privs"):
        prctl.set_no_new_privs()
    # 4. seccomp
    if pol.get("bpf"):
        seccomp.load_bpf(bytes.fromhex(pol["bpf"]))
    elif pol.get("seccomp"):
        try:
            f = _build_filter(pol["seccomp"])
        except OSError as e:
            if e.errno == _errno.ENOENT and "libseccomp" in str(e):
                raise KernelFeatureError("seccomp: libseccomp.so.2 is missing",
                                         "apt install libseccomp2, or set "
                                         "security.seccomp = \"none\"") from None
            raise
        with f:
            f.load()
    # 5. credentials
    if switch_user is not None:
        switch_user()
    # 6. effective, permitted, inheritable
    if dmask:
        eff, prm, inh = caps.capget()
        if (eff | prm | inh) & dmask:
            caps.capset(eff & ~dmask, prm & ~dmask, inh & ~dmask)


def describe(policy: dict[str, Any]) -> list[str]:
    """Human lines for logs and lxpy-info."""
    out = []
    if policy.get("keep") is not None:
        out.append("capabilities kept: " + " ".join(name(c) for c in policy["keep"]))
    else:
        out.append("capabilities dropped: " + (" ".join(name(c) for c in policy.get("drop")
                                                         or ()) or "none"))
    out.append(f"no_new_privs: {'yes' if policy.get('no_new_privs') else 'no'}")
    prof = policy.get("seccomp")
    if not prof:
        out.append("seccomp: none")
    else:
        out.append(f"seccomp: default {_action_name(prof['default'])}, "
                   f"{len(prof['rules'])} rules")
    return out

"""The security policy without privileges: capability names, seccomp profiles, the resolved
policy."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lxpy.errors import ConfigError
from lxpy.linux import caps
from lxpy.runtime import security
from lxpy.runtime.security import ACT_ALLOW, ACT_ERRNO, ACT_KILL_PROCESS, parse_profile

# -- capabilities ---------------------------------------------------------------------


def test_capability_table_is_the_kernels():
    # include/uapi/linux/capability.h
    assert caps.CAP_CHOWN == 0
    assert caps.CAP_SETPCAP == 8
    assert caps.CAP_NET_ADMIN == 12
    assert caps.CAP_SYS_MODULE == 16
    assert caps.CAP_SYS_ADMIN == 21
    assert caps.CAP_SYS_TIME == 25
    assert caps.CAP_MKNOD == 27
    assert caps.CAP_MAC_ADMIN == 33
    assert caps.CAP_BPF == 39
    assert caps.CAP_CHECKPOINT_RESTORE == 40
    assert caps.CAP_LAST_KNOWN == 40
    for i, n in enumerate(caps.NAMES):
        assert getattr(caps, "CAP_" + n.upper()) == i


@pytest.mark.parametrize("spelling", ["sys_admin", "SYS_ADMIN", "cap_sys_admin", "CAP_SYS_ADMIN"])
def test_number_accepts_both_spellings(spelling):
    assert caps.number(spelling) == 21


def test_unknown_capability_is_a_keyerror():
    with pytest.raises(KeyError):
        caps.number("sys_adnim")


@given(st.sets(st.integers(0, 40)))
def test_mask_roundtrip(s):
    assert set(caps.unmask(caps.mask(s))) == s


def test_status_masks_of_this_process():
    m = caps.status_masks()
    assert {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} <= set(m)
    eff, prm, inh = caps.capget()
    assert eff == m["CapEff"] and prm == m["CapPrm"] and inh == m["CapInh"]


def test_last_cap_is_known():
    assert 36 <= caps.last_cap() <= 63


# -- seccomp profiles ------------------------------------------------------------------

def test_default_profile_denies_what_it_must_and_spares_systemd():
    prof = security.default_profile()
    assert prof["default"] == ACT_ALLOW
    denied = {r[0]: r for r in prof["rules"]}
    for name in ("kexec_load", "kexec_file_load", "open_by_handle_at", "init_module",
                 "finit_module", "delete_module"):
        assert denied[name][1] == ACT_ERRNO(errno.EPERM), name
        assert denied[name][2] == []
    # what systemd (or a container's reboot) needs stays allowed
    for name in ("mount", "unshare", "setns", "keyctl", "bpf", "reboot", "name_to_handle_at",
                 "clone", "clone3", "pivot_root", "personality"):
        assert name not in denied, name
    # only forced umounts are refused, as LXC's reject_force_umount
    assert denied["umount2"][2] == [[1, 7, 1, 1]]


def test_profile_text_format():
    text = """
    # a comment
    default allow
    include default
    kexec_load                       # no action: EPERM
    keyctl errno ENOSYS
    ptrace kill
    acct errno 13
    umount2 errno EACCES arg1 & 0x1 == 0x1
    personality errno EPERM arg0 != 0xffffffff arg1 < 3
    getpid allow                     # same as the default: dropped
    """
    prof = parse_profile(text, "t")
    rules = prof["rules"]
    assert prof["default"] == ACT_ALLOW
    assert ["keyctl", ACT_ERRNO(errno.ENOSYS), []] in rules
    assert ["ptrace", ACT_KILL_PROCESS, []] in rules
    assert ["acct", ACT_ERRNO(13), []] in rules
    assert ["kexec_load", ACT_ERRNO(errno.EPERM), []] in rules
    assert ["umount2", ACT_ERRNO(errno.EACCES), [[1, 7, 1, 1]]] in rules
    assert ["personality", ACT_ERRNO(errno.EPERM), [[0, 1, 0xFFFFFFFF, 0], [1, 2, 3, 0]]] in rules
    assert not any(r[0] == "getpid" for r in rules)


def test_allowlist_profile():
    prof = parse_profile("default errno ENOSYS\nread\nwrite\nexit_group\n", "t")
    assert prof["default"] == ACT_ERRNO(errno.ENOSYS)
    assert prof["rules"] == [["read", ACT_ALLOW, []], ["write", ACT_ALLOW, []],
                             ["exit_group", ACT_ALLOW, []]]


@pytest.mark.parametrize("text, where, what", [
    ("kexec_load errno EWHAT\n", "t:1", "EWHAT"),
    ("\n\nptrace explode\n", "t:3", "condition"),
    ("default sometimes\n", "t:1", "default allow"),
    ("include everything\n", "t:1", "include default"),
    ("Bad-Name\n", "t:1", "syscall name"),
    ("umount2 errno EPERM arg9 == 1\n", "t:1", "condition"),
    ("umount2 errno EPERM arg1 & 1 != 1\n", "t:1", "== only"),
    ("umount2 errno EPERM arg1 == one\n", "t:1", "numbers"),
    ("keyctl errno\n", "t:1", "errno needs a value"),
])
def test_profile_errors_name_the_line(text, where, what):
    with pytest.raises(ConfigError) as e:
        parse_profile(text, "t")
    assert where in str(e.value) and what in str(e.value)


def test_unknown_syscall_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError) as e:
        parse_profile("kexec_lod\n", "p", check_name=lambda n: n != "kexec_lod")
    assert "p:1" in str(e.value) and "kexec_load" in str(e.value)


def test_load_profile_specs(tmp_path):
    assert security.load_profile("none") is None
    assert security.load_profile("default") == security.default_profile()
    p = tmp_path / "prof"
    p.write_text("include default\nkeyctl errno ENOSYS\n")
    prof = security.load_profile(str(p))
    assert ["keyctl", ACT_ERRNO(errno.ENOSYS), []] in prof["rules"]
    assert len(prof["rules"]) == len(security.DEFAULT_RULES) + 1
    with pytest.raises(ConfigError) as e:
        security.load_profile(str(tmp_path / "missing"))
    assert "no such profile file" in str(e.value)


def test_profile_names_checked_against_libseccomp(tmp_path):
    from lxpy.linux import seccomp
    ok, why = seccomp.available()
    if not ok:
        pytest.skip(f"libseccomp: {why}")
    assert seccomp.resolve("kexec_load") is not None
    assert seccomp.resolve("no_such_syscall_at_all") is None
    p = tmp_path / "prof"
    p.write_text("kexec_load\nfrobnicate\n")
    with pytest.raises(ConfigError) as e:
        security.load_profile(str(p))
    assert ":2" in str(e.value) and "frobnicate" in str(e.value)


def test_compiled_filter_covers_the_compat_abis():
    from lxpy.linux import seccomp
    ok, why = seccomp.available()
    if not ok:
        pytest.skip(f"libseccomp: {why}")
    pol = security.compile_bpf({"v": 1, "drop": [], "keep": None, "no_new_privs": False,
                                "seccomp": security.default_profile(), "bpf": None})
    prog = bytes.fromhex(pol["bpf"])
    ks = {k for _code, _jt, _jf, k in seccomp.bpf_instructions(prog)}
    if seccomp.arch_native() == seccomp.SCMP_ARCH_X86_64:
        assert {seccomp.SCMP_ARCH_X86_64, seccomp.SCMP_ARCH_X86} <= ks
    assert ACT_ERRNO(errno.EPERM) in ks


# -- the resolved policy ---------------------------------------------------------------

class _Sec:
    def __init__(self, **kw):
        self.cap_drop = kw.get("cap_drop", ("mac_admin", "mac_override", "sys_time",
                                            "sys_module", "sys_rawio"))
        self.cap_keep = kw.get("cap_keep", ())
        self.seccomp = kw.get("seccomp", "default")
        self.no_new_privs = kw.get("no_new_privs", False)


class _Cfg:
    def __init__(self, **kw):
        self.security = _Sec(**kw)
        self.environment = {"TZ": "UTC"}


def test_resolve_drop():
    pol = security.resolve(_Cfg())
    assert pol["drop"] == [16, 17, 25, 32, 33] and pol["keep"] is None
    assert pol["seccomp"] == security.default_profile()
    assert security.dropped(pol, last=40) == [16, 17, 25, 32, 33]
    assert security.dropped(pol, last=30) == [16, 17, 25]   # an older kernel


def test_resolve_keep_wins():
    pol = security.resolve(_Cfg(cap_keep=("chown", "kill"), seccomp="none", no_new_privs=True))
    assert pol["keep"] == [0, 5] and pol["drop"] is None
    assert pol["seccomp"] is None and pol["no_new_privs"] is True
    assert security.dropped(pol, last=40) == [c for c in range(41) if c not in (0, 5)]


def test_resolve_from_a_real_config(tmp_path):
    from lxpy.config import load
    p = tmp_path / "config.toml"
    p.write_text('[security]\ncap_drop = ["sys_admin", "CAP_NET_RAW"]\nno_new_privs = true\n')
    pol = security.resolve(load(p))
    assert pol["drop"] == [13, 21] and pol["no_new_privs"] is True
    assert "sys_admin" in " ".join(security.describe(pol))


def test_policy_save_load(tmp_path):
    pol = security.resolve(_Cfg())
    security.save(pol, tmp_path / "p.json")
    assert security.load(tmp_path / "p.json") == pol
    (tmp_path / "bad.json").write_text('{"v": 99}')
    with pytest.raises(ConfigError):
        security.load(tmp_path / "bad.json")


# -- attach: context, env, fast path ---------------------------------------------------

def test_attach_context_roundtrip(tmp_path):
    from lxpy.runtime import attach
    ctx = attach.save_context(tmp_path, _Cfg())
    assert attach.load_context(tmp_path) == ctx
    assert ctx["environment"] == {"TZ": "UTC"}
    assert ctx["security"]["drop"] == [16, 17, 25, 32, 33]
    (tmp_path / attach.CONTEXT_FILE).write_bytes(b"garbage")
    assert attach.load_context(tmp_path) is None
    assert attach.load_context(tmp_path / "nowhere") is None


def test_attach_env_clear_and_keep():
    from lxpy.runtime import attach
    u = attach._User()
    u.uid, u.gid, u.name, u.home, u.shell, u.groups = 0, 0, "root", "/root", "/bin/sh", [0]
    host = {"PATH": "/host/bin", "TERM": "xterm-256color", "SECRET": "x", "KEEPME": "k"}
    opts = attach.Options(["env"], env={"A": "1"}, keep_vars=["KEEPME"])
    env = attach.build_env(opts, {"TZ": "UTC"}, u, host)
    assert env == {"PATH": attach.DEFAULT_PATH, "TERM": "xterm-256color", "KEEPME": "k",
                   "TZ": "UTC", "container": "lxpy", "HOME": "/root", "USER": "root",
                   "LOGNAME": "root", "A": "1"}
    env = attach.build_env(attach.Options(["env"], keep_env=True), {}, u, host)
    assert env["SECRET"] == "x" and env["PATH"] == "/host/bin" and env["container"] == "lxpy"

"""The config layer: the settings table, parsing, validation messages, profiles, edits."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxpy.config import load, load_data, parse_signal, parse_size
from lxpy.config.edit import set_keys
from lxpy.config.schema import BY_KEY, LIST_SECTIONS, SETTINGS
from lxpy.errors import ConfigError


def test_every_setting_has_help_and_a_valid_default():
    for s in SETTINGS:
        assert s.help.strip(), s.key
        if s.default is not None and s.key != "include":
            # the default must survive its own parser (so `show` output round-trips)
            plain = list(s.default) if isinstance(s.default, tuple) else s.default
            s.parse(plain)
    for table in LIST_SECTIONS.values():
        for s in table:
            assert s.help.strip()


def test_design_example_config_is_valid():
    cfg = load_data({
        "hostname": "web1",
        "rootfs": {"backend": "overlay", "path": "rootfs"},
        "init": {"cmd": ["/sbin/init"], "halt_signal": "SIGRTMIN+3", "stop_timeout": 60},
        "environment": {"TZ": "UTC"},
        "namespaces": {"create": ["mnt", "pid", "uts", "ipc", "net", "cgroup"],
                       "share": {"net": "db1"}},
        "limits": {"memory": "512M", "memory_swap": "1G", "cpus": 1.5, "cpu_weight": 100,
                   "cpuset": "0-1", "pids": 500, "io_weight": 100,
                   "raw": {"v2": {"memory.high": "400M"}}},
        "mount": [{"source": "/srv/data", "target": "/srv/data",
                   "options": ["bind", "ro", "create=dir"]}],
        "net": [{"type": "veth", "link": "lxpybr0", "name": "eth0",
                 "hwaddr": "00:16:3e:xx:xx:xx", "ipv4": ["10.0.3.50/24"],
                 "gateway4": "10.0.3.1"}],
        "idmap": {"uid": [[0, 100000, 65536]], "gid": [[0, 100000, 65536]]},
        "security": {"cap_drop": ["mac_admin", "sys_time"], "seccomp": "default",
                     "no_new_privs": False},
        "autostart": {"enabled": True, "order": 10, "delay": 5, "groups": ["web"]},
        "hooks": {"pre_start": ["/usr/local/sbin/check-quota"]},
    })
    assert cfg.limits.memory == 512 << 20
    assert cfg.limits.memory_swap == 1 << 30
    assert cfg.limits.raw.v2 == {"memory.high": "400M"}
    assert cfg.net[0].gateway4 == "10.0.3.1"
    assert cfg.get("net.0.ipv4") == ("10.0.3.50/24",)
    assert cfg.idmap.uid == ((0, 100000, 65536),)
    assert cfg.autostart.groups == ("web",)
    assert cfg.mount[0].options == ("bind", "ro", "create=dir")


@pytest.mark.parametrize("text,value", [
    ("512M", 512 << 20), ("2G", 2 << 30), ("1.5G", int(1.5 * (1 << 30))), ("100", 100),
    (4096, 4096), ("64k", 64 << 10), ("1T", 1 << 40), ("512MiB", 512 << 20),
])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["", "M", "12X", "-5M", True, [1], "1..5G"])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_signals():
    import signal
    assert parse_signal("SIGRTMIN+3") == signal.SIGRTMIN + 3
    assert parse_signal("RTMIN+3") == signal.SIGRTMIN + 3
    assert parse_signal("SIGPWR") == signal.SIGPWR
    assert parse_signal("term") == signal.SIGTERM
    assert parse_signal(9) == 9
    with pytest.raises(ValueError):
        parse_signal("SIGNOPE")


@pytest.mark.parametrize("data,expect", [
    ({"limits": {"memroy": "1G"}},
     "'limits.memroy' is not a config key (did you mean limits.memory?)"),
    ({"limits": {"memory": "lots"}}, "limits.memory: 'lots' is not a size"),
    ({"hostnmae": "x"}, "did you mean hostname?"),
    ({"limits": {"cpu_weight": 0}},
     "limits.cpu_weight: 0 is out of range (allowed: from 1 to 10000)"),
    ({"namespaces": {"create": ["mnt", "nett"]}}, "'nett' is not a namespace"),
    ({"net": [{"type": "veth", "ipv4": ["10.0.3.500/24"]}]},
     "net.0.ipv4: '10.0.3.500/24' is not an IPv4 address"),
    ({"net": [{"tpye": "veth"}]}, "net.0.'tpye' is not a config key (did you mean net.0.type?)"),
    ({"security": {"cap_drop": ["sys_tmie"]}},
     "'sys_tmie' is not a capability (did you mean sys_time?)"),
    ({"idmap": {"uid": [[0, 100000, 65536]]}}, "set both idmap.uid and idmap.gid"),
    ({"limits": {"memory": "1G", "memory_swap": "512M"}}, "memory_swap must be at least"),
    ({"mount": [{"source": "/x"}]}, "has no target"),
    ({"init": {"halt_signal": "SIGFOO"}}, "init.halt_signal: 'SIGFOO' is not a signal"),
    ({"hostname": "bad/host"}, "hostname: 'bad/host' is not a hostname"),
    ({"hostname": "web 1"}, "is not a hostname"),
    ({"hostname": "a." + "b" * 64}, "longer than 64 characters"),
    ({"limits": {"memory": 0}}, "a memory limit is at least 1M"),
    ({"limits": {"memory": "99999999999999999999T"}}, "more than any size the kernel takes"),
])
def test_validation_messages_name_key_value_and_allowed(data, expect):
    with pytest.raises(ConfigError) as e:
        load_data(data, "web1/config.toml")
    assert expect in str(e.value)
    assert str(e.value).startswith("web1/config.toml: ")


def test_profiles_merge_in_order(tmp_path, monkeypatch):
    prof = tmp_path / "profiles"
    prof.mkdir()
    (prof / "base.toml").write_text('[limits]\nmemory = "1G"\npids = 100\n'
                                    '[environment]\nA = "1"\n'
                                    '[[mount]]\nsource = "/a"\ntarget = "/a"\n')
    (prof / "web.toml").write_text('include = ["base"]\n[limits]\npids = 200\n'
                                   '[environment]\nB = "2"\n')
    monkeypatch.setenv("LXPY_PROFILES", str(prof))
    cfgfile = tmp_path / "config.toml"
    cfgfile.write_text('include = ["web"]\n[limits]\nmemory = "2G"\n'
                       '[[mount]]\nsource = "/b"\ntarget = "/b"\n')
    cfg = load(cfgfile)
    assert cfg.limits.memory == 2 << 30          # the file wins
    assert cfg.limits.pids == 200                # the later profile wins over the earlier
    assert cfg.environment == {"A": "1", "B": "2"}   # tables merge
    assert [m.target for m in cfg.mount] == ["/a", "/b"]  # mounts append
    assert [Path(f).name for f in cfg.files] == ["base.toml", "web.toml", "config.toml"]


def test_missing_and_cyclic_profiles(tmp_path, monkeypatch):
    prof = tmp_path / "profiles"
    prof.mkdir()
    (prof / "a.toml").write_text('include = ["b"]\n')
    (prof / "b.toml").write_text('include = ["a"]\n')
    monkeypatch.setenv("LXPY_PROFILES", str(prof))
    f = tmp_path / "config.toml"
    f.write_text('include = ["a"]\n')
    with pytest.raises(ConfigError, match="includes itself"):
        load(f)
    f.write_text('include = ["nope"]\n')
    with pytest.raises(ConfigError, match="'nope': no such profile"):
        load(f)


def test_set_keeps_comments_and_order(tmp_path):
    f = tmp_path / "config.toml"
    original = ('# web1: the shop front\nhostname = "web1"  # public name\n\n'
                '[limits]\n# keep it small\nmemory = "256M"\npids = 100\n')
    f.write_text(original)
    set_keys(f, {"limits.memory": "512M", "autostart.enabled": "true",
                 "security.cap_drop": "sys_time,mknod"})
    text = f.read_text()
    assert "# web1: the shop front" in text and "# public name" in text
    assert "# keep it small" in text
    assert text.index("memory") < text.index("pids")        # order kept
    data = tomllib.loads(text)
    assert data["limits"]["memory"] == "512M"
    assert data["autostart"]["enabled"] is True
    assert data["security"]["cap_drop"] == ["sys_time", "mknod"]
    set_keys(f, {}, unset=["limits.memory"])
    assert "memory" not in tomllib.loads(f.read_text())["limits"]


def test_new_keys_stay_above_the_comment_of_the_next_table(tmp_path):
    """A comment right above a table introduces that table: a new key goes after the last
    key before it (tomlkit alone would put it between the comment and its table)."""
    f = tmp_path / "config.toml"
    f.write_text('# top\nhostname = "a"\n\n# limits below\n[limits]\nmemory = "1G"\n\n'
                 '# the network\n[[net]]\ntype = "empty"\n')
    set_keys(f, {"arch": "x86_64", "limits.cpus": "2"})
    lines = f.read_text().splitlines()
    assert lines.index('arch = "x86_64"') < lines.index("# limits below")
    assert lines.index("# limits below") + 1 == lines.index("[limits]")
    assert lines.index("cpus = 2") < lines.index("# the network")
    assert lines.index("# the network") + 1 == lines.index("[[net]]")
    f.write_text('# only comments\n\n# limits below\n[limits]\nmemory = "1G"\n')
    set_keys(f, {"arch": "x86_64"})
    lines = f.read_text().splitlines()
    assert lines[0] == "# only comments"
    assert lines.index('arch = "x86_64"') < lines.index("# limits below")
    assert lines.index("# limits below") + 1 == lines.index("[limits]")
    assert tomllib.loads(f.read_text())["limits"]["memory"] == "1G"


def test_table_entries_as_dotted_keys(tmp_path):
    """environment.FOO, limits.raw.v2.memory.high (a name with dots), namespaces.share.net:
    one entry of a table-valued setting, set, read and unset on its own."""
    f = tmp_path / "config.toml"
    f.write_text('hostname = "a"\n[environment]\nKEEP = "1"\n')
    set_keys(f, {"environment.FOO": "bar baz", "limits.raw.v2.memory.high": "400M",
                 "namespaces.share.net": "host"})
    data = tomllib.loads(f.read_text())
    assert data["environment"] == {"KEEP": "1", "FOO": "bar baz"}
    assert data["limits"]["raw"]["v2"] == {"memory.high": "400M"}
    assert "[limits]" not in f.read_text()          # only [limits.raw.v2]: no empty header
    cfg = load_data(data, str(f))
    assert cfg.get("environment.FOO") == "bar baz"
    assert cfg.get("limits.raw.v2.memory.high") == "400M"
    with pytest.raises(ConfigError, match="environment has no entry 'NOPE'"):
        cfg.get("environment.NOPE")
    set_keys(f, {}, unset=["environment.FOO"])
    assert tomllib.loads(f.read_text())["environment"] == {"KEEP": "1"}
    before = f.read_bytes()
    with pytest.raises(ConfigError, match="not a valid environment variable name"):
        set_keys(f, {"environment.1BAD": "x"})      # the whole table is validated
    assert f.read_bytes() == before


def test_bad_set_leaves_the_file_alone(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text('hostname = "web1"\n[limits]\nmemory = "256M"\n')
    before = f.read_bytes()
    for key, value in [("limits.memory", "lots"), ("limits.memroy", "1G"),
                       ("net.3.ipv4", "10.0.0.1/24"), ("limits.cpus", "-1")]:
        with pytest.raises(ConfigError):
            set_keys(f, {key: value})
        assert f.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]   # no temp file left


def test_set_on_a_net_entry(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text('[[net]]\ntype = "veth"\nlink = "lxpybr0"\n')
    set_keys(f, {"net.0.ipv4": "10.0.3.50/24", "net.0.gateway4": "10.0.3.1"})
    cfg = load(f)
    assert cfg.net[0].ipv4 == ("10.0.3.50/24",)
    assert cfg.net[0].gateway4 == "10.0.3.1"


toml_scalars = st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=True),
                         st.booleans())
toml_values = st.recursive(toml_scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=12), c, max_size=4)), max_leaves=12)
keys = st.sampled_from(sorted({k.split(".")[0] for k in BY_KEY} | set(LIST_SECTIONS)
                              | {"limits", "net", "mount", "bogus"}))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, st.one_of(toml_values, st.dictionaries(
    st.sampled_from(sorted({k.split(".", 1)[-1].split(".")[0] for k in BY_KEY})), toml_values,
    max_size=4)), max_size=5))
def test_no_input_gives_a_traceback(data):
    """Whatever the file holds, the loader answers with a config or a ConfigError."""
    try:
        load_data(data)
    except ConfigError as e:
        assert str(e)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_file_loads_or_fails_cleanly(tmp_path_factory, text):
    f = tmp_path_factory.mktemp("cfg") / "config.toml"
    f.write_text(text)
    try:
        load(f)
    except ConfigError as e:
        assert "config.toml" in str(e)


def test_config_cli_help_lists_every_key():
    r = subprocess.run([sys.executable, "-m", "lxpy", "config", "help"],
                       capture_output=True, text=True)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip("no -m entry")
    assert r.returncode == 0
    for s in SETTINGS:
        assert s.key in r.stdout


def test_profiles_are_reread_when_they_change(tmp_path, monkeypatch):
    # lxpy-ls -f parses each profile once per process; a change must still be seen
    from lxpy.config.loader import load
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv("LXPY_PROFILES", f"{a}:{b}")
    (b / "p.toml").write_text('hostname = "from-b"\n')
    cfg = tmp_path / "config.toml"
    cfg.write_text('include = ["p"]\n')
    assert load(cfg).hostname == "from-b"
    assert load(cfg).hostname == "from-b"
    (b / "p.toml").write_text('hostname = "from-b2"\n')
    assert load(cfg).hostname == "from-b2"
    (a / "p.toml").write_text('hostname = "from-a"\n')     # a higher-priority one appears
    assert load(cfg).hostname == "from-a"
    (a / "p.toml").unlink()
    assert load(cfg).hostname == "from-b2"


@pytest.mark.parametrize("name", ["web1", "web1.example.org", "my_box", "a" * 64, "x-1.y-2",
                                  "a..b", "web-"])
def test_hostnames_the_kernel_takes_are_accepted(name):
    assert load_data({"hostname": name}, "c/config.toml").hostname == name


def test_set_cpuset_takes_the_kernel_list_syntax(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text('hostname = "a"\n')
    set_keys(f, {"limits.cpuset": "0-1", "limits.cpuset_mems": "0"})
    assert tomllib.loads(f.read_text())["limits"] == {"cpuset": "0-1", "cpuset_mems": "0"}


@pytest.mark.parametrize("key,guess", [
    ("net.0.gateway", "net.0.gateway4"),     # a tie: not the alphabetically last (gateway6)
    ("net.1.gatway4", "net.1.gateway4"),
    ("net.0.gatway6", "net.0.gateway6"),
    ("limits.memroy", "limits.memory"),
    ("hostnmae", "hostname"),
])
def test_did_you_mean_picks_the_nearest_and_breaks_ties_by_schema_order(tmp_path, key, guess):
    f = tmp_path / "config.toml"
    f.write_text('hostname = "a"\n')
    with pytest.raises(ConfigError, match=rf"did you mean {guess}\?"):
        set_keys(f, {key: "10.0.3.1"})
    with pytest.raises(ConfigError, match=r"did you mean net\.0\.gateway4\?"):
        load_data({"net": [{"type": "veth", "gateway": "10.0.3.1"}]}, "c/config.toml")


def test_closest_ranking():
    from lxpy.config.schema import closest
    assert closest("gateway", ["gateway6", "gateway4"]) == "gateway6"    # first listed wins
    assert closest("gateway", ["gateway4", "gateway6"]) == "gateway4"
    assert closest("abc", ["xyz"]) is None
    # a longer common prefix wins a tie of similarity
    assert closest("memory", ["zemory", "memorz"]) == "memorz"


def test_parse_signal_knows_every_signal_by_name_and_number():
    """parse_signal knows every signal.Signals by name and number."""
    import signal

    from lxpy.config.signals import parse_signal
    for sig in signal.Signals:
        assert parse_signal(sig.name) == sig.value
        assert parse_signal(sig.name[3:].lower()) == sig.value
        assert parse_signal(str(sig.value)) == sig.value
    assert parse_signal("RTMIN+3") == signal.SIGRTMIN + 3
    assert parse_signal("SIGRTMAX-1") == signal.SIGRTMAX - 1
    for bad in ("SIG_DFL", "SIGRTMIN+", "SIGRTMAX+1", "SIGRTMIN-1", "NOPE", 0, True, None):
        with pytest.raises(ValueError):
            parse_signal(bad)


def test_sections_are_the_tables_of_the_schema():
    from lxpy.config import schema
    assert "limits" in schema.SECTIONS and "limits.raw" in schema.SECTIONS
    assert all(k.rsplit(".", 1)[0] in schema.SECTIONS for k in schema.BY_KEY if "." in k)


def test_an_unknown_table_gets_a_did_you_mean(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text("[limitz]\nmemory = \"512M\"\n")
    with pytest.raises(ConfigError) as e:
        load(p)
    assert "[limitz] is not a config table (did you mean limits?)" in str(e.value)


def test_config_objects_are_frozen(tmp_path):
    import dataclasses
    p = tmp_path / "config.toml"
    p.write_text("[[net]]\ntype = \"veth\"\n[limits]\nmemory = \"1G\"\n")
    cfg = load(p)
    for obj, field in ((cfg, "files"), (cfg.net[0], "link")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, "x")
    assert cfg.limits.memory == 1 << 30 and cfg.net[0].name == "eth0"
    assert cfg.net[0].as_dict()["type"] == "veth" and cfg.net[0] == load(p).net[0]


def test_the_package_gives_functions_not_submodules():
    import lxpy.config.loader  # noqa: F401
    from lxpy.config import Config, load, load_data, parse_signal, parse_size
    assert callable(load) and load.__module__ == "lxpy.config.loader"
    assert callable(load_data) and parse_signal("TERM") == 15 and parse_size("1K") == 1024
    assert Config.__module__ == "lxpy.config.view"

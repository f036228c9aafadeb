"""Templates: lookup, `--` options, help, and Jinja rendering (no root needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxpy import templates
from lxpy.errors import TemplateError, UsageError


def _net(**kw):
    base = {"type": "veth", "link": "lxpybr0", "name": "eth0", "hwaddr": "00:16:3e:00:00:01",
            "mtu": 0, "ipv4": (), "ipv6": (), "gateway4": "", "gateway6": "", "dhcp": False,
            "forward": (), "veth_host": "", "macvlan_mode": "bridge"}
    base.update(kw)
    return base


def _ctx(t, argv=(), **kw):
    opts = t.parse_options(list(argv))
    ctx = {"name": "web1", "hostname": "web1", "lxpath": "/var/lib/lxpy", "options": opts,
           "template": t.name, "arch": opts.get("arch", ""),
           "release": opts.get("release", ""), "net": [], "config": {}}
    ctx.update(kw)
    return ctx


# -- lookup -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["debian", "busybox", "local"])
def test_shipped_templates_are_found(name):
    t = templates.find(name)
    assert t.name == name
    assert t.method in ("debootstrap", "busybox", "tarball")
    assert t.config_template() is not None


def test_missing_template_lists_the_known_ones():
    with pytest.raises(TemplateError) as e:
        templates.find("debain")
    msg = str(e.value)
    assert "debain" in msg and "did you mean debian" in msg
    assert "busybox" in msg and "\n" not in msg


@pytest.mark.parametrize("bad", ["../etc", "a b", ""])
def test_bad_template_names_are_refused(bad):
    with pytest.raises(TemplateError):
        templates.find(bad)


def test_template_by_path_and_extends(tmp_path):
    child = tmp_path / "mydeb"
    (child / "rootfs" / "etc").mkdir(parents=True)
    (child / "template.toml").write_text(
        'extends = "debian"\ndescription = "mine"\n'
        '[options.release]\ndefault = "trixie"\n'
        '[options.motd]\nhelp = "message of the day"\ndefault = "hi"\n')
    (child / "rootfs" / "etc" / "motd.j2").write_text("{{ options.motd }}\n")
    (child / "rootfs" / "etc" / "hostname.j2").write_text("child-{{ hostname }}\n")
    t = templates.find(str(child))
    assert t.name == "mydeb" and t.method == "debootstrap"
    opts = t.parse_options([])
    assert opts["release"] == "trixie" and opts["motd"] == "hi"
    assert t.options["release"].short == "-r"         # the rest of the parent's option kept
    files = t.rootfs_files()
    assert files["etc/hostname.j2"].parent == child / "rootfs" / "etc"   # child wins
    assert "etc/hosts.j2" in files                                       # parent's kept
    assert t.cache_name() == "mydeb"
    assert "--motd" in t.help()


def test_a_template_that_extends_itself_is_refused(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "template.toml").write_text('extends = "./a"\nmethod = "busybox"\n')
    with pytest.raises(TemplateError, match="extends itself"):
        templates.find(str(a))


def test_bad_template_toml_is_one_line(tmp_path):
    a = tmp_path / "broken"
    a.mkdir()
    (a / "template.toml").write_text('method = "floppy"\n')
    with pytest.raises(TemplateError, match="floppy"):
        templates.find(str(a))
    (a / "template.toml").write_text('method = \n')
    with pytest.raises(TemplateError, match="not valid TOML"):
        templates.find(str(a))


# -- options ------------------------------------------------------------------


def test_debian_defaults():
    t = templates.find("debian")
    o = t.parse_options([])
    assert o["release"] == "bookworm"
    assert o["arch"] == templates.host_arch()
    assert o["mirror"] == "http://deb.debian.org/debian"
    assert o["packages"] == [] and o["root_password"] is None


@pytest.mark.parametrize("argv", [["-r", "trixie"], ["-rtrixie"], ["--release", "trixie"],
                                  ["--release=trixie"]])
def test_option_spellings(argv):
    assert templates.find("debian").parse_options(argv)["release"] == "trixie"


def test_list_option():
    o = templates.find("debian").parse_options(["--packages", "vim, curl,openssh-server"])
    assert o["packages"] == ["vim", "curl", "openssh-server"]


@pytest.mark.parametrize("argv, words", [
    (["--relase", "x"], ["unknown option --relase", "did you mean --release"]),
    (["--packages", "vim,Bad;rm"], ["--packages", "not a valid value"]),
    (["-r"], ["-r needs a value"]),
    (["bookworm"], ["unexpected argument"]),
    (["--mirror", "ftp:/nope"], ["--mirror"]),
    (["--auth-key", "/no/such/key.pub"], ["no such file"]),
])
def test_bad_options_are_one_line_usage_errors(argv, words):
    with pytest.raises(UsageError) as e:
        templates.find("debian").parse_options(argv)
    assert e.value.exit_status == 2
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_local_needs_a_file(tmp_path):
    t = templates.find("local")
    with pytest.raises(UsageError, match="--file is required"):
        t.parse_options([])
    f = tmp_path / "r.tar"
    f.write_bytes(b"")
    assert t.parse_options(["--file", str(f)])["file"] == str(f.resolve())


def test_help_lists_options_and_defaults():
    h = templates.find("debian").help()
    for w in ("-r, --release", "bookworm", "--mirror", "--packages", "--root-password",
              "--auth-key", "-a, --arch"):
        assert w in h


def test_bool_and_int_options(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    (d / "template.toml").write_text(
        'method = "none"\n[options.fast]\ntype = "bool"\n[options.n]\ntype = "int"\n'
        'default = 3\n[options.color]\nchoices = ["red", "blue"]\ndefault = "red"\n')
    t = templates.find(str(d))
    assert t.parse_options([]) == {"fast": False, "n": 3, "color": "red"}
    assert t.parse_options(["--fast", "--n", "7", "--color=blue"]) == \
        {"fast": True, "n": 7, "color": "blue"}
    with pytest.raises(UsageError, match="whole number"):
        t.parse_options(["--n", "x"])
    with pytest.raises(UsageError, match="red, blue"):
        t.parse_options(["--color", "green"])


# -- rendering ----------------------------------------------------------------


def _mini(tmp_path, files: dict[str, str], config: str = "", toml: str = 'method = "none"\n'):
    d = tmp_path / "tpl"
    (d / "rootfs").mkdir(parents=True)
    (d / "template.toml").write_text(toml)
    for rel, text in files.items():
        p = d / "rootfs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    if config:
        (d / "config.toml.j2").write_text(config)
    return templates.find(str(d))


def test_strict_undefined_is_a_template_error_and_writes_nothing(tmp_path):
    t = _mini(tmp_path, {"etc/a.j2": "ok\n", "etc/b.j2": "{{ nosuchvar }}\n"})
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(TemplateError) as e:
        templates.render_rootfs(t, root, _ctx(t))
    assert "nosuchvar" in str(e.value) and "etc/b.j2" in str(e.value)
    assert list(root.iterdir()) == []


def test_syntax_error_names_the_file_and_line(tmp_path):
    t = _mini(tmp_path, {}, config='hostname = "{{ hostname }"\n')
    with pytest.raises(TemplateError, match=r"config.toml.j2 line 1"):
        templates.render_config(t, _ctx(t))


def test_render_config_and_files(tmp_path):
    t = _mini(tmp_path, {"etc/hostname.j2": "{{ hostname }}\n", "etc/static": "as is {{x}}\n",
                         "etc/skip.j2": "{{ skip_file() }}"},
              config='hostname = "{{ hostname }}"\n')
    assert templates.render_config(t, _ctx(t)) == 'hostname = "web1"\n'
    root = tmp_path / "root"
    root.mkdir()
    templates.render_rootfs(t, root, _ctx(t))
    assert (root / "etc/hostname").read_text() == "web1\n"
    assert (root / "etc/static").read_text() == "as is {{x}}\n"
    assert not (root / "etc/skip").exists()


def _debian_render(tmp_path, argv=(), net=()):
    t = templates.find("debian")
    root = tmp_path / "rootfs"
    for d in ("etc/ssh", "var/lib/dbus", "etc/network", "lib/systemd/system"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for k in ("rsa", "ed25519"):
        (root / f"etc/ssh/ssh_host_{k}_key").write_text("SHARED PRIVATE KEY")
        (root / f"etc/ssh/ssh_host_{k}_key.pub").write_text("SHARED")
    (root / "etc/ssh/sshd_config").write_text("# keep me\n")
    (root / "etc/machine-id").write_text("d920a8bdce02477cb3e6792c81bd3256\n")
    (root / "var/lib/dbus/machine-id").write_text("d920a8bdce02477cb3e6792c81bd3256\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    templates.render_rootfs(t, root, _ctx(t, argv, net=list(net)))
    return root


def test_debian_render(tmp_path):
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAA test@host")
    root = _debian_render(tmp_path, ["--root-password", "s3cret", "--auth-key", str(key)],
                          [_net(dhcp=True)])
    etc = root / "etc"
    assert (etc / "hostname").read_text() == "web1\n"
    assert "127.0.1.1\tweb1" in (etc / "hosts").read_text()
    ifaces = (etc / "network/interfaces").read_text()
    assert "auto eth0" in ifaces and "iface eth0 inet dhcp" in ifaces
    assert not (etc / "resolv.conf").exists()        # dhclient writes it
    src = (etc / "apt/sources.list").read_text()
    assert "deb http://deb.debian.org/debian bookworm main" in src
    assert "bookworm-security" in src and "bookworm-updates" in src
    assert (etc / "machine-id").read_text() == ""
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert not list((etc / "ssh").glob("ssh_host_*"))
    assert (etc / "ssh/sshd_config").exists()
    dropin = (etc / "systemd/system/ssh.service.d/lxpy-host-keys.conf").read_text()
    assert "ssh-keygen -q -t" in dropin
    assert os.readlink(etc / "systemd/system/systemd-journald-audit.socket") == "/dev/null"
    assert os.readlink(etc / "systemd/system/default.target").endswith("multi-user.target")
    shadow = (etc / "shadow").read_text()
    assert shadow.startswith("root:$6$") and "s3cret" not in shadow
    assert "daemon:*" in shadow
    assert (root / "root/.ssh/authorized_keys").read_text() == "ssh-ed25519 AAAA test@host\n"
    assert (root / "root/.ssh").stat().st_mode & 0o777 == 0o700
    assert (etc / "default/locale").read_text() == "LANG=C.UTF-8\n"
    # /etc is up to date with /usr at create: systemd-sysusers does not run at every boot
    assert (etc / ".updated").read_text().startswith("# Written by lxpy")


def test_debian_static_network(tmp_path):
    root = _debian_render(tmp_path, net=[_net(ipv4=("10.0.3.50/24",), gateway4="10.0.3.1"),
                                         _net(name="eth1", type="macvlan", dhcp=True),
                                         _net(name="eth2", type="empty")])
    ifaces = (root / "etc/network/interfaces").read_text()
    assert "iface eth0 inet manual" in ifaces and "10.0.3.50/24" in ifaces
    assert "iface eth1 inet dhcp" in ifaces
    assert "eth2" not in ifaces
    assert "nameserver 10.0.3.1" in (root / "etc/resolv.conf").read_text()


@pytest.mark.parametrize("entry, want", [
    # static on the managed bridge, no gateway given (lxpy fills it): its dnsmasq
    (_net(link="lxpyt0", ipv4=("10.9.3.50/24",)), "search lxpyt\nnameserver 10.9.3.1\n"),
    (_net(link="lxpyt0", ipv4=("10.9.3.50/24",), gateway4="auto"),
     "search lxpyt\nnameserver 10.9.3.1\n"),
    # another bridge with a gateway: the gateway, no search domain of lxpy's
    (_net(link="br9", ipv4=("192.0.2.5/24",), gateway4="192.0.2.1"), "nameserver 192.0.2.1\n"),
    # nothing to go on: the file is left as it was
    (_net(link="br9", ipv4=("192.0.2.5/24",), gateway4="auto"), None),
    (_net(link="lxpyt0", dhcp=True), None),
])
def test_debian_resolv_conf_of_static_interfaces(tmp_path, entry, want):
    t = templates.find("debian")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    templates.render_rootfs(t, root, _ctx(t, net=[entry], bridge="lxpyt0",
                                          bridge_address="10.9.3.1", domain="lxpyt"))
    f = root / "etc/resolv.conf"
    if want is None:
        assert not f.exists()
    else:
        assert f.read_text().endswith(want), f.read_text()


@pytest.mark.parametrize("release, want, unwanted", [
    ("sid", "deb http://deb.debian.org/debian sid main", "security"),
    ("buster", "buster/updates", "buster-security"),
    ("trixie", "trixie-security", "trixie/updates"),
])
def test_debian_sources_per_release(tmp_path, release, want, unwanted):
    root = _debian_render(tmp_path, ["-r", release])
    src = (root / "etc/apt/sources.list").read_text()
    assert want in src and unwanted not in src


def test_render_never_writes_through_planted_symlinks(tmp_path):
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "shadow").write_text("HOST SHADOW\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.symlink(outside / "shadow", root / "etc/hostname")            # absolute, to "host"
    os.symlink("../../../host/shadow", root / "etc/hosts")            # relative escape
    os.symlink(str(outside), root / "root")                           # a dir link out
    t = templates.find("debian")
    key = tmp_path / "k.pub"
    key.write_text("ssh-rsa AAAA k")
    with pytest.raises(TemplateError, match="root"):   # root/.ssh cannot be made: refused
        templates.render_rootfs(t, root, _ctx(t, ["--auth-key", str(key)]))
    assert (outside / "shadow").read_text() == "HOST SHADOW\n"
    assert sorted(p.name for p in outside.iterdir()) == ["shadow"]
    os.unlink(root / "root")
    templates.render_rootfs(t, root, _ctx(t, ["--auth-key", str(key)]))
    assert (root / "root/.ssh/authorized_keys").read_text() == "ssh-rsa AAAA k\n"
    assert (outside / "shadow").read_text() == "HOST SHADOW\n"
    assert sorted(p.name for p in outside.iterdir()) == ["shadow"]
    assert (root / "etc/hostname").read_text() == "web1\n"
    assert not (root / "etc/hostname").is_symlink()
    assert "web1" in (root / "etc/hosts").read_text()


def test_render_refuses_a_symlinked_etc(tmp_path):
    outside = tmp_path / "host"
    outside.mkdir()
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink(str(outside), root / "etc")        # etc -> /<tmp>/host: inside: dangling
    t = templates.find("busybox")
    with pytest.raises(TemplateError) as e:
        templates.render_rootfs(t, root, _ctx(t))
    assert "\n" not in str(e.value)
    assert list(outside.iterdir()) == []
    os.unlink(root / "etc")
    os.symlink("/etc", root / "etc")              # etc -> /etc: a loop inside the root
    with pytest.raises(TemplateError):
        templates.render_rootfs(t, root, _ctx(t))
    assert list(outside.iterdir()) == []


def test_render_into_missing_rootfs_is_a_template_error(tmp_path):
    t = templates.find("busybox")
    with pytest.raises(TemplateError):
        templates.render_rootfs(t, tmp_path / "nope", _ctx(t))


def test_host_arch_is_dpkg_style():
    assert templates.host_arch() in ("amd64", "arm64", "armhf", "i386", "ppc64el", "s390x",
                                     "riscv64") or templates.host_arch()


def test_templates_dir_env(tmp_path, monkeypatch):
    d = tmp_path / "extra" / "mine"
    d.mkdir(parents=True)
    (d / "template.toml").write_text('method = "busybox"\n')
    monkeypatch.setenv("LXPY_TEMPLATES", str(tmp_path / "extra"))
    assert templates.find("mine").path == d
    assert "mine" in templates.known()
    assert Path(templates.find("debian").path).name == "debian"


def test_busybox_render_network(tmp_path):
    t = templates.find("busybox")
    root = tmp_path / "rootfs"
    root.mkdir()
    templates.render_rootfs(t, root, _ctx(t, net=[_net(dhcp=True), _net(name="eth1")]))
    rcs = root / "etc/init.d/rcS"
    text = rcs.read_text()
    assert rcs.stat().st_mode & 0o111
    assert "for n in eth0 eth1; do\n\tip link set \"$n\" up" in text
    assert "for n in eth0; do\n\tudhcpc -f -i \"$n\"" in text
    assert subprocess.run(["sh", "-n", str(rcs)]).returncode == 0
    # no interface: empty loops, still valid
    root2 = tmp_path / "rootfs2"
    root2.mkdir()
    templates.render_rootfs(t, root2, _ctx(t, net=[]))
    text2 = (root2 / "etc/init.d/rcS").read_text()
    assert "for n in ; do" in text2
    assert subprocess.run(["sh", "-n", str(root2 / "etc/init.d/rcS")]).returncode == 0
    assert (root / "usr/share/udhcpc/default.script").stat().st_mode & 0o111
    assert templates.render_config(t, _ctx(t)).count('include = ["busybox"]') == 1


_WORDS = st.sampled_from(["-r", "--release", "-a", "--arch", "--mirror", "--packages",
                          "--root-password", "--auth-key", "--locale", "--", "-", "-x",
                          "--release=", "-rsid", "bookworm", "amd64", "a,b", "", "=",
                          "http://x/y", "/etc/hostname", "--packages=vim,,curl"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_WORDS, st.text(max_size=12)), max_size=6))
def test_no_argv_gives_a_traceback(argv):
    t = templates.find("debian")
    try:
        out = t.parse_options(argv)
    except UsageError as e:
        assert "\n" not in str(e) and e.exit_status == 2
    else:
        assert set(out) == {o.key for o in t.options.values()}


_PLAIN_CTX = {"name": "c1", "n": 3, "t": True, "options": {"release": "bookworm", "arch": "amd64"}}


@pytest.mark.parametrize("text", [
    "a {{ name }} b\n", "{{ options.release }}/{{ options.arch }}", "x = {{ n }} {{t}}\n\n",
    "{{name}}{{ name }}", "}} {{ name }} }", "no markup at all\n", ""])
def test_plain_render_is_what_jinja_renders(text):
    import jinja2
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    assert templates._render_plain(text, _PLAIN_CTX) == env.from_string(text).render(_PLAIN_CTX)


@pytest.mark.parametrize("text", [
    "{% if n %}x{% endif %}", "{{ name | upper }}", "{{ options.items }}", "{{ missing }}",
    "{# c #}", "{{ n.x }}", "{{ options }}", "{{ 'lit' }}", "a\r\nb {{ name }}"])
def test_plain_render_leaves_the_rest_to_jinja(text):
    assert templates._render_plain(text, _PLAIN_CTX) is None

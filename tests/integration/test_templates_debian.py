"""The debian template on a really debootstrapped bookworm (once per test run, shared):
what the cache holds, and what a created container's rootfs looks like."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.debian]


def test_cache_is_fit_to_share(debian_cache):
    root = debian_cache
    assert (root / "lib/systemd/systemd").exists()
    assert os.path.realpath(root / "sbin/init").endswith("systemd")
    for tool in ("usr/sbin/sshd", "sbin/ip", "sbin/ifup", "sbin/dhclient", "bin/ps"):
        assert (root / tool).exists() or (root / "usr" / tool).exists(), tool
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert not list((root / "etc/ssh").glob("ssh_host_*")), "host keys would be shared"
    assert not list((root / "var/cache/apt/archives").glob("*.deb"))
    assert (root / "usr/lib/locale/locale-archive").exists()
    assert (root.parent / "debootstrap.log").read_text().rstrip().endswith("# exit 0")


@contextmanager
def _merged(lxpath: Path, name: str):
    """The container's rootfs as the container will see it (backend-agnostic)."""
    from lxpy import storage
    from lxpy.container import Container
    c = Container(name, lxpath)
    cfg = c.config
    with storage.get(cfg.rootfs.backend).mounted(c.dir, cfg) as root:
        yield Path(root)


def test_debian_create_renders_the_rootfs(lxpy, lxpath, debian_cache, tmp_path):
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3Nz test@lxpy\n")
    extra = tmp_path / "net.toml"
    extra.write_text('[[net]]\ntype = "veth"\nlink = "lxpybr0"\nname = "eth0"\n'
                     'ipv4 = ["10.0.3.50/24"]\ngateway4 = "10.0.3.1"\n'
                     '[[net]]\ntype = "veth"\nlink = "lxpybr0"\nname = "eth1"\ndhcp = true\n')
    lxpy("create", "-n", "web1", "-t", "debian", "-B", "overlay", "-f", str(extra), "--",
         "-r", "bookworm", "--root-password", "s3cret", "--auth-key", str(key))
    cfg = (lxpath / "web1/config.toml").read_text()
    assert 'include = ["debian"]' in cfg
    assert lxpy("config", "-n", "web1", "get", "init.halt_signal").stdout.strip() == \
        "SIGRTMIN+3"
    lower = lxpy("config", "-n", "web1", "get", "rootfs.lower").stdout.strip()
    assert Path(lower) == debian_cache
    with _merged(lxpath, "web1") as root:
        etc = root / "etc"
        assert (etc / "hostname").read_text() == "web1\n"
        assert "127.0.1.1\tweb1" in (etc / "hosts").read_text()
        ifaces = (etc / "network/interfaces").read_text()
        assert "iface eth0 inet manual" in ifaces and "10.0.3.50/24" in ifaces
        assert "iface eth1 inet dhcp" in ifaces
        assert "nameserver 10.0.3.1" in (etc / "resolv.conf").read_text()
        src = (etc / "apt/sources.list").read_text()
        assert "deb http://deb.debian.org/debian bookworm main" in src
        assert "deb http://security.debian.org/debian-security bookworm-security main" in src
        assert (etc / "machine-id").read_text() == ""
        assert not list((etc / "ssh").glob("ssh_host_*"))
        assert "ssh-keygen -q -t" in \
            (etc / "systemd/system/ssh.service.d/lxpy-host-keys.conf").read_text()
        for unit in ("systemd-journald-audit.socket", "systemd-udevd.service",
                     "sys-kernel-config.mount"):
            assert os.readlink(etc / "systemd/system" / unit) == "/dev/null", unit
        assert (etc / "systemd/system/getty.target.wants/console-getty.service").is_symlink()
        # generators with nothing to do in a container are masked; fstab's and getty's stay
        gens = etc / "systemd/system-generators"
        for gen in ("systemd-cryptsetup-generator", "systemd-gpt-auto-generator"):
            assert os.readlink(gens / gen) == "/dev/null", gen
        for gen in ("systemd-fstab-generator", "systemd-getty-generator"):
            assert not (gens / gen).exists(), gen
        shadow = (etc / "shadow").read_text()
        assert shadow.startswith("root:$6$") and "s3cret" not in shadow
        assert (root / "root/.ssh/authorized_keys").read_text() == \
            "ssh-ed25519 AAAAC3Nz test@lxpy\n"
        assert (etc / "fstab").read_text().startswith("#")
        # the container's identity stays in the container
        r = subprocess.run(["chroot", str(root), "/usr/bin/ssh-keygen", "-A"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert list((etc / "ssh").glob("ssh_host_ed25519_key"))
    # ... and never leaks into the shared cache
    assert not list((debian_cache / "etc/ssh").glob("ssh_host_*"))
    assert "root:$6$" not in (debian_cache / "etc/shadow").read_text()
    assert not (debian_cache / "root/.ssh/authorized_keys").exists()
    assert (debian_cache / "etc/hostname").read_text() != "web1\n"


def test_two_debian_containers_differ_only_in_what_is_theirs(lxpy, lxpath, debian_cache):
    lxpy("create", "-n", "d1", "-t", "debian", "-B", "overlay")
    lxpy("create", "-n", "d2", "-t", "debian", "-B", "overlay")
    with _merged(lxpath, "d1") as r1:
        assert (r1 / "etc/hostname").read_text() == "d1\n"
        assert "iface eth0 inet dhcp" in (r1 / "etc/network/interfaces").read_text()
    with _merged(lxpath, "d2") as r2:
        assert (r2 / "etc/hostname").read_text() == "d2\n"
    assert lxpy("config", "-n", "d1", "get", "net.0.hwaddr").stdout != \
        lxpy("config", "-n", "d2", "get", "net.0.hwaddr").stdout


def test_debootstrap_failures_are_one_clear_line(tmp_path):
    from lxpy import bootstrap, templates
    from lxpy.errors import BootstrapError
    t = templates.find("debian")
    cache = tmp_path / "cache"
    # nothing listens on port 9 of loopback: "no network" without touching the network
    opts = t.parse_options(["-r", "bookworm", "--mirror", "http://127.0.0.1:9/debian"])
    with pytest.raises(BootstrapError) as e:
        bootstrap.ensure_cached(t, opts, cache)
    first = str(e.value).splitlines()[0]
    assert "debootstrap of bookworm" in first and "127.0.0.1:9" in first
    assert "debootstrap.log" in first
    entry = cache / "debian" / f"bookworm-{opts['arch']}"
    assert (entry / "debootstrap.log").is_file()
    assert sorted(p for p in os.listdir(entry) if p.startswith(("rootfs", ".build"))) == []


def _procs_using(path: str) -> list[int]:
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if path.encode() in f.read():
                    found.append(int(p))
        except OSError:
            pass
    return found


def test_killed_debian_create_leaves_nothing_and_does_not_block(lxpath, tmp_path):
    """SIGKILL of lxpy-create in the middle of debootstrap: debootstrap stops too, nothing
    is mounted or listed, the cache lock is free, the next build sweeps the leftovers."""
    import fcntl
    import signal

    from tests.conftest import BIN
    cache = tmp_path / "cache"
    env = {**os.environ, "LXPY_CACHE": str(cache)}
    p = subprocess.Popen([str(BIN / "lxpy-create"), "-P", str(lxpath), "-n", "killed",
                          "-t", "debian", "-q"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    def retrieving():
        assert p.poll() is None, "lxpy-create ended before debootstrap got going"
        log = next(iter(cache.glob("debian/*/debootstrap.log")), None)
        return log if log is not None and "I: Retrieving" in log.read_text(errors="replace") \
            else None
    try:
        log = wait_for(retrieving, 120, "debootstrap to start")
    except AssertionError:
        p.kill()
        raise
    entry = log.parent
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    wait_for(lambda: _procs_using(str(entry)) == [], 60, "debootstrap to end with lxpy-create")
    with open("/proc/self/mountinfo") as f:
        assert str(entry) not in f.read()
    assert not (lxpath / "killed").exists()
    r = subprocess.run([str(BIN / "lxpy-ls"), "-P", str(lxpath), "-1"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert "killed" not in r.stdout
    fd = os.open(entry / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)       # nobody holds it
    finally:
        os.close(fd)
    from lxpy.bootstrap import cache as cachemod
    assert cachemod.current(entry) is None
    cachemod.ensure(entry, lambda t: (t / "ok").write_text("x"), {}, what="retry")
    assert not [n for n in os.listdir(entry) if n.startswith(".build-")]


def _attach(lxpy, name: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return lxpy("attach", "-n", name, "--", *cmd, check=False, timeout=timeout)


def _wait_booted(lxpy, name: str) -> str:
    """The guest's systemd reported READY=1 (lxpy-wait -s READY, an event): its bus is up
    and is-system-running says how the boot ended."""
    lxpy("wait", "-n", name, "-s", "READY", "-t", "180", timeout=200)
    r = _attach(lxpy, name, "systemctl", "is-system-running")
    return r.stdout.strip()


def test_debian_boots_clean_with_its_own_identity(lxpy, lxpath, debian_cache, tmp_path):
    """The template's container tweaks make systemd boot to "running" (no failed unit),
    and each container gets its own machine-id and ssh host keys at first boot."""
    empty = tmp_path / "empty-net.toml"
    empty.write_text('[[net]]\ntype = "empty"\n')
    ids = {}
    for name in ("boot1", "boot2"):
        lxpy("create", "-n", name, "-t", "debian", "-B", "overlay", "-f", str(empty))
        lxpy("start", "-n", name, timeout=120)
    for name in ("boot1", "boot2"):
        state = _wait_booted(lxpy, name)
        failed = _attach(lxpy, name, "systemctl", "--failed", "--plain", "--no-legend").stdout
        assert state == "running", f"{name}: {state}; failed units:\n{failed}"
        mid = _attach(lxpy, name, "cat", "/etc/machine-id").stdout.strip()
        assert len(mid) == 32
        assert _attach(lxpy, name, "systemctl", "is-active", "ssh").stdout.strip() == "active"
        key = _attach(lxpy, name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
        assert key.startswith("ssh-ed25519 ")
        assert _attach(lxpy, name, "hostname").stdout.strip() == name
        # the users were made when the cache was bootstrapped: not again at every boot
        skipped = _attach(lxpy, name, "systemctl", "show", "-P", "ConditionResult",
                          "systemd-sysusers.service").stdout.strip()
        assert skipped == "no", f"{name}: systemd-sysusers ran (ConditionResult={skipped})"
        ids[name] = (mid, key)
    assert ids["boot1"][0] != ids["boot2"][0], "machine-id shared between containers"
    assert ids["boot1"][1] != ids["boot2"][1], "ssh host key shared between containers"
    for name in ("boot1", "boot2"):
        lxpy("stop", "-n", name, timeout=120)
    assert (debian_cache / "etc/machine-id").read_text() == ""
    assert not list((debian_cache / "etc/ssh").glob("ssh_host_*"))

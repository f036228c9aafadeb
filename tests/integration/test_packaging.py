"""The Debian package: built by packaging/build-deb with Debian's tools, installed with apt on
this machine (Debian's python3-* libraries, /usr/bin/python3), its commands, man pages, units
and bash completion used as an admin would, then removed, leaving containers' data alone and
the machine as it was."""

from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO

COMPLETION = REPO / "packaging" / "completion" / "lxpy"
SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def test_changelog_version_is_the_package_version():
    from lxpy import __version__
    first = (REPO / "packaging/debian/changelog").read_text().splitlines()[0]
    assert re.match(rf"^lxpy \({re.escape(__version__)}(-\d+)?\) ", first), first


def test_completion_covers_every_command():
    from lxpy.cli import COMMANDS
    env = {**os.environ}
    got = _complete(["lxpy", ""], env, str(COMPLETION))
    assert set(COMMANDS) <= set(got)
    r = subprocess.run(["bash", "-c", f"source {COMPLETION}; complete -p"], capture_output=True,
                       text=True, env=env, timeout=60)
    registered = {line.split()[-1] for line in r.stdout.splitlines() if "_lxpy" in line}
    assert registered >= {"lxpy"} | {f"lxpy-{v}" for v in COMMANDS}
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"lxpy"} | {f"lxpy-{v}" for v in COMMANDS}, (
        "pyproject.toml [project.scripts] and lxpy.cli.COMMANDS differ")


def _complete(words: list[str], env: dict[str, str], source: str) -> list[str]:
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ));'
              ' _lxpy; printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run(["bash", "-c", script, "_", source, *words], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return [x for x in r.stdout.splitlines() if x]


def test_completion_from_the_checkout(lxpy, lxpath, unique):
    env = {**os.environ, "LXPY_TEMPLATES": str(REPO / "templates")}
    lxpy("create", "-n", unique, "-t", "busybox")
    lxpy("snapshot", "-n", unique)
    lp = str(lxpath)
    assert _complete(["lxpy-start", "-P", lp, "-n", ""], env, str(COMPLETION)) == [unique]
    assert _complete(["lxpy", "info", "-P", lp, unique[:3]], env, str(COMPLETION)) == [unique]
    assert _complete(["lxpy-snapshot", "-P", lp, "-n", unique, "-r", ""], env,
                     str(COMPLETION)) == ["snap0"]
    assert "busybox" in _complete(["lxpy-create", "-n", "x", "-t", ""], env, str(COMPLETION))
    assert _complete(["lxpy-ls", "--fa"], env, str(COMPLETION)) == ["--fancy"]
    assert _complete(["lxpy-autostart", "--ign"], env, str(COMPLETION)) == ["--ignore-auto"]
    assert "limits.memory" in _complete(["lxpy-config", "-n", unique, "set", "limits.me"], env,
                                        str(COMPLETION))
    lxpy("snapshot", "-n", unique, "-d", "ALL")


# -- the real package --------------------------------------------------------------------

WATCHED = [Path("/etc/lxpy"), Path("/var/lib/lxpy"), Path("/var/cache/lxpy"),
           Path("/var/log/lxpy"), Path("/run/lxpy")]


def _dpkg_installed(pkg: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                       text=True)
    return r.returncode == 0 and "installed" in r.stdout.split()


def _snapshot_host() -> dict:
    state = {}
    for p in WATCHED:
        state[p] = p.stat().st_mode & 0o7777 if p.exists() else None
    conf = Path("/etc/lxpy/lxpy.toml")
    state["conf"] = conf.read_bytes() if conf.exists() else None
    return state


def _restore_host(state: dict) -> None:
    conf = Path("/etc/lxpy/lxpy.toml")
    if state["conf"] is not None:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_bytes(state["conf"])
    for p in reversed(WATCHED):
        mode = state[p]
        if mode is None:
            if p.is_dir():
                # only what the package made and nobody filled
                for sub in sorted(p.rglob("*"), reverse=True):
                    if sub.is_dir() and not any(sub.iterdir()):
                        sub.rmdir()
                if not any(p.iterdir()):
                    p.rmdir()
        elif p.exists():
            os.chmod(p, mode)


# Written while this test has the package installed: a later run that finds the package and
# the marker knows the package is a leftover of a killed run, not the admin's.
MARKER = Path("/var/lib/lxpy-packaging-test.installed")


def _purge_leftover() -> None:
    name = MARKER.read_text().strip()
    lp = Path("/var/lib/lxpy")
    if name and (lp / name).exists():
        for cmd in (["lxpy-stop", "-k"], ["lxpy-destroy", "-f", "-s"]):
            subprocess.run([str(BIN / cmd[0]), "-P", str(lp), "-n", name, *cmd[1:]],
                           capture_output=True, timeout=120)
    subprocess.run(["dpkg", "-P", "lxpy"], capture_output=True, timeout=300,
                   env={"PATH": SYS_PATH, "DEBIAN_FRONTEND": "noninteractive"})
    for p in (lp / f".{name}.lock", lp):
        try:
            p.unlink() if p.is_file() else p.rmdir()
        except OSError:
            pass
    MARKER.unlink(missing_ok=True)


def _sysrun(*cmd: str, env: dict[str, str], check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout,
                       cwd="/")
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.mark.slow
def test_deb_builds_installs_works_and_removes_cleanly(tmp_path, unique, cache_dir,
                                                       request):
    for tool in ("dpkg-buildpackage", "dh", "pybuild", "apt-get"):
        if shutil.which(tool, path=SYS_PATH) is None:
            pytest.skip(f"{tool} missing: apt-get install debhelper dh-python "
                        "pybuild-plugin-pyproject python3-all")
    # one run at a time on a machine (two checkouts' suites would install over each other)
    lock = open("/run/lxpy-packaging-test.lock", "w")  # noqa: SIM115 - held for the test
    fcntl.flock(lock, fcntl.LOCK_EX)
    request.addfinalizer(lock.close)
    if _dpkg_installed("lxpy") and MARKER.exists():
        _purge_leftover()           # a run of this test that was killed before its clean-up
    if _dpkg_installed("lxpy"):
        pytest.skip("an lxpy package is installed on this machine; not replacing it")
    if any(Path("/usr/bin").glob("lxpy*")):
        pytest.skip("/usr/bin/lxpy* exists and is not from a package; not overwriting it")

    out = tmp_path / "dist"
    r = subprocess.run([str(REPO / "packaging/build-deb"), str(out)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    debs = list(out.glob("lxpy_*_all.deb"))
    assert len(debs) == 1, r.stdout
    # maintainer scripts: an upgrade stops nothing (containers and the bridge stay up, as
    # with LXC's package); a removal stops the units that run on the package's code
    ctl = tmp_path / "ctl"
    subprocess.run(["dpkg-deb", "-e", str(debs[0]), str(ctl)], check=True)
    preinst = (ctl / "preinst").read_text() if (ctl / "preinst").exists() else ""
    assert "stop" not in preinst, preinst
    prerm = (ctl / "prerm").read_text()
    assert 'if [ "$1" = remove ]' in prerm and "stop lxpy.service lxpy-net.service" in prerm

    host = _snapshot_host()
    lp = Path("/var/lib/lxpy")
    # our own managed bridge and subnet (never lxpybr0 / 10.0.3.0/24)
    br = "lxpyd" + unique[1:7]
    sub = f"10.{random.randint(180, 250)}.{random.randint(0, 255)}"
    sysconf = tmp_path / "lxpy.toml"
    sysconf.write_text(f'[net]\nbridge = "{br}"\nsubnet = "{sub}.0/24"\n'
                       f'dhcp_range = "{sub}.100,{sub}.150"\ndomain = "lxpytest"\n')
    # the system's tools and python only: nothing from the venv or the checkout
    env = {"PATH": SYS_PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "LXPY_CONFIG": str(sysconf), "LXPY_CACHE": str(cache_dir),
           "LXPY_LOG_DIR": str(tmp_path / "log"),
           "LXPY_CGROUP_PARENT": os.environ.get("LXPY_CGROUP_PARENT", "lxpy-test")}
    apt_env = {**env, "DEBIAN_FRONTEND": "noninteractive"}
    net_started = False
    try:
        MARKER.write_text(f"{unique}\n")
        _sysrun("apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confold",
                str(debs[0]), env=apt_env, timeout=600)
        assert _dpkg_installed("lxpy")
        from lxpy import __version__
        assert _sysrun("lxpy-ls", "--version", env=env).stdout.strip() == f"lxpy {__version__}"
        assert Path("/usr/bin/lxpy-start").read_text().startswith("#!/usr/bin/python3")
        where = _sysrun("/usr/bin/python3", "-c", "import lxpy; print(lxpy.__file__)",
                        env=env).stdout.strip()
        assert where == "/usr/lib/python3/dist-packages/lxpy/__init__.py"
        _sysrun("lxpy-checkconfig", env=env)
        for page in (["lxpy-autostart"], ["lxpy-create"], ["5", "lxpy.toml"],
                     ["5", "lxpy-config"], ["5", "lxpy.container.toml"]):
            _sysrun("man", "-w", *page, env=env)
        assert Path("/etc/lxpy/lxpy.toml").is_file()
        assert "/etc/lxpy/lxpy.toml" in _sysrun("dpkg-query", "-W", "-f=${Conffiles}", "lxpy",
                                               env=env).stdout
        assert Path("/run/lxpy").is_dir()          # tmpfiles at postinst
        # lxpy's options for Debian's lxcfs (proc.lxcfs): CPU quotas count, loadavg per cgroup
        dropin = Path("/lib/systemd/system/lxcfs.service.d/lxpy.conf")
        assert "--enable-cfs --enable-loadavg" in dropin.read_text()
        # the kernel limits for many containers: a conffile, applied at install
        sysctl = Path("/etc/sysctl.d/60-lxpy.conf")
        assert sysctl.read_bytes() == (REPO / "packaging/sysctl.d/60-lxpy.conf").read_bytes()
        assert str(sysctl) in _sysrun("dpkg-query", "-W", "-f=${Conffiles}", "lxpy",
                                      env=env).stdout
        assert int(Path("/proc/sys/fs/inotify/max_user_instances").read_text()) >= 1048576
        if shutil.which("systemd-analyze", path=SYS_PATH):
            # the installed units, their real binaries and man pages
            v = _sysrun("systemd-analyze", "verify", "lxpy.service", "lxpy-net.service",
                        "lxpy@web1.service", "lxcfs.service", env=env, check=False)
            assert v.returncode == 0 and v.stderr.strip() == "", v.stderr

        # a container, made and listed by the package's commands, in the default lxpath
        _sysrun("lxpy-create", "-n", unique, "-t", "busybox", env=env, timeout=300)
        assert unique in _sysrun("lxpy-ls", "-1", env=env).stdout.split()
        _sysrun("lxpy-config", "-n", unique, "set", "autostart.enabled", "true", env=env)
        _sysrun("lxpy-config", "-n", unique, "set", "autostart.delay", "3", env=env)
        listed = _sysrun("lxpy-autostart", "-L", env=env).stdout.splitlines()
        assert f"{unique} 3" in listed
        _sysrun("lxpy-snapshot", "-n", unique, env=env)

        # run it on the managed bridge: Debian's python3-pyroute2, nft, dnsmasq; the monitor
        # under /usr/bin/python3 -I -S
        _sysrun("lxpy-net", "start", env=env)
        net_started = True
        with open(lp / unique / "config.toml", "a") as f:
            f.write(f'\n[[net]]\ntype = "veth"\nlink = "{br}"\nipv4 = ["{sub}.50/24"]\n'
                    f'gateway4 = "{sub}.1"\n')
        _sysrun("lxpy-start", "-n", unique, env=env)
        addr = _sysrun("lxpy-attach", "-n", unique, "--", "ip", "-4", "addr", "show", "eth0",
                       env=env).stdout
        assert f"{sub}.50/24" in addr
        _sysrun("lxpy-stop", "-n", unique, "-t", "20", env=env)
        _sysrun("lxpy-net", "stop", env=env)
        net_started = False

        comp = "/usr/share/bash-completion/completions/lxpy-ls"
        assert unique in _complete(["lxpy-start", "-n", ""], env, comp)
        assert unique in _complete(["lxpy-info", unique[:4]], env, comp)
        assert _complete(["lxpy-snapshot", "-n", unique, "-r", ""], env, comp) == ["snap0"]
        assert "busybox" in _complete(["lxpy-create", "-n", "x", "-t", "b"], env, comp)
        assert _complete(["lxpy-ls", "--fa"], env, comp) == ["--fancy"]
        for cmd in Path("/usr/bin").glob("lxpy-*"):
            assert Path(f"/usr/share/bash-completion/completions/{cmd.name}").exists()

        _sysrun("dpkg", "-r", "lxpy", env=apt_env)
        assert not _dpkg_installed("lxpy")
        assert not list(Path("/usr/bin").glob("lxpy*"))
        assert not Path("/usr/lib/python3/dist-packages/lxpy").exists()
        assert not list(Path("/usr/share/bash-completion/completions").glob("lxpy*"))
        assert not Path("/lib/systemd/system/lxpy@.service").exists()
        assert not dropin.exists()
        # the containers' data is the admin's: still there
        assert (lp / unique / "config.toml").is_file()
        assert (lp / unique / "snaps" / "snap0").is_dir()
    finally:
        if net_started:
            subprocess.run(["lxpy-net", "stop"], capture_output=True, env=env, timeout=120)
        subprocess.run(["ip", "link", "del", br], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", f"lxpy-{br}"], capture_output=True)
        if _dpkg_installed("lxpy") or subprocess.run(
                ["dpkg-query", "-W", "lxpy"], capture_output=True).returncode == 0:
            subprocess.run(["dpkg", "-P", "lxpy"], capture_output=True, env=apt_env,
                           timeout=300)
        if (lp / unique).exists():
            for cmd in (["lxpy-stop", "-k"], ["lxpy-destroy", "-f", "-s"]):
                subprocess.run([str(BIN / cmd[0]), "-P", str(lp), "-n", unique, *cmd[1:]],
                               capture_output=True, timeout=120)
        _restore_host(host)
        MARKER.unlink(missing_ok=True)
    # the repo's venv is untouched
    r = subprocess.run([str(BIN / "lxpy-ls"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "lxpy" in r.stdout
    assert not list(Path("/usr/bin").glob("lxpy*"))

"""busybox and local (tarball) rootfs: cache builds, imports, hostile archives, planted
symlinks, concurrent creates and --flush-cache, through the real commands as root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from lxpy import bootstrap, templates

PY = sys.executable


def _sha(p: str) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _one_line_error(r, status=1):
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def _listed(lxpy) -> list[str]:
    return [c["name"] for c in json.loads(lxpy("ls", "--format", "json").stdout)]


@pytest.fixture
def bb_base(tmp_path) -> Path:
    t = templates.find("busybox")
    return bootstrap.ensure_cached(t, t.parse_options([]), tmp_path / "cache")


def test_busybox_cache_is_a_working_rootfs(bb_base):
    assert (bb_base / "bin/busybox").is_file()
    assert os.readlink(bb_base / "sbin/init") == "/bin/busybox"
    assert os.readlink(bb_base / "bin/sh") == "/bin/busybox"
    assert "::sysinit:/etc/init.d/rcS" in (bb_base / "etc/inittab").read_text()
    assert (bb_base / "etc/passwd").read_text().startswith("root:x:0:0:")
    assert (bb_base / "tmp").stat().st_mode & 0o7777 == 0o1777
    # a static busybox runs on its own in the tree
    r = subprocess.run(["chroot", str(bb_base), "/bin/sh", "-c", "ls /sbin/init && echo ok"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr


def test_busybox_cache_is_reused(bb_base, tmp_path):
    t = templates.find("busybox")
    again = bootstrap.ensure_cached(t, t.parse_options([]), tmp_path / "cache")
    assert again == bb_base
    entry = bb_base.parent
    assert [v.name for v in entry.iterdir() if v.name.startswith("rootfs.")] == [bb_base.name]


def test_concurrent_creates_bootstrap_once(tmp_path):
    cache = tmp_path / "cache"
    code = ("import sys; from pathlib import Path; from lxpy import bootstrap, templates;"
            "t = templates.find('busybox');"
            "print(bootstrap.ensure_cached(t, {}, Path(sys.argv[1])))")
    procs = [subprocess.Popen([PY, "-c", code, str(cache)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    entries = list((cache / "busybox").iterdir())
    assert len(entries) == 1
    versions = [v for v in entries[0].iterdir() if v.name.startswith("rootfs.")]
    assert len(versions) == 1, versions
    assert not [v for v in entries[0].iterdir() if v.name.startswith(".build-")]


def test_busybox_create_renders_into_the_rootfs(lxpy, lxpath, cache_dir):
    lxpy("create", "-n", "bbr", "-t", "busybox", "-B", "dir")
    root = lxpath / "bbr" / "rootfs"
    assert (root / "etc/hostname").read_text() == "bbr\n"
    assert "bbr" in (root / "etc/hosts").read_text()
    rcs = root / "etc/init.d/rcS"
    assert rcs.stat().st_mode & 0o111 and "ip link set lo up" in rcs.read_text()
    assert 'include = ["busybox"]' in (lxpath / "bbr/config.toml").read_text()
    assert lxpy("config", "-n", "bbr", "get", "init.halt_signal").stdout.strip() == "SIGUSR2"
    assert any(p.name.startswith("rootfs.") for p in (cache_dir / "busybox").glob("*/*"))


def test_template_help_lists_options(lxpy):
    r = lxpy("create", "-t", "debian", "-h", lxpath=False)
    assert "--release" in r.stdout and "bookworm" in r.stdout and "--packages" in r.stdout


def test_unknown_template_option(lxpy, lxpath):
    r = lxpy("create", "-n", "x", "-t", "debian", "--", "--relase", "sid", check=False)
    line = _one_line_error(r, 2)
    assert "--relase" in line and "--release" in line
    assert _listed(lxpy) == []


# -- local: tarballs ------------------------------------------------------------


def _tar_of(tree: Path, out: Path, compress: str = "xz") -> Path:
    cmd = ["tar", "--numeric-owner", "-C", str(tree), "-c", "-f", str(out)]
    cmd += {"xz": ["-J"], "gz": ["-z"], "zst": ["--zstd"]}[compress]
    subprocess.run(cmd + ["."], check=True, timeout=120)
    return out


@pytest.mark.parametrize("compress", ["xz", "gz", "zst"])
def test_local_tarball_import(lxpy, lxpath, bb_base, tmp_path, cache_dir, compress):
    if compress == "zst" and shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    f = _tar_of(bb_base, tmp_path / f"rootfs.tar.{compress}", compress)
    lxpy("create", "-n", "imp", "-t", "local", "-B", "dir", "--", "--file", str(f))
    root = lxpath / "imp" / "rootfs"
    assert (root / "bin/busybox").stat().st_mode & 0o111
    assert os.readlink(root / "sbin/init") == "/bin/busybox"
    assert (root / "etc/hostname").read_text() == "imp\n"
    key = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    assert (cache_dir / "local" / key / "rootfs").is_dir()
    assert "imp" in _listed(lxpy)


def _hostile(path: Path, members) -> Path:
    with tarfile.open(path, "w:xz") as tf:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(payload)
                tf.addfile(ti, io.BytesIO(payload))
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
                tf.addfile(ti)
    return path


@pytest.mark.parametrize("members", [
    [("/tmp/lxpy-pwned-abs", "file", b"x")],
    [("../../../../tmp/lxpy-pwned-dotdot", "file", b"x")],
    [("etc", "sym", "/tmp"), ("etc/lxpy-pwned-link", "file", b"x")],
], ids=["absolute", "dotdot", "symlink-then-file"])
def test_hostile_tarball_is_refused_and_leaves_nothing(lxpy, lxpath, tmp_path, cache_dir,
                                                       members):
    f = _hostile(tmp_path / "evil.tar.xz", members)
    r = lxpy("create", "-n", "evil", "-t", "local", "--", "--file", str(f), check=False)
    line = _one_line_error(r)
    assert "refusing" in line
    for p in ("/tmp/lxpy-pwned-abs", "/tmp/lxpy-pwned-dotdot", "/tmp/lxpy-pwned-link"):
        assert not os.path.exists(p)
    assert _listed(lxpy) == []
    assert not (lxpath / "evil").exists()
    key = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    entry = cache_dir / "local" / key
    assert not entry.exists() or sorted(os.listdir(entry)) == [".lock"]
    # a retry with a good tarball works
    good = _hostile(tmp_path / "good.tar.xz", [("etc", "dir", None),
                                               ("etc/os-release", "file", b"ID=x\n")])
    lxpy("create", "-n", "evil", "-t", "local", "-B", "dir", "--", "--file", str(good))
    assert (lxpath / "evil/rootfs/etc/hostname").read_text() == "evil\n"


def test_planted_file_symlink_in_a_tarball_cannot_redirect_a_write(lxpy, lxpath, tmp_path):
    before = _sha("/etc/shadow"), _sha("/etc/hostname")
    f = _hostile(tmp_path / "planted.tar.xz", [
        ("etc", "dir", None), ("etc/hostname", "sym", "/etc/shadow"),
        ("etc/hosts", "sym", "../../../../etc/hostname")])
    r = lxpy("create", "-n", "pl", "-t", "local", "-B", "dir", "--", "--file", str(f),
             check=False)
    # the relative link climbs out of the rootfs: refused at import
    assert "refusing" in _one_line_error(r)
    f = _hostile(tmp_path / "planted2.tar.xz", [
        ("etc", "dir", None), ("etc/hostname", "sym", "/etc/shadow")])
    lxpy("create", "-n", "pl", "-t", "local", "-B", "dir", "--", "--file", str(f))
    assert (_sha("/etc/shadow"), _sha("/etc/hostname")) == before
    h = lxpath / "pl/rootfs/etc/hostname"
    assert not h.is_symlink() and h.read_text() == "pl\n"


def test_planted_etc_symlink_refuses_the_create(lxpy, lxpath, tmp_path):
    before = _sha("/etc/hostname"), sorted(os.listdir("/etc"))
    f = _hostile(tmp_path / "etclink.tar.xz", [("etc", "sym", "/etc"),
                                               ("bin", "dir", None)])
    r = lxpy("create", "-n", "el", "-t", "local", "--", "--file", str(f), check=False)
    line = _one_line_error(r)
    assert "el" in line or "etc" in line
    assert (_sha("/etc/hostname"), sorted(os.listdir("/etc"))) == before
    assert _listed(lxpy) == []
    assert not [p for p in os.listdir(lxpath) if not p.startswith(".")]


def test_flush_cache_rebuilds_without_breaking_overlay_containers(lxpy, lxpath, cache_dir):
    lxpy("create", "-n", "old", "-t", "busybox", "-B", "overlay")
    lower = lxpy("config", "-n", "old", "get", "rootfs.lower").stdout.strip()
    assert Path(lower).is_dir()
    lxpy("create", "-n", "new", "-t", "busybox", "-B", "overlay", "--flush-cache")
    lower2 = lxpy("config", "-n", "new", "get", "rootfs.lower").stdout.strip()
    assert lower2 != lower
    assert Path(lower).is_dir() and (Path(lower) / "bin/busybox").exists()
    assert Path(lower2).parent == Path(lower).parent
    assert (Path(lower).parent / "rootfs").resolve() == Path(lower2)

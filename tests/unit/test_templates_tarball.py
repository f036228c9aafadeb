"""The local template's tarball import: hostile archives are refused, good ones kept whole."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

import pytest

from lxpy.bootstrap import tarball
from lxpy.errors import BootstrapError


def _tar(path, members, mode="w:xz"):
    """members: (name, kind, payload): kind file|dir|sym|hard."""
    with tarfile.open(path, mode) as tf:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode()
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
            tf.addfile(ti)
    return path


@pytest.fixture
def world(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("HOST\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    yield tmp_path, dest, host
    assert (host / "passwd").read_text() == "HOST\n"
    assert sorted(os.listdir(host)) == ["passwd"], "the tarball wrote outside the rootfs"


def test_good_tarball(world):
    tmp, dest, _ = world
    f = _tar(tmp / "ok.tar.xz", [
        ("./", "dir", None), ("./usr", "dir", None), ("./usr/bin", "dir", None),
        ("./usr/bin/tool", "file", "#!/bin/sh\n"), ("./bin", "sym", "usr/bin"),
        ("./etc", "dir", None), ("./etc/localtime", "sym", "/usr/share/zoneinfo/UTC"),
        ("./etc/passwd", "file", "root:x:0:0::/root:/bin/sh\n"),
        ("./etc/passwd-", "hard", "./etc/passwd"),
        ("./bin/inside-via-link", "file", "x"),
    ])
    n = tarball.extract(f, dest)
    assert n >= 9
    assert (dest / "usr/bin/tool").read_text() == "#!/bin/sh\n"
    assert os.readlink(dest / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert (dest / "etc/passwd").stat().st_ino == (dest / "etc/passwd-").stat().st_ino
    assert (dest / "usr/bin/inside-via-link").read_text() == "x"


@pytest.mark.parametrize("members, word", [
    ([("/etc/passwd", "file", "pwned")], "absolute"),
    ([("../host/passwd", "file", "pwned")], ".."),
    ([("etc/../../host/passwd", "file", "pwned")], ".."),
    ([("etc", "sym", "HOST"), ("etc/passwd", "file", "pwned")], "symlink"),
    ([("etc", "sym", "../host"), ("etc/passwd", "file", "pwned")], "outside"),
    ([("a", "dir", None), ("a/x", "sym", "../../host/passwd")], "outside"),
    ([("a", "hard", "../host/passwd")], ".."),
    ([("a", "hard", "/etc/shadow")], "absolute"),
])
def test_hostile_tarballs_are_refused(world, members, word):
    tmp, dest, host = world
    members = [(n, k, str(host) if p == "HOST" else p) for n, k, p in members]
    f = _tar(tmp / "bad.tar.gz", members, "w:gz")
    with pytest.raises(tarball.UnsafeArchive) as e:
        tarball.extract(f, dest)
    assert word in str(e.value)
    assert "\n" not in str(e.value)


def test_symlink_member_then_file_replacing_it(world):
    """A later regular file at the name of an earlier symlink replaces the link."""
    tmp, dest, host = world
    f = _tar(tmp / "t.tar", [("x", "sym", str(host / "passwd")), ("x", "file", "mine")], "w")
    tarball.extract(f, dest)
    assert (dest / "x").read_text() == "mine" and not (dest / "x").is_symlink()


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd is not installed")
def test_zstd(world):
    tmp, dest, _ = world
    plain = _tar(tmp / "r.tar", [("etc", "dir", None), ("etc/hostname", "file", "z\n")], "w")
    subprocess.run(["zstd", "-q", str(plain), "-o", str(tmp / "r.tar.zst")], check=True)
    tarball.extract(tmp / "r.tar.zst", dest)
    assert (dest / "etc/hostname").read_text() == "z\n"


def test_not_a_tarball(world):
    tmp, dest, _ = world
    f = tmp / "junk.tar.xz"
    f.write_bytes(b"this is not a tarball at all" * 40)
    with pytest.raises(BootstrapError, match="not a tarball"):
        tarball.extract(f, dest)


def test_cache_key_is_the_sha256(tmp_path):
    from lxpy import templates
    f = _tar(tmp_path / "a.tar", [("etc", "dir", None)], "w")
    t = templates.find("local")
    d = tarball.describe(t, t.parse_options(["--file", str(f)]))
    assert d["key"] == tarball.sha256(f)[:16]

"""lxpy-copy -s of a stopped overlay container takes storage/fastclone.py (no pathlib, re,
tomllib or container layer); what it makes is what copy_container makes, and everything
else still goes the usual way."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

from lxpy.config.cache import RACY

from tests.conftest import Runner
from tests.integration.test_copy import config_of, names, read, write
from tests.integration.test_storage_helpers import make_container, make_special_tree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("pathlib", "re", "enum", "tomllib", "typing", "lxpy.container",
         "lxpy.storage.clone", "lxpy.config.loader", "ctypes", "_ctypes")


def copy_in_process(lxpath, *argv: str, env: dict | None = None,
                    fs_of=None) -> tuple[int, list[str]]:
    """lxpy-copy in a fresh `python -I -S`: its status and which HEAVY modules it loaded.
    lxpath None: no -P (the lxpath comes from env; fs_of is where it is). _ctypes (for
    statfs) counts only when the lxpath is on a block device's filesystem (ext4 here), where
    a device number says it is not an overlay."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from lxpy.cli import main; "
            "rc = main('copy', sys.argv[2:]); "
            f"print(rc, *sorted(m for m in {HEAVY!r} if m in sys.modules))")
    where = ["-P", str(lxpath)] if lxpath is not None else []
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code, REPO, *where, *argv],
                       capture_output=True, text=True, check=True, env=env)
    rc, *mods = r.stdout.split("\n")[-2].split()
    if os.major(os.stat(lxpath if lxpath is not None else fs_of).st_dev) == 0:
        mods = [m for m in mods if m != "_ctypes"]
    return int(rc), mods


def assert_remembered(path) -> None:
    """path's config cache entry is keyed by its text, and is the Config the loader makes."""
    import marshal

    from lxpy.config import cache
    from lxpy.config.loader import load
    entry = marshal.loads((path.parent / cache.NAME).read_bytes())
    assert entry["self"] is None and entry["text"] == path.read_text()
    got, want = cache.load(str(path)), load(path)
    assert (got.values, got.mount, got.net, got.files, got.explicit) == \
        (want.values, want.mount, want.net, want.files, want.explicit)


def tree(root) -> dict:
    """Every entry under root: type, mode, owner, and a file's content."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777,
                                             st.st_uid, st.st_gid, data)
    return out


def test_the_usual_snapshot_clone_is_the_fast_one_and_the_same(lxpath, tmp_path):
    run = Runner(lxpath)
    run("create", "-n", "src", "-t", "busybox", "-B", "overlay")
    write(lxpath, "src", "marker", "source\n")
    # the logs a start in this (not the system's) lxpath leaves: not copied, either way
    (lxpath / "src" / "log").mkdir()
    (lxpath / "src" / "log" / "lxpy.log").write_text("the source's history\n")
    run("copy", "-n", "src", "-N", "first", "-s")
    # a system config naming this lxpath, for a clone without -P
    sysconf = tmp_path / "lxpy.toml"
    sysconf.write_text(f'lxpath = "{lxpath}"\n')
    env = {k: v for k, v in os.environ.items() if k != "LXPY_PATH"}
    env["LXPY_CONFIG"] = str(sysconf)
    time.sleep(RACY + 0.1)     # the configs are old enough for their caches
    # the usual way, asked for (-l), and the fast one, of the same sealed source
    run("copy", "-n", "src", "-N", "slow", "-s", "-l", "ERROR")
    rc, heavy = copy_in_process(lxpath, "-n", "src", "-N", "fast", "-s", "-q")
    assert rc == 0 and heavy == []
    # no -P: the lxpath of the system config, from its values cached in /run/lxpy
    from lxpy.config import cache
    subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; sys.path.insert(0, "
                    "sys.argv[1]); from lxpy import paths; paths.system_config()", REPO],
                   env=env, check=True)
    try:
        rc, heavy = copy_in_process(None, "-n", "src", "-N", "nop", "-s", "-q", env=env,
                                    fs_of=lxpath)
    finally:
        os.unlink(cache._system_entry(str(sysconf), "/run/lxpy"))
    assert rc == 0 and heavy == []
    run("destroy", "-n", "nop")
    assert names(run) == ["fast", "first", "slow", "src"]
    f, s = config_of(lxpath, "fast"), config_of(lxpath, "slow")
    assert f["hostname"] == "fast" and s["hostname"] == "slow"
    assert f["rootfs"] == s["rootfs"] and f["rootfs"]["origin"] == "src"
    for c in (f, s):
        c.pop("hostname")
        for n in c.get("net", []):
            n.pop("hwaddr", None)
    assert f == s
    text = (lxpath / "fast" / "config.toml").read_text()
    assert text.replace('"fast"', '"slow"').split("\n[rootfs]")[0] == \
        (lxpath / "slow" / "config.toml").read_text().split("\n[rootfs]")[0]
    tf, ts = tree(lxpath / "fast"), tree(lxpath / "slow")
    for t, name in ((tf, "fast"), (ts, "slow")):
        for k in (".config.cache", ".config.slots"):
            t.pop(k, None)
        t.pop("config.toml")
        assert t["delta/etc/hostname"][4] == f"{name}\n".encode()
        t["delta/etc/hostname"] = t["delta/etc/hostname"][:4]
        t["delta/etc/hosts"] = t["delta/etc/hosts"][:4] + (
            t["delta/etc/hosts"][4].replace(name.encode(), b"NAME"),)
    assert tf == ts
    assert not any(k == "log" or k.startswith("log/") for k in tf)
    assert os.stat(lxpath / "fast").st_mode == os.stat(lxpath / "slow").st_mode
    assert read(lxpath, "fast", "marker") == "source\n"
    # the clone's Config, made from the source's and kept in its config cache (keyed by
    # the text), is what its file says
    assert_remembered(lxpath / "fast" / "config.toml")
    # a clone of the clone: the fast way too, sealing it first (its delta holds its new
    # /etc/hostname); its config is parsed, being too new for the config cache
    rc, heavy = copy_in_process(lxpath, "-n", "fast", "-N", "fast2", "-s", "-q")
    assert rc == 0 and "lxpy.storage.clone" not in heavy
    c2 = config_of(lxpath, "fast2")
    assert c2["rootfs"]["origin"] == "fast" and c2["hostname"] == "fast2"
    assert c2["rootfs"]["lower"].startswith(f"{lxpath}/fast/layers/0:{lxpath}/src/layers/0:")
    assert config_of(lxpath, "fast")["rootfs"]["lower"].startswith("layers/0:")
    assert read(lxpath, "fast2", "etc/hostname") == "fast2\n"
    assert read(lxpath, "fast", "etc/hostname") == "fast\n"
    assert read(lxpath, "fast2", "marker") == "source\n"


def test_what_the_fast_way_does_not_do_goes_the_usual_way(lxpath, tmp_path):
    run = Runner(lxpath)
    run("create", "-n", "src", "-t", "busybox", "-B", "overlay")
    run("copy", "-n", "src", "-N", "seal", "-s")
    # an extra file: copy_container's, and it does it (the seal too)
    write(lxpath, "src", "marker", "again\n")
    (lxpath / "src" / "notes.txt").write_text("mine\n")
    rc, heavy = copy_in_process(lxpath, "-n", "src", "-N", "a", "-s", "-q")
    assert rc == 0 and "lxpy.storage.clone" in heavy
    assert read(lxpath, "a", "marker") == "again\n"
    assert (lxpath / "a" / "notes.txt").read_text() == "mine\n"
    # the existing name, a busy lock: the usual errors
    r = run("copy", "-n", "src", "-N", "a", "-s", check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert sorted(names(run)) == ["a", "seal", "src"]
    assert not [e for e in os.listdir(lxpath) if e.startswith(".tmp-")]


def test_a_symlinked_hostname_in_a_lower_is_left_to_the_mount(lxpath, tmp_path):
    """The copy-up by hand declines a symlink at /etc/hostname: the usual way mounts the
    overlay and writes through the symlink-safe writer, never onto the host."""
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    base = tmp_path / "base"
    make_special_tree(base)
    for f in ("hostname", "hosts"):
        os.unlink(base / "etc" / f)
        os.symlink(str(victim), base / "etc" / f)
    make_container(lxpath, "src", "overlay", base)
    rc, heavy = copy_in_process(lxpath, "-n", "src", "-N", "c1", "-s", "-q")
    assert rc == 0 and "lxpy.storage.clone" in heavy
    assert victim.read_text() == "host file\n"
    assert read(lxpath, "c1", "etc/hostname") == "c1\n"


def test_the_fast_seal_is_the_usual_seal(lxpath):
    run = Runner(lxpath)
    for n in ("a", "b"):
        run("create", "-n", n, "-t", "busybox", "-B", "overlay")
        write(lxpath, n, "marker", "data\n")
        run("copy", "-n", n, "-N", f"{n}1", "-s")       # each sealed once already
        write(lxpath, n, "marker2", "more\n")
    rc, heavy = copy_in_process(lxpath, "-n", "a", "-N", "a2", "-s", "-q")
    assert rc == 0 and "lxpy.storage.clone" not in heavy
    run("copy", "-n", "b", "-N", "b2", "-s", "-l", "ERROR")
    ca, cb = config_of(lxpath, "a"), config_of(lxpath, "b")
    assert ca["rootfs"]["lower"].startswith("layers/1:layers/0:")
    assert ca["rootfs"]["lower"] == cb["rootfs"]["lower"]
    assert (lxpath / "a" / "config.toml").read_text().replace('"a"', '"b"').replace(
        "container a,", "container b,") == (lxpath / "b" / "config.toml").read_text()
    ta, tb = tree(lxpath / "a"), tree(lxpath / "b")
    for t in (ta, tb):
        for k in (".config.cache", ".config.slots", "config.toml", "delta/etc/hostname",
                  "delta/etc/hosts", "layers/0/etc/hostname", "layers/0/etc/hosts"):
            t.pop(k, None)
        for k in t:                 # what create wrote (with the container's name in it)
            if k.startswith("layers/0/"):
                t[k] = t[k][:4]
    assert ta == tb and "layers/1/marker2" in ta and not os.listdir(lxpath / "a" / "delta")
    for n in ("a", "b", "a2", "b2"):    # the sealed sources and the clones: no parse needed
        assert_remembered(lxpath / n / "config.toml")
    for n in ("a2", "b2"):
        assert read(lxpath, n, "marker2") == "more\n"
        assert read(lxpath, n, "etc/hostname") == f"{n}\n"

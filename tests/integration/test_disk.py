"""limits.disk and lxpy-storage pools, as an admin uses them: a btrfs pool made by
lxpy-storage, a container limited to 100M whose dd stops at the limit while its neighbour
writes on, the limit raised live, and the clear refusal where the filesystem cannot enforce
a limit (this host's ext4 has no project quotas; tests/vm checks ext4 and xfs ones)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lxpy.storage.pool import UNIT_DIR, unit_escape
from tests.conftest import _LXPATHS, BIN, Runner, clear_lxpath
from tests.integration.test_packaging import COMPLETION, _complete

pytestmark = pytest.mark.root

MiB = 1 << 20


def one_line_error(r, status: int, *contains: str) -> str:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    for c in contains:
        assert c in lines[0], lines[0]
    return lines[0]


def storage(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(BIN / "lxpy-storage"), *args], capture_output=True, text=True,
                       timeout=120)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


@pytest.fixture
def storage_root(tmp_path, monkeypatch):
    """LXPY_STORAGE in a temp dir; whatever pool a test leaves is emptied and removed."""
    root = tmp_path / "storage"
    monkeypatch.setenv("LXPY_STORAGE", str(root))
    yield root
    for rec in sorted(root.glob("*.json")) if root.is_dir() else []:
        _LXPATHS.add(str(root / rec.stem))
        clear_lxpath(root / rec.stem)
        storage("rm", rec.stem, check=False)


def quota_of(lx: Runner, name: str) -> dict:
    info = json.loads(lx("info", "-n", name, "--json").stdout)
    return info["disk_quota"]


@pytest.mark.skipif(not shutil.which("mkfs.btrfs"), reason="mkfs.btrfs (btrfs-progs) missing")
def test_btrfs_pool_limits_disk(storage_root):
    storage("create", "pool1", "--driver", "btrfs", "--size", "512M")
    pools = json.loads(storage("ls", "--format", "json").stdout)
    assert [(p["name"], p["driver"], p["mounted"]) for p in pools] == [("pool1", "btrfs", True)]
    path = Path(pools[0]["path"])
    assert path == storage_root / "pool1"
    unit = Path(pools[0]["unit"])
    text = unit.read_text()
    assert f"What={storage_root / 'pool1.img'}" in text and f"Where={path}" in text
    assert (unit.parent / "local-fs.target.wants" / unit.name).resolve() == unit
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    env, comp = dict(os.environ), str(COMPLETION)
    assert _complete(["lxpy-storage", "i"], env, comp) == ["info"]
    assert _complete(["lxpy", "storage", "rm", "po"], env, comp) == ["pool1"]
    _LXPATHS.add(str(path))
    lx = Runner(path)                   # the pool is an lxpath
    for n in ("a", "b"):
        lx("create", "-n", n, "-t", "busybox", "-B", "btrfs")
    r = lx("config", "-n", "a", "set", "limits.disk", "100M")
    assert "enabling quotas" in r.stderr            # said once, when the filesystem needs it
    for n in ("a", "b"):
        lx("start", "-n", n)

    base = quota_of(lx, "a")
    assert base["limit"] == 100 * MiB and base["by"].startswith("btrfs qgroup")
    r = lx("attach", "-n", "a", "--", "sh", "-c",
           "dd if=/dev/zero of=/big bs=1M count=200; s=$?; wc -c < /big; exit $s", check=False)
    assert r.returncode != 0 and "Disk quota exceeded" in r.stderr, r.stderr
    written = int(r.stdout.split()[-1])
    q = quota_of(lx, "a")
    assert abs(q["used"] - 100 * MiB) <= MiB, q             # stopped at the limit, within 1%
    assert abs(base["used"] + written - 100 * MiB) <= MiB, (base, written)

    # the neighbour in the same pool writes past a's limit
    lx("attach", "-n", "b", "--", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=120")

    # exclusive bytes: a snapshot clone of b is not charged for the 120M it shares with b
    lx("copy", "-n", "b", "-N", "c", "-s", "-a")
    lx("config", "-n", "c", "set", "limits.disk", "50M")
    assert quota_of(lx, "c")["used"] < MiB
    lx("destroy", "-n", "c", "-f")

    info = lx("info", "-n", "a").stdout
    line = next(x for x in info.splitlines() if x.startswith("Disk limit:"))
    assert "used of 100.00 MiB" in line, info

    # raised live: the write goes on
    lx("config", "-n", "a", "set", "limits.disk", "150M")
    lx("attach", "-n", "a", "--", "dd", "if=/dev/zero", "of=/more", "bs=1M", "count=30")
    assert quota_of(lx, "a")["limit"] == 150 * MiB

    lx("config", "-n", "a", "unset", "limits.disk")          # lifted, on the filesystem too
    assert "Disk limit:" not in lx("info", "-n", "a").stdout
    r = subprocess.run(["btrfs", "qgroup", "show", "-ref", "--raw", "-f",
                        str(path / "a" / "rootfs")], capture_output=True, text=True)
    assert r.stdout.splitlines()[-1].split()[4] == "none", r.stdout

    one_line_error(storage("rm", "pool1", check=False), 1, "holds containers: a, b")
    for n in ("a", "b"):
        lx("stop", "-n", n, "-k")
        lx("destroy", "-n", n, "-f")
    storage("rm", "pool1")
    assert not path.exists() and not (storage_root / "pool1.img").exists()
    assert not unit.exists() and not (unit.parent / "local-fs.target.wants" / unit.name).exists()
    assert json.loads(storage("ls", "--format", "json").stdout) == []
    assert str(storage_root / "pool1.img") not in subprocess.run(
        ["losetup", "-a"], capture_output=True, text=True).stdout


def test_dir_on_ext4_refuses_limits_disk(lxpy, lxpath):
    """This host's ext4 has no project quotas: a clear error at config set and at start,
    nothing changed, nothing started."""
    lxpy("create", "-n", "d", "-t", "busybox", "-B", "dir")
    cfg = lxpath / "d" / "config.toml"
    before = cfg.read_text()
    line = one_line_error(lxpy("config", "-n", "d", "set", "limits.disk", "100M", check=False),
                          1, "limits.disk cannot be enforced", "project quotas",
                          "lxpy-storage create")
    assert str(lxpath / "d" / "rootfs") in line
    assert cfg.read_text() == before
    one_line_error(lxpy("config", "-n", "d", "set", "limits.disk", "100X", check=False), 1,
                   "limits.disk: '100X' is not a size")
    with open(cfg, "a") as f:                       # as an admin edits it by hand
        f.write('\n[limits]\ndisk = "100M"\n')
    one_line_error(lxpy("start", "-n", "d", check=False), 1, "limits.disk cannot be enforced")
    assert "STOPPED" in lxpy("info", "-n", "d", "-s").stdout
    checks = json.loads(subprocess.run([str(BIN / "lxpy-checkconfig"), "--format", "json"],
                                       capture_output=True, text=True).stdout)
    by_name = {c["name"]: c for c in checks}
    assert by_name["limits.disk on btrfs (qgroups)"]["ok"] is True


def _kernel_has(option: str) -> bool:
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return f"{option}=y" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not shutil.which("mkfs.xfs"), reason="mkfs.xfs (xfsprogs) missing")
def test_xfs_pool_here(storage_root):
    """An xfs pool needs xfs project quotas: without them (this host's kernel), a clear error
    and nothing left; with them, a pool (tests/vm limits a container in one)."""
    r = storage("create", "x1", "--driver", "xfs", "--size", "400M", check=False)
    if _kernel_has("CONFIG_XFS_QUOTA"):
        assert r.returncode == 0, r.stderr
        storage("rm", "x1")
    else:
        one_line_error(r, 1, "no CONFIG_XFS_QUOTA", "--driver btrfs")
    assert not storage_root.exists() or sorted(os.listdir(storage_root)) == []
    assert not (UNIT_DIR / f"{unit_escape(storage_root / 'x1')}.mount").exists()


def test_storage_usage_errors(storage_root):
    one_line_error(storage("create", "p", "--driver", "zfs", "--size", "1G", check=False), 2,
                   "invalid choice")
    one_line_error(storage("create", "p", "--driver", "btrfs", "--size", "1M", check=False), 2,
                   "at least 128M")
    one_line_error(storage("create", "p/x", "--driver", "btrfs", "--size", "1G", check=False),
                   2, "not a pool name")
    one_line_error(storage("rm", "nope", check=False), 1, "no storage pool 'nope'")
    one_line_error(storage("info", "nope", check=False), 1, "lxpy-storage ls")


# -- project quotas (ext4, xfs): this host's kernel cannot mount them; tests/vm runs these
# in Debian's kernel, where they must pass ---------------------------------------------

PROJECT_FS = {"ext4": ("mkfs.ext4", "-q", "-O", "quota,project"), "xfs": ("mkfs.xfs", "-q")}


@pytest.fixture(params=sorted(PROJECT_FS))
def project_lxpath(request, tmp_path):
    """An lxpath on a loop-file ext4 or xfs mounted with prjquota."""
    fs = request.param
    mkfs = PROJECT_FS[fs]
    if not shutil.which(mkfs[0]):
        pytest.skip(f"{mkfs[0]} is not installed")
    # the image on a disk: a guest's /tmp is a tmpfs in its RAM, which the writes would fill
    images = Path(tempfile.mkdtemp(prefix="lxpy-test-disk-", dir="/var/tmp"))
    img, mnt = images / f"{fs}.img", tmp_path / fs
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(512 * MiB)
    r = subprocess.run([*mkfs, str(img)], capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(images)
        raise AssertionError(f"{mkfs[0]}: {r.stderr}")
    r = subprocess.run(["mount", "-o", "loop,prjquota", str(img), str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(images)
        pytest.skip(f"this kernel cannot mount {fs} with project quotas (tests/vm runs this): "
                    f"{r.stderr.strip().splitlines()[0]}")
    lx = mnt / "lxpath"
    lx.mkdir()
    _LXPATHS.add(str(lx))
    try:
        yield lx, fs
    finally:
        clear_lxpath(lx)
        subprocess.run(["umount", str(mnt)], capture_output=True)   # autoclear: loop goes
        shutil.rmtree(images)


@pytest.mark.parametrize("backend", ["dir", "overlay"])
def test_project_quota_container(project_lxpath, backend):
    path, fs = project_lxpath
    lx = Runner(path)
    for n in ("q", "r"):
        lx("create", "-n", n, "-t", "busybox", "-B", backend)
    if fs == "ext4":        # a privileged root holds CAP_SYS_RESOURCE: ext4 lets it past
        one_line_error(lx("config", "-n", "q", "set", "limits.disk", "100M", check=False), 1,
                       "CAP_SYS_RESOURCE", "security.cap_drop")
        drop = json.loads(lx("config", "-n", "q", "get", "security.cap_drop",
                             "--format", "json").stdout)
        lx("config", "-n", "q", "set", "security.cap_drop", json.dumps(drop + ["sys_resource"]))
    lx("config", "-n", "q", "set", "limits.disk", "100M")
    for n in ("q", "r"):
        lx("start", "-n", n)
    base = quota_of(lx, "q")
    assert base["limit"] == 100 * MiB and base["by"] == "project quota", base
    df = lx("attach", "-n", "q", "--", "df", "-k", "/").stdout.splitlines()[-1].split()
    assert abs(int(df[1]) - 100 * 1024) <= 1024, df        # df / shows the limit
    r = lx("attach", "-n", "q", "--", "sh", "-c",
           "dd if=/dev/zero of=/big bs=64k count=3200; s=$?; wc -c < /big; exit $s",
           check=False)
    # ext4 says EDQUOT, xfs ENOSPC for a full project
    assert r.returncode != 0, (fs, r.stderr)
    assert "Disk quota exceeded" in r.stderr or "No space left" in r.stderr, (fs, r.stderr)
    q = quota_of(lx, "q")
    assert abs(q["used"] - 100 * MiB) <= MiB, q             # at the limit, within 1%
    lx("attach", "-n", "r", "--", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=120")
    lx("config", "-n", "q", "set", "limits.disk", "150M")    # live: the write goes on
    lx("attach", "-n", "q", "--", "dd", "if=/dev/zero", "of=/more", "bs=1M", "count=30")
    assert "used of 150.00 MiB (project quota)" in lx("info", "-n", "q").stdout
    for n in ("q", "r"):
        lx("stop", "-n", n, "-k")

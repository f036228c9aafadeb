"""Shared pieces of the storage, copy and snapshot tests (imported by them; no tests here):
a btrfs lxpath on a loop file, a whole-tree checksum, a tree with every kind of file."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True)


@pytest.fixture
def btrfs_lxpath(tmp_path):
    """An lxpath on a btrfs filesystem in a loop file; unmounted and detached afterwards,
    even when the test fails."""
    if not shutil.which("mkfs.btrfs"):
        pytest.skip("mkfs.btrfs (btrfs-progs) is not installed")
    img = tmp_path / "btrfs.img"
    mnt = tmp_path / "btrfs"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(512 << 20)
    r = _run("mkfs.btrfs", "-q", str(img))
    if r.returncode != 0:
        pytest.skip(f"mkfs.btrfs failed: {r.stderr.strip()}")
    r = _run("mount", "-o", "loop", str(img), str(mnt))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a btrfs loop file: {r.stderr.strip()}")
    lx = mnt / "lxpath"
    lx.mkdir()
    try:
        yield lx
    finally:
        from lxpy.linux.mount import MNT_DETACH, mounts_under, umount2
        for mp in mounts_under(mnt):
            if mp != str(mnt):
                try:
                    umount2(mp, MNT_DETACH)
                except OSError:
                    pass
        # the loop device goes away with the last unmount (mount -o loop sets autoclear)
        loops = _run("losetup", "-j", str(img)).stdout
        _run("umount", str(mnt))
        for line in loops.splitlines():
            _run("losetup", "-d", line.split(":")[0])


def tree_sum(root: Path, with_dir_times: bool = True, file_times: bool = True) -> str:
    """A checksum of a whole tree: names, types, modes, owners, sizes, contents, link
    targets, device numbers, xattrs, file mtimes, hard link groups."""
    h = hashlib.sha256()
    inodes: dict[tuple[int, int], str] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [""] + sorted(filenames) + dirnames:
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            rec = [rel, oct(st.st_mode), st.st_uid, st.st_gid]
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in inodes:
                    rec += ["link", inodes[key]]
                else:
                    inodes[key] = rel
                    with open(p, "rb") as f:
                        rec += [st.st_size, hashlib.sha256(f.read()).hexdigest()]
                if file_times:
                    rec.append(st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                rec.append(os.readlink(p))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                rec.append(st.st_rdev)
            elif stat.S_ISDIR(st.st_mode) and with_dir_times and name:
                rec.append(st.st_mtime_ns)
            try:
                for x in sorted(os.listxattr(p, follow_symlinks=False)):
                    rec.append((x, os.getxattr(p, x, follow_symlinks=False)))
            except OSError:
                pass
            h.update(repr(rec).encode())
    return h.hexdigest()


def container_sum(lxpath: Path, name: str, file_times: bool = True) -> str:
    """The checksum of a container's tree as the container sees it (overlays mounted)."""
    from lxpy.config.loader import load
    from lxpy.storage import for_config
    cdir = lxpath / name
    cfg = load(cdir / "config.toml")
    with for_config(cfg).mounted(cdir, cfg) as root:
        return tree_sum(root, with_dir_times=False, file_times=file_times)


def make_special_tree(root: Path) -> None:
    """A tree with owners, modes, xattrs, an ACL, hard links, a sparse file, device nodes,
    a fifo and a socket."""
    root.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("orig\n")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 orig\n")
    f = root / "owned"
    f.write_text("owned by 1234:5678\n")
    os.chown(f, 1234, 5678)
    os.chmod(f, 0o4750)
    d = root / "sticky"
    d.mkdir()
    os.chmod(d, 0o1777)
    os.chown(d, 42, 43)
    x = root / "xattr"
    x.write_text("x")
    os.setxattr(x, "user.lxpy", b"hello")
    os.setxattr(x, "trusted.lxpy", b"root only")
    acl = root / "acl"
    acl.write_text("acl")
    if shutil.which("setfacl"):
        subprocess.run(["setfacl", "-m", "u:1000:rw", str(acl)], check=True)
    else:  # system.posix_acl_access for u::rw-,u:1000:rw-,g::r--,m::rw-,o::r--
        os.setxattr(acl, "system.posix_acl_access", bytes.fromhex(
            "02000000" "01000600ffffffff" "02000600e8030000" "04000400ffffffff"
            "10000600ffffffff" "20000400ffffffff"))
    (root / "a").write_text("hard linked\n")
    os.link(root / "a", root / "b")
    with open(root / "sparse", "wb") as s:
        s.seek(16 << 20)
        s.write(b"end")
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "loop9", 0o660 | stat.S_IFBLK, os.makedev(7, 9))
    os.mkfifo(root / "fifo")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "sock"))
    s.close()
    os.symlink("/etc/shadow", root / "abs-link")
    os.symlink("etc/hostname", root / "rel-link")


def make_container(lxpath: Path, name: str, backend: str, base: Path,
                   extra: str = "") -> Path:
    """A container made by hand from base with the given backend (no template needed)."""
    from lxpy import storage
    lxpath.mkdir(parents=True, exist_ok=True)
    cdir = lxpath / name
    cdir.mkdir()
    keys = storage.get(backend).create_from(base, cdir)
    rootfs = "\n".join(f'{k.removeprefix("rootfs.")} = "{v}"' for k, v in keys.items())
    (cdir / "config.toml").write_text(
        f'# made by the storage tests\nhostname = "{name}"\n[rootfs]\n{rootfs}\n'
        '\n[[net]]\ntype = "veth"\nlink = "lxpybr0"\nhwaddr = "00:16:3e:12:34:56"\n' + extra)
    return cdir

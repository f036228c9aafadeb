"""A rootfs from a tarball (tar, tar.gz, tar.xz, tar.bz2, tar.zst), keyed by its sha256.

Members are checked before anything is written: an absolute name, a `..` that climbs
out, a path that goes through a symlink, a hard link to something outside, or a
relative symlink whose target climbs out of the root are refused, and the whole import
fails (nothing is left: it happens in the cache's temp dir). Owners (numeric, as in the
archive), modes (setuid included) and device nodes are kept: a rootfs needs them, and we
run as root. Absolute symlink targets are kept as they are: inside the container they
point into the container (and lxpy.safefs resolves them that way on the host)."""

from __future__ import annotations

import copy
import hashlib
import os
import posixpath
import subprocess
import tarfile
from pathlib import Path
from typing import IO, Any

from ..errors import BootstrapError
from ..templates import Template, host_arch

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# our own checks (check_member) replace tarfile's filters, which would drop owners,
# setuid bits and device nodes that a rootfs needs
_NO_FILTER: dict[str, Any] = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") \
    else {}


def available() -> tuple[bool, str]:
    return True, ""


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def describe(template: Template, options: dict[str, Any]) -> dict[str, Any]:
    f = options.get("file")
    if not f:
        raise BootstrapError(f"template {template.name}: which tarball? give -- --file PATH")
    path = Path(f)
    try:
        digest = sha256(path)
    except OSError as e:
        raise BootstrapError(f"--file {path}: cannot read: {e.strerror}") from None
    return {"release": options.get("release") or "", "arch": options.get("arch") or host_arch(),
            "file": str(path), "sha256": digest, "key": digest[:16]}


class UnsafeArchive(BootstrapError):
    pass


def _clean_name(name: str, archive: str) -> str:
    """The member's path relative to the root, or UnsafeArchive."""
    if name.startswith("/"):
        raise UnsafeArchive(f"{archive}: refusing absolute member {name!r}",
                            "make the tarball with paths relative to the rootfs "
                            "(tar -C rootfs -c .)")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{archive}: refusing member {name!r}: it contains '..'",
                            "this tarball tries to write outside the rootfs")
    return "/".join(parts)


def check_member(m: tarfile.TarInfo, dest: Path, archive: str) -> tarfile.TarInfo | None:
    """Raise UnsafeArchive for a member that could write outside dest; the member with a
    clean name otherwise (None: skip it, it is the root itself)."""
    rel = _clean_name(m.name, archive)
    if not rel:
        return None
    root = os.path.realpath(dest)
    # the parent must resolve inside dest *now*: catches `etc -> /etc` then `etc/passwd`
    parent = os.path.realpath(os.path.join(root, posixpath.dirname(rel)))
    if parent != root and not parent.startswith(root + "/"):
        raise UnsafeArchive(f"{archive}: refusing member {m.name!r}: it goes through a "
                            f"symlink that leads outside the rootfs",
                            "this tarball tries to write outside the rootfs")
    if os.path.islink(os.path.join(root, rel)) and not m.issym():
        # a later member replacing a symlink: remove the link first so nothing follows it
        os.unlink(os.path.join(root, rel))
    if m.islnk():
        target = _clean_name(m.linkname, archive)
        real = os.path.realpath(os.path.join(root, posixpath.dirname(target)))
        if not target or (real != root and not real.startswith(root + "/")):
            raise UnsafeArchive(f"{archive}: refusing hard link {m.name!r} -> {m.linkname!r}: "
                                "it points outside the rootfs")
        m = copy.copy(m)
        m.linkname = target
    elif m.issym() and not m.linkname.startswith("/"):
        depth = len(rel.split("/")) - 1         # directories above the link, inside the root
        for p in m.linkname.split("/"):
            if p == "..":
                depth -= 1
                if depth < 0:
                    raise UnsafeArchive(
                        f"{archive}: refusing symlink {m.name!r} -> {m.linkname!r}: it "
                        "points outside the rootfs")
            elif p not in ("", "."):
                depth += 1
    m = copy.copy(m)
    m.name = rel
    return m


def _open_stream(path: Path) -> tuple[IO[bytes], subprocess.Popen | None]:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == ZSTD_MAGIC:
        try:
            proc = subprocess.Popen(["zstd", "-dcq", "--", str(path)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise BootstrapError(f"{path}: a zstd tarball, but zstd is not installed",
                                 "apt install zstd") from None
        assert proc.stdout is not None
        return proc.stdout, proc
    return open(path, "rb"), None


def extract(path: Path, dest: Path, progress=None) -> int:
    """Extract the tarball at path into the existing dir dest, safely. Returns the number
    of members. Raises UnsafeArchive (nothing more is written after the bad member) or
    BootstrapError for a file that is not a tarball."""
    name = Path(path).name
    stream, proc = _open_stream(path)
    count = 0
    as_root = os.geteuid() == 0
    try:
        try:
            tf = tarfile.open(fileobj=stream, mode="r|*")
        except tarfile.TarError as e:
            raise BootstrapError(f"{path}: not a tarball I can read ({e})",
                                 "give a tar, tar.gz, tar.xz, tar.bz2 or tar.zst file") from None
        with tf:
            try:
                for m in tf:
                    clean = check_member(m, dest, name)
                    if clean is None:
                        continue
                    if (clean.ischr() or clean.isblk()) and not as_root:
                        continue
                    tf.extract(clean, dest, set_attrs=True, numeric_owner=True, **_NO_FILTER)
                    count += 1
                    if progress and count % 500 == 0:
                        progress(f"importing {name}: {count} files")
            except tarfile.TarError as e:
                raise BootstrapError(f"{path}: damaged tarball ({e})") from None
            except EOFError:
                raise BootstrapError(f"{path}: the tarball is truncated") from None
    finally:
        stream.close()
        if proc is not None:
            proc.wait()
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            if proc.returncode not in (0, None) and count == 0:
                raise BootstrapError(f"{path}: zstd failed: {err or proc.returncode}")
    if count == 0:
        raise BootstrapError(f"{path}: the tarball is empty")
    return count


def build(template: Template, options: dict[str, Any], target: Path, entry: Path,
          progress) -> None:
    path = Path(options["file"])
    if progress:
        progress(f"importing {path.name}")
    extract(path, target, progress)
    # a rootfs needs these even if the archive lacks them
    for d, mode in (("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("tmp", 0o1777),
                    ("run", 0o755), ("etc", 0o755)):
        p = target / d
        if not p.exists() and not p.is_symlink():
            p.mkdir()
            os.chmod(p, mode)

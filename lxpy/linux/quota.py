"""Project quotas: the inode's project id and inherit flag (FS_IOC_FSGETXATTR and
FS_IOC_FSSETXATTR, as xfs_quota's "project -s" and chattr -p set them), and quotactl_fd(2)
for a project's block limit and use on ext4 and xfs (Linux 5.14 or newer; a kernel without
CONFIG_QUOTA answers ENOSYS).

    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    fsxattr_set_project(fd, 1234, inherit=True)
    quotactl_fd_set_block_limit(fd, PRJQUOTA, 1234, 20 << 30)
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

from .libc import check, libc

# <linux/fs.h>: struct fsxattr (28 bytes) and its ioctls
_FSXATTR = struct.Struct("=IIIII8x")
FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FS_XFLAG_PROJINHERIT = 0x00000200

# <linux/quota.h>
USRQUOTA, GRPQUOTA, PRJQUOTA = 0, 1, 2
Q_GETINFO = 0x800005
Q_GETQUOTA = 0x800007
Q_SETQUOTA = 0x800008
QIF_BLIMITS = 1
QIF_DQBLKSIZE = 1024        # dqb_bhardlimit counts these
NR_QUOTACTL_FD = 443        # the same on x86_64 and aarch64


class IfDqblk(ctypes.Structure):
    _fields_ = [("dqb_bhardlimit", ctypes.c_uint64), ("dqb_bsoftlimit", ctypes.c_uint64),
                ("dqb_curspace", ctypes.c_uint64), ("dqb_ihardlimit", ctypes.c_uint64),
                ("dqb_isoftlimit", ctypes.c_uint64), ("dqb_curinodes", ctypes.c_uint64),
                ("dqb_btime", ctypes.c_uint64), ("dqb_itime", ctypes.c_uint64),
                ("dqb_valid", ctypes.c_uint32)]


class IfDqinfo(ctypes.Structure):
    _fields_ = [("dqi_bgrace", ctypes.c_uint64), ("dqi_igrace", ctypes.c_uint64),
                ("dqi_flags", ctypes.c_uint32), ("dqi_valid", ctypes.c_uint32)]


def qcmd(cmd: int, qtype: int) -> int:
    return (cmd << 8) | (qtype & 0xFF)


def fsxattr_get(fd: int) -> tuple[int, int]:
    """(xflags, projid) of the open file fd."""
    buf = bytearray(_FSXATTR.size)
    fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf)
    xflags, _ext, _n, projid, _cow = _FSXATTR.unpack_from(buf)
    return xflags, projid


def fsxattr_set_project(fd: int, projid: int, inherit: bool) -> None:
    """Give the open file fd the project id projid; inherit (directories): what is made in
    it gets the same id."""
    buf = bytearray(_FSXATTR.size)
    fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf)
    xflags, ext, n, _old, cow = _FSXATTR.unpack_from(buf)
    xflags = xflags | FS_XFLAG_PROJINHERIT if inherit else xflags & ~FS_XFLAG_PROJINHERIT
    _FSXATTR.pack_into(buf, 0, xflags, ext, n, projid, cow)
    fcntl.ioctl(fd, FS_IOC_FSSETXATTR, bytes(buf))


def quotactl_fd(fd: int, cmd: int, qtype: int, qid: int, addr, path: str | None = None) -> int:
    return check(libc.syscall(NR_QUOTACTL_FD, ctypes.c_uint(fd),
                              ctypes.c_uint(qcmd(cmd, qtype)), ctypes.c_int(qid), addr),
                 "quotactl_fd", path)


def quotactl_fd_info(fd: int, qtype: int, path: str | None = None) -> IfDqinfo:
    """Raises OSError: ENOSYS (no quota support in the kernel), ESRCH (this quota type is
    not enabled on the filesystem), ENOTTY/EOPNOTSUPP/EINVAL (the filesystem has none)."""
    info = IfDqinfo()
    quotactl_fd(fd, Q_GETINFO, qtype, 0, ctypes.byref(info), path)
    return info


def quotactl_fd_get(fd: int, qtype: int, qid: int, path: str | None = None) -> tuple[int, int]:
    """(bytes used, block hard limit in bytes, 0: none) of quota id qid."""
    q = IfDqblk()
    quotactl_fd(fd, Q_GETQUOTA, qtype, qid, ctypes.byref(q), path)
    return q.dqb_curspace, q.dqb_bhardlimit * QIF_DQBLKSIZE


def quotactl_fd_set_block_limit(fd: int, qtype: int, qid: int, limit: int,
                                path: str | None = None) -> None:
    """The block hard limit of quota id qid, in bytes (rounded up to 1 KiB; 0: none), and no
    soft limit."""
    blocks = (limit + QIF_DQBLKSIZE - 1) // QIF_DQBLKSIZE
    q = IfDqblk(dqb_bhardlimit=blocks, dqb_bsoftlimit=0, dqb_valid=QIF_BLIMITS)
    quotactl_fd(fd, Q_SETQUOTA, qtype, qid, ctypes.byref(q), path)


def open_dir(path: str | os.PathLike) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

"""Loop devices: a free one from /dev/loop-control (LOOP_CTL_GET_FREE), bound to a file with
LOOP_CONFIGURE (Linux 5.8+) and LO_FLAGS_AUTOCLEAR, so that it detaches itself when the
filesystem on it is unmounted (as mount -o loop does).

    with loop_attach("/var/lib/lxpy/storage/pool1.img") as dev:
        mount(dev, "/var/lib/lxpy/storage/pool1", "btrfs", 0, None)
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
LO_FLAGS_AUTOCLEAR = 4

# struct loop_config: fd, block_size, struct loop_info64 (232 bytes), __reserved[8]
_CONFIG_SIZE = 4 + 4 + 232 + 64
_LO_FLAGS_OFFSET = 8 + 5 * 8 + 3 * 4


@contextmanager
def loop_attach(backing: str | os.PathLike) -> Iterator[str]:
    """A loop device path bound to the file backing, for the duration; it stays bound
    (until the last unmount, autoclear) only if a filesystem on it was mounted."""
    bfd = os.open(backing, os.O_RDWR | os.O_CLOEXEC)
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(16):                  # another attach may take ours: retry
                n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                dev = f"/dev/loop{n}"
                lfd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
                cfg = bytearray(_CONFIG_SIZE)
                struct.pack_into("=II", cfg, 0, bfd, 0)
                struct.pack_into("=I", cfg, _LO_FLAGS_OFFSET, LO_FLAGS_AUTOCLEAR)
                try:
                    fcntl.ioctl(lfd, LOOP_CONFIGURE, bytes(cfg))
                except OSError as e:
                    os.close(lfd)
                    if e.errno == errno.EBUSY:
                        continue
                    raise OSError(e.errno, f"ioctl(LOOP_CONFIGURE): {e.strerror}",
                                  os.fspath(backing)) from None
                break
            else:
                raise OSError(errno.EBUSY, "ioctl(LOOP_CONFIGURE): no free loop device",
                              os.fspath(backing))
        finally:
            os.close(ctl)
    finally:
        os.close(bfd)
    try:
        yield dev
    finally:
        # autoclear: the device detaches now unless a mount holds it
        os.close(lfd)

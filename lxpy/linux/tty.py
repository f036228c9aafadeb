"""Terminals: pty pairs, raw mode, window sizes, controlling terminal (all ioctl-based)."""

from __future__ import annotations

import fcntl
import os
import struct
import termios

TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413


def openpty() -> tuple[int, int, str]:
    """A new pty pair from /dev/ptmx: (master, slave, slave path); both fds are CLOEXEC."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt()
        n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
        path = f"/dev/pts/{n}"
        slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave, path


def get_winsize(fd: int) -> tuple[int, int] | None:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def set_controlling(fd: int) -> None:
    fcntl.ioctl(fd, TIOCSCTTY, 0)


def make_raw(fd: int) -> list:
    """Put a terminal in raw mode; returns the old attributes for restore()."""
    old = termios.tcgetattr(fd)
    new = termios.tcgetattr(fd)
    new[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
    new[1] &= ~termios.OPOST
    new[2] &= ~(termios.CSIZE | termios.PARENB)
    new[2] |= termios.CS8
    new[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    new[6][termios.VMIN] = 1
    new[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSAFLUSH, new)
    return old


def restore(fd: int, attrs: list) -> None:
    termios.tcsetattr(fd, termios.TCSAFLUSH, attrs)

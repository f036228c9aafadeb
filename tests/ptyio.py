"""Reading what a program prints on a pty or pipe, the way `expect` does: each `expect`
consumes up to and including the text it waited for and keeps what came after it, so a
prompt that arrived in the same read as the previous answer is not lost."""

from __future__ import annotations

import os
import select
import time


class Reader:
    def __init__(self, fd: int, timeout: float = 60):
        self.fd, self.timeout, self.pending = fd, timeout, b""

    def expect(self, text: bytes, timeout: float | None = None) -> bytes:
        """Wait for `text`; return everything read up to and including it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while text not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never saw {text!r}; got {self.pending[-300:]!r}")
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:          # EIO: the pty's other side is gone
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {text!r}; got {self.pending[-300:]!r}")
            self.pending += chunk
        end = self.pending.index(text) + len(text)
        out, self.pending = self.pending[:end], self.pending[end:]
        return out


def read_until(fd: int, text: bytes, timeout: float = 30) -> bytes:
    """One-shot form, for a stream read only once."""
    return Reader(fd, timeout).expect(text)

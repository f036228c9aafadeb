"""The small wire format shared by the monitor, its children and its clients.

A message is a kind and flat string fields: "kind\\nkey=value\\n..." (newlines and
backslashes escaped). On the SOCK_SEQPACKET handshake socket one packet is one message; on
the command socket (SOCK_STREAM) a message ends with an empty line. No json: the monitor
imports as little as possible.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _unesc(v: str) -> str:
    if "\\" not in v:
        return v
    out = []
    i = 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            out.append("\n" if v[i + 1] == "n" else v[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def encode(kind: str, **fields: object) -> bytes:
    lines = [kind] + [f"{k}={_esc(str(v))}" for k, v in fields.items() if v is not None]
    return ("\n".join(lines) + "\n").encode()


def decode(data: bytes) -> tuple[str, dict[str, str]]:
    lines = data.decode(errors="replace").split("\n")
    kind = lines[0]
    out = {}
    for line in lines[1:]:
        k, sep, v = line.partition("=")
        if sep:
            out[k] = _unesc(v)
    return kind, out


def send(sock, kind: str, **fields: object) -> None:
    sock.send(encode(kind, **fields))


def recv(sock) -> tuple[str, dict[str, str]]:
    """One packet (SEQPACKET); ("eof", {}) when the other side closed."""
    data = sock.recv(65536)
    if not data:
        return "eof", {}
    return decode(data)


# -- stream framing (command socket): a message ends with an empty line ---------------

def frame(kind: str, **fields: object) -> bytes:
    return encode(kind, **fields) + b"\n"


class Reader:
    """Accumulates stream bytes and yields complete messages."""

    def __init__(self) -> None:
        self.buf = b""
        self.pending: list[tuple[str, dict[str, str]]] = []

    def feed(self, data: bytes) -> list[tuple[str, dict[str, str]]]:
        self.buf += data
        out = []
        while b"\n\n" in self.buf:
            msg, self.buf = self.buf.split(b"\n\n", 1)
            out.append(decode(msg + b"\n"))
        return out


class Conn:
    """A client connection to a monitor: the socket and what was read past the reply."""

    def __init__(self, sock: socket.socket, reader: Reader):
        self.sock = sock
        self.reader = reader

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, n: int = 65536) -> bytes:
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def settimeout(self, t: float | None) -> None:
        self.sock.settimeout(t)

    def close(self) -> None:
        self.sock.close()


def request(path: str, kind: str, io_timeout: float | None = 10.0, **fields: object
            ) -> tuple[Conn, tuple[str, dict[str, str]]]:
    """Connect to a monitor socket, send one request, read the first reply."""
    import _socket as socket  # not "socket": its enums cost every client ~4 ms
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(io_timeout)
    try:
        s.connect(path)
        s.sendall(frame(kind, **fields))
        r = Reader()
        while True:
            data = s.recv(65536)
            if not data:
                return Conn(s, r), ("eof", {})
            msgs = r.feed(data)
            if msgs:
                r.pending = msgs[1:]
                return Conn(s, r), msgs[0]
    except BaseException:
        s.close()
        raise

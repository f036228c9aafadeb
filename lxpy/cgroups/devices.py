"""The device allowlist as data: the default set plus devices.allow from the config.
v1 writes each rule to devices.allow; v2 compiles them into a BPF device program."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceRule:
    type: str              # "c", "b" or "a"
    major: int | None      # None: any
    minor: int | None      # None: any
    access: str            # subset of "rwm"
    what: str = ""

    def v1(self) -> str:
        if self.type == "a":
            return "a"
        mj = "*" if self.major is None else str(self.major)
        mn = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {mj}:{mn} {self.access}"


# mknod ("m") only of these: LXC's "c *:* m" / "b *:* m" would let root in a privileged
# container make, in its rootfs on the host's filesystem, a node for /dev/mem or the host's
# disk that host root opens without this cgroup (issue 16's security suite).
DEFAULT = (
    DeviceRule("c", 1, 3, "rwm", "null"),
    DeviceRule("c", 1, 5, "rwm", "zero"),
    DeviceRule("c", 1, 7, "rwm", "full"),
    DeviceRule("c", 1, 8, "rwm", "random"),
    DeviceRule("c", 1, 9, "rwm", "urandom"),
    DeviceRule("c", 5, 0, "rwm", "tty"),
    DeviceRule("c", 5, 1, "rwm", "console"),
    DeviceRule("c", 5, 2, "rwm", "ptmx"),
    DeviceRule("c", 136, None, "rwm", "pts"),
)

OPTIONAL = {
    "fuse": (DeviceRule("c", 10, 229, "rwm", "fuse"),),
    "tun": (DeviceRule("c", 10, 200, "rwm", "tun"),),
    "kvm": (DeviceRule("c", 10, 232, "rwm", "kvm"),),
    "loop": (DeviceRule("b", 7, None, "rwm", "loop devices"),
             DeviceRule("c", 10, 237, "rwm", "loop-control")),
}


def rules(allow: Iterable[str] | None) -> list[DeviceRule]:
    out = list(DEFAULT)
    for name in allow or ():
        out += OPTIONAL[name]
    return out

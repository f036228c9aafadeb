"""Capabilities: the kernel's numbers by name, capget/capset, the bounding and ambient sets.

lxpy's config spells capabilities in lower case without the cap_ prefix ("sys_admin");
`number()` accepts both spellings.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

from .libc import check, libc
from .prctl import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_LOWER,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    prctl,
)

# The kernel's order (include/uapi/linux/capability.h).
NAMES: tuple[str, ...] = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)
BY_NAME: dict[str, int] = {n: i for i, n in enumerate(NAMES)}

# The constants, with the kernel's names.
CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_LINUX_IMMUTABLE = 9
CAP_NET_BIND_SERVICE = 10
CAP_NET_BROADCAST = 11
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_IPC_LOCK = 14
CAP_IPC_OWNER = 15
CAP_SYS_MODULE = 16
CAP_SYS_RAWIO = 17
CAP_SYS_CHROOT = 18
CAP_SYS_PTRACE = 19
CAP_SYS_PACCT = 20
CAP_SYS_ADMIN = 21
CAP_SYS_BOOT = 22
CAP_SYS_NICE = 23
CAP_SYS_RESOURCE = 24
CAP_SYS_TIME = 25
CAP_SYS_TTY_CONFIG = 26
CAP_MKNOD = 27
CAP_LEASE = 28
CAP_AUDIT_WRITE = 29
CAP_AUDIT_CONTROL = 30
CAP_SETFCAP = 31
CAP_MAC_OVERRIDE = 32
CAP_MAC_ADMIN = 33
CAP_SYSLOG = 34
CAP_WAKE_ALARM = 35
CAP_BLOCK_SUSPEND = 36
CAP_AUDIT_READ = 37
CAP_PERFMON = 38
CAP_BPF = 39
CAP_CHECKPOINT_RESTORE = 40
CAP_LAST_KNOWN = len(NAMES) - 1

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def number(name: str) -> int:
    """'sys_admin', 'CAP_SYS_ADMIN' -> 21; KeyError for an unknown name."""
    return BY_NAME[name.lower().removeprefix("cap_")]


def name(num: int) -> str:
    return NAMES[num] if 0 <= num < len(NAMES) else f"cap_{num}"


def last_cap() -> int:
    """The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return CAP_LAST_KNOWN


def mask(caps: Iterable[int | str]) -> int:
    m = 0
    for c in caps:
        m |= 1 << (number(c) if isinstance(c, str) else int(c))
    return m


def unmask(m: int) -> list[int]:
    return [i for i in range(64) if m >> i & 1]


# -- capget / capset ----------------------------------------------------------

class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_Data2 = _Data * 2
libc.capget.argtypes = [ctypes.POINTER(_Header), ctypes.POINTER(_Data)]
libc.capget.restype = ctypes.c_int
libc.capset.argtypes = [ctypes.POINTER(_Header), ctypes.POINTER(_Data)]
libc.capset.restype = ctypes.c_int


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) as 64-bit masks."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, pid)
    data = _Data2()
    check(libc.capget(ctypes.byref(hdr), data), "capget")
    return (data[0].effective | data[1].effective << 32,
            data[0].permitted | data[1].permitted << 32,
            data[0].inheritable | data[1].inheritable << 32)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's three sets (64-bit masks). Only lowering needs no privilege."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _Data2()
    lo, hi = 0xFFFFFFFF, 32
    data[0].effective, data[1].effective = effective & lo, effective >> hi & lo
    data[0].permitted, data[1].permitted = permitted & lo, permitted >> hi & lo
    data[0].inheritable, data[1].inheritable = inheritable & lo, inheritable >> hi & lo
    check(libc.capset(ctypes.byref(hdr), data), "capset")


# -- bounding and ambient sets ------------------------------------------------

def bset_read(cap: int) -> bool:
    return bool(prctl(PR_CAPBSET_READ, cap))


def bset_drop(cap: int) -> None:
    """PR_CAPBSET_DROP (needs CAP_SETPCAP; dropping one already gone is fine)."""
    prctl(PR_CAPBSET_DROP, cap)


def ambient_lower(cap: int) -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap)


def ambient_clear() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def status_masks(pid: int | str = "self") -> dict[str, int]:
    """CapInh, CapPrm, CapEff, CapBnd, CapAmb of a process, from /proc/<pid>/status."""
    out = {}
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"Cap"):
                k, _, v = line.partition(b":")
                out[k.decode()] = int(v.strip(), 16)
    return out


def bounding_set(pid: int | str = "self") -> int:
    """CapBnd of a process as a mask."""
    return status_masks(pid)["CapBnd"]

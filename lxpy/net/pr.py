"""pyroute2, imported here and only when something is really set up.

The calls used are the ones pyroute2 0.7.2 (Debian bookworm) and 0.9.x share:
IPRoute().link/addr/get_links/get_addr and NetNS(path, flags=0) (0.7 runs a proxy
process in the netns, 0.9 opens the socket there; both take a path).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import NetworkError


def _pyroute2():
    try:
        import pyroute2  # heavy: only network setup needs it
    except ImportError:  # pragma: no cover - a dependency
        raise NetworkError("pyroute2 is not installed", "apt install python3-pyroute2") from None
    return pyroute2


@contextmanager
def host() -> Iterator[Any]:
    """An IPRoute in our own (the host's) netns."""
    ipr = _pyroute2().IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


@contextmanager
def netns(pid: int | str) -> Iterator[Any]:
    """An IPRoute-like object working in the netns of pid (or of a netns path)."""
    path = pid if isinstance(pid, str) else f"/proc/{pid}/ns/net"
    try:
        ns = _pyroute2().NetNS(path, flags=0)
    except OSError as e:
        raise NetworkError(f"cannot enter the network namespace {path}: "
                           f"{e.strerror or e}") from None
    try:
        yield ns
    finally:
        ns.close()


def index(ipr: Any, name: str) -> int | None:
    """The ifindex of name, or None (one RTM_GETLINK by name, not a dump)."""
    try:
        msgs = ipr.link("get", ifname=name)
    except Exception as e:  # noqa: BLE001 - NetlinkError(ENODEV): no such device
        if getattr(e, "code", None) == 19:
            return None
        raise
    for m in msgs:
        return int(m["index"])
    return None


MODULES = {"vlan": "8021q"}     # link kinds whose kernel module has another name


def add_link(ipr: Any, name: str, kind: str, **kw: Any) -> None:
    """RTM_NEWLINK of a given kind; a kernel without that link type is a clear error."""
    try:
        ipr.link("add", ifname=name, kind=kind, **kw)
    except Exception as e:  # noqa: BLE001 - NetlinkError(EOPNOTSUPP): no such link type
        if getattr(e, "code", None) == 95:
            mod = MODULES.get(kind, kind)
            raise NetworkError(f"cannot create {kind} interface {name!r}: this kernel has no "
                               f"{kind} support (kernel module {mod})",
                               f"load it (modprobe {mod}) or use a kernel built with it "
                               f"(CONFIG_{mod.upper() if mod != '8021q' else 'VLAN_8021Q'})"
                               ) from None
        raise


def require_index(ipr: Any, name: str) -> int:
    i = index(ipr, name)
    if i is None:
        raise NetworkError(f"network interface {name!r} does not exist")
    return i


def delete_link(name: str) -> None:
    """Delete a host link if it is still there (undo step)."""
    with host() as ipr:
        i = index(ipr, name)
        if i is not None:
            try:
                ipr.link("del", index=i)
            except Exception as e:  # noqa: BLE001 - gone meanwhile is fine
                if getattr(e, "code", None) not in (19,):  # ENODEV
                    raise


"""What a start or a stop does first: take the container's lock, and clear the debris of a
monitor that died (SIGKILL, crash): its cgroups, network and run dir."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil

from .. import cgroups
from ..errors import LockBusy
from ..net.plan import DEVICES
from ..net.setup import teardown
from . import state

log = logging.getLogger("lxpy.runtime")


def take_lock(container, what: str) -> int:
    """flock the container's lock file; the fd can be handed to the monitor."""
    container.lxpath.mkdir(parents=True, exist_ok=True)
    fd = os.open(container.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise LockBusy(f"container {container.name!r} is {what}",
                           "another lxpy command is starting or stopping it") from None
        raise
    return fd


def cleanup_stale(container, info: state.StateInfo | None = None) -> None:
    """A run dir left by a monitor that died (SIGKILL, crash) and whose init is gone."""
    info = info or state.query(container)
    if info.state != "STOPPED":
        return
    rd = container.run_dir
    cg = info.cgroup or (info.extra or {}).get("cgroup")
    if cg:
        try:
            c = cgroups.driver().open(cg)
            c.kill()
            c.destroy()
        except Exception as e:  # noqa: BLE001 - best effort; create() cleans stale ones too
            log.warning("stale cgroup %s: %s", cg, e)
    try:
        if any(n.type in DEVICES for n in container.config.net):
            teardown(container.name, container.lxpath)
    except Exception as e:  # noqa: BLE001 - best effort
        log.warning("stale network of %s: %s", container.name, e)
    mcg = (info.extra or {}).get("monitor_cgroup")
    if mcg:
        try:
            cgroups.driver().open(mcg).destroy()
        except Exception:  # noqa: BLE001 - gone already, or cleaned by the next create
            pass
    if rd.exists():
        rootfs = rd / "rootfs"
        try:
            rootfs.rmdir()
        except OSError:
            pass
        shutil.rmtree(rd, ignore_errors=True)
        try:                # the lxpath's runtime directory, once its last container went
            rd.parent.rmdir()   # (as the monitor's own remove_run_dir does)
        except OSError:
            pass

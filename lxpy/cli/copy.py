"""lxpy-copy: clone (full or snapshot), rename, or start an ephemeral copy of a container."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

from lxpy import storage
from lxpy.container import Container, check_name
from lxpy.errors import UsageError
from lxpy.lifecycle.copy import changes_on_tmpfs, copy_container
from lxpy.lifecycle.destroy import destroy
from lxpy.lifecycle.rename import rename_container
from lxpy.runtime.start import start
from lxpy.runtime.wait import wait

HELP = "Copy a container: a full independent copy, a copy-on-write snapshot clone (-s), " \
       "a rename (-R), or an ephemeral clone that is destroyed when it stops (-e)."
EPILOG = """examples:
  lxpy-copy -n gold -N web2          full, independent copy (reflinked where the fs can)
  lxpy-copy -n gold -N web3 -s       snapshot clone: overlay on overlay/dir, btrfs snapshot
  lxpy-copy -n gold -N tmp1 -e       ephemeral: started at once, destroyed when it stops
  lxpy-copy -n web2 -N web9 -R       rename"""

FLAGS = (("-s --snapshot", "copy-on-write snapshot clone (depends on the source)"),
         ("-K --keepname", "keep the hostname"),
         ("-M --keepmac", "keep the MAC addresses"),
         ("-R --rename", "rename the container"),
         ("-a --allowrunning", "allow copying a running container (its tree may be "
                               "inconsistent)"),
         ("-e --ephemeral", "start the copy at once and destroy it when it stops"),
         ("-t --tmpfs", "-e: keep the ephemeral copy's changes on a tmpfs (overlay)"),
         ("-q --quiet", None))


def add_arguments(p) -> None:
    p.add_argument("-N", "--newname", help="name of the new container")
    p.add_argument("-p", "--newpath", help="lxpath of the new container (default: the same)")
    p.add_argument("-B", "--backingstorage", "--backend", dest="backend", metavar="BACKEND",
                   help="storage backend of the new container: dir, overlay, btrfs or best")
    for flag, help in FLAGS:
        p.add_argument(*flag.split(), action="store_true", help=help)


def _ephemeral_name(src: str) -> str:
    return f"{src[:50]}-{secrets.token_hex(3)}"


def _watch_and_destroy(c) -> None:
    """A detached process that destroys c once it has stopped."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        fd = os.open(os.devnull, os.O_RDWR)
        for i in (0, 1, 2):
            os.dup2(fd, i)
        wait(c, {"STOPPED"}, None)
        destroy(c, force=True, snapshots=True)
    except BaseException:  # noqa: BLE001 - nobody to tell: the parent has returned
        pass
    os._exit(0)


def run(args) -> int:
    src = Container(args.name, args.lxpath)
    if args.extra:
        raise UsageError("lxpy-copy takes nothing after --")
    if args.rename and (args.snapshot or args.ephemeral or args.newpath or args.backend):
        raise UsageError("-R renames in place: it does not go with -s, -e, -p or -B")
    new = args.newname
    if not new:
        if not args.ephemeral:
            raise UsageError("give the new name with -N NEWNAME")
        new = _ephemeral_name(src.name)
    check_name(new)
    if args.tmpfs and not args.ephemeral:
        raise UsageError("-t goes with -e (an ephemeral copy)")
    if args.tmpfs and args.backend not in (None, "overlay"):
        raise UsageError("-t keeps an overlay's changes on a tmpfs: it does not go with "
                         f"-B {args.backend}")
    backend = args.backend
    if backend == "best":
        backend = storage.best(Path(args.newpath) if args.newpath else src.lxpath).name

    for sig in (signal.SIGTERM, signal.SIGHUP):  # clean up as for Ctrl-C (temp dirs go)
        signal.signal(sig, signal.default_int_handler)
    if args.rename:
        dst = rename_container(src.require(), new, keep_hostname=args.keepname)
        if not args.quiet:
            print(f"renamed {src.name} to {dst.name}")
        return 0
    dst = copy_container(
        src, new, snapshot=args.snapshot or (args.ephemeral and not backend),
        backend=backend, keep_hostname=args.keepname, keep_macs=args.keepmac,
        allow_running=args.allowrunning,
        new_lxpath=Path(args.newpath) if args.newpath else None,
        before_publish=changes_on_tmpfs if args.tmpfs else None)
    if not args.ephemeral:
        if not args.quiet:
            print(f"created {dst.name} as a {'snapshot clone' if args.snapshot else 'copy'} "
                  f"of {src.name}")
        return 0
    try:
        start(dst)
    except BaseException:
        destroy(dst, force=True, snapshots=True)
        raise
    _watch_and_destroy(dst)
    if not args.quiet:
        print(f"started ephemeral {dst.name} (a clone of {src.name}); it is destroyed when it "
              "stops")
    return 0

"""bpf(2) for cgroup v2 device policy: compile an allowlist into a
BPF_PROG_TYPE_CGROUP_DEVICE program, load it and attach it to a cgroup (as LXC, crun and
systemd do). Rules are plain tuples: (type "c"/"b"/"a", major or None, minor or None,
access subset of "rwm")."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterable
from functools import cache

from .libc import libc

NR_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 1 << 1

BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

# opcodes
LDX_MEM_W = 0x61        # dst = *(u32 *)(src + off)
ALU32_AND_K = 0x54
ALU32_RSH_K = 0x74
ALU32_MOV_X = 0xbc
ALU64_MOV_K = 0xb7
JMP_JNE_K = 0x55
JMP_EXIT = 0x95

ATTR_SIZE = 128

Rule = tuple[str, "int | None", "int | None", str]


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_mask(access: str) -> int:
    m = 0
    for ch in access:
        m |= {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}[ch]
    return m


def device_program(rules: Iterable[Rule]) -> bytes:
    """The program: load type/access/major/minor from the context, then one block per rule
    that returns 1 (allow) on a match; 0 (deny) at the end. Pure; unit-tested."""
    prog = [
        insn(LDX_MEM_W, 2, 1, 0),            # r2 = ctx->access_type
        insn(ALU32_AND_K, 2, imm=0xffff),    # r2 = device type
        insn(LDX_MEM_W, 3, 1, 0),            # r3 = ctx->access_type
        insn(ALU32_RSH_K, 3, imm=16),        # r3 = access
        insn(LDX_MEM_W, 4, 1, 4),            # r4 = ctx->major
        insn(LDX_MEM_W, 5, 1, 8),            # r5 = ctx->minor
    ]
    for typ, major, minor, access in rules:
        block: list[tuple[int, int, int, int, int] | None] = []
        jumps: list[int] = []
        if typ in ("c", "b"):
            jumps.append(len(block))
            block.append((JMP_JNE_K, 2, 0, 0,
                          BPF_DEVCG_DEV_CHAR if typ == "c" else BPF_DEVCG_DEV_BLOCK))
        mask = _access_mask(access)
        if mask != 7:
            block.append((ALU32_MOV_X, 1, 3, 0, 0))
            block.append((ALU32_AND_K, 1, 0, 0, 7 & ~mask))
            jumps.append(len(block))
            block.append((JMP_JNE_K, 1, 0, 0, 0))
        if major is not None:
            jumps.append(len(block))
            block.append((JMP_JNE_K, 4, 0, 0, major))
        if minor is not None:
            jumps.append(len(block))
            block.append((JMP_JNE_K, 5, 0, 0, minor))
        block.append((ALU64_MOV_K, 0, 0, 0, 1))
        block.append((JMP_EXIT, 0, 0, 0, 0))
        n = len(block)
        for i, b in enumerate(block):
            code, dst, src, off, imm = b
            if i in jumps:
                off = n - i - 1
            prog.append(insn(code, dst, src, off, imm))
        if not jumps:           # matches everything: what follows would be unreachable
            return b"".join(prog)
    prog += [insn(ALU64_MOV_K, 0, imm=0), insn(JMP_EXIT)]
    return b"".join(prog)


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    if NR_BPF is None:
        raise OSError(errno.ENOSYS, f"bpf(): not supported on {os.uname().machine}")
    ret = libc.syscall(NR_BPF, ctypes.c_int(cmd), attr, ctypes.c_uint(ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf(): {os.strerror(err)}")
    return ret


def prog_load(code: bytes, name: bytes = b"lxpy_devices") -> int:
    """Load a device program; returns its fd (verifier log in the error on failure)."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIQQIIQII16sII", attr, 0,
                     BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                     ctypes.addressof(insns), ctypes.addressof(lic),
                     1, len(log), ctypes.addressof(log), 0, 0, name[:15],
                     0, BPF_CGROUP_DEVICE)
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        vlog = log.value.decode(errors="replace").strip()
        if vlog and e.errno == errno.EACCES:
            raise OSError(e.errno, f"bpf(BPF_PROG_LOAD): {os.strerror(e.errno)}: "
                          f"{vlog.splitlines()[-1]}") from None
        raise OSError(e.errno, f"bpf(BPF_PROG_LOAD): {os.strerror(e.errno)}") from None


def prog_attach(prog_fd: int, cgroup_fd: int, flags: int = BPF_F_ALLOW_MULTI) -> None:
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags)
    try:
        _bpf(BPF_PROG_ATTACH, attr)
    except OSError as e:
        raise OSError(e.errno, f"bpf(BPF_PROG_ATTACH): {os.strerror(e.errno)}") from None


def attach_device_program(cgroup_dir: str | os.PathLike, rules: Iterable) -> None:
    """Compile rules (tuples, or objects with type/major/minor/access) and attach the program
    to a cgroup2 directory. It stays attached until the cgroup is removed; descendants may
    add their own (BPF_F_ALLOW_MULTI: all must allow)."""
    tuples = [r if isinstance(r, tuple) else (r.type, r.major, r.minor, r.access)
              for r in rules]
    fd = prog_load(device_program(tuples))
    try:
        cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            prog_attach(fd, cg)
        except OSError as e:
            raise OSError(e.errno, e.strerror, os.fspath(cgroup_dir)) from None
        finally:
            os.close(cg)
    finally:
        os.close(fd)


@cache
def device_programs_supported() -> tuple[bool, str]:
    """Can this kernel load a cgroup device program (CONFIG_CGROUP_BPF, bpf() allowed)?"""
    try:
        fd = prog_load(device_program([("c", 1, 3, "rwm")]))
    except OSError as e:
        why = {errno.EPERM: "bpf() is not permitted (CAP_BPF/CAP_SYS_ADMIN needed)",
               errno.ENOSYS: "the kernel has no bpf() syscall",
               errno.EINVAL: "the kernel cannot load cgroup device programs "
                             "(CONFIG_CGROUP_BPF)"}.get(e.errno or 0, str(e))
        return False, why
    os.close(fd)
    return True, "BPF_PROG_TYPE_CGROUP_DEVICE"

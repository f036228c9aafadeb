"""seccomp filters through libseccomp.so.2 (ctypes), and loading a ready BPF program.

libseccomp returns -errno (not -1 with errno set): `_rc()` turns that into OSError naming
the function. Nothing from PyPI.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterable, Sequence

from .fs import read_to_eof
from .libc import check, libc
from .prctl import PR_SET_SECCOMP

# Actions (seccomp.h)
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000


def SCMP_ACT_ERRNO(err: int) -> int:  # noqa: N802 - the C macro's name
    return 0x00050000 | (err & 0xFFFF)


# Comparison operators (enum scmp_compare)
SCMP_CMP_NE = 1
SCMP_CMP_LT = 2
SCMP_CMP_LE = 3
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7

# Filter attributes (enum scmp_filter_attr)
SCMP_FLTATR_ACT_DEFAULT = 1
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_API_TSKIP = 5
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_FLTATR_API_SYSRAWRC = 9

# Architecture tokens (AUDIT_ARCH_*)
SCMP_ARCH_NATIVE = 0
SCMP_ARCH_X86 = 0x40000003
SCMP_ARCH_X86_64 = 0xC000003E
SCMP_ARCH_X32 = 0x4000003E
SCMP_ARCH_ARM = 0x40000028
SCMP_ARCH_AARCH64 = 0xC00000B7

# The 32-bit (compat) ABIs a 64-bit kernel also runs, per native arch.
COMPAT_ARCHES = {
    SCMP_ARCH_X86_64: (SCMP_ARCH_X86, SCMP_ARCH_X32),
    SCMP_ARCH_AARCH64: (SCMP_ARCH_ARM,),
}

__NR_SCMP_ERROR = -1

SECCOMP_MODE_FILTER = 2


class scmp_arg_cmp(ctypes.Structure):  # noqa: N801 - the C struct's name
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


_lib: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as e:
            raise OSError(2, f"libseccomp.so.2: cannot load it ({e}); install libseccomp2") \
                from None
        vp, u32, i = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        lib.seccomp_init.argtypes = [u32]
        lib.seccomp_init.restype = vp
        lib.seccomp_release.argtypes = [vp]
        lib.seccomp_release.restype = None
        lib.seccomp_rule_add_array.argtypes = [vp, u32, i, ctypes.c_uint,
                                               ctypes.POINTER(scmp_arg_cmp)]
        lib.seccomp_rule_add_array.restype = i
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.restype = i
        lib.seccomp_arch_add.argtypes = [vp, u32]
        lib.seccomp_arch_add.restype = i
        lib.seccomp_arch_native.argtypes = []
        lib.seccomp_arch_native.restype = u32
        lib.seccomp_attr_set.argtypes = [vp, i, u32]
        lib.seccomp_attr_set.restype = i
        lib.seccomp_load.argtypes = [vp]
        lib.seccomp_load.restype = i
        lib.seccomp_export_bpf.argtypes = [vp, i]
        lib.seccomp_export_bpf.restype = i
        _lib = lib
    return _lib


def _rc(ret: int, name: str, what: str | None = None) -> int:
    """libseccomp reports failure as -errno."""
    if ret < 0:
        err = -ret
        raise OSError(err, f"{name}(): {os.strerror(err)}", what)
    return ret


def available() -> tuple[bool, str]:
    try:
        _load()
    except OSError as e:
        return False, e.strerror or str(e)
    return True, ""


def resolve(name: str) -> int | None:
    """The native syscall number (or libseccomp's pseudo number) for a name; None if unknown."""
    nr = _load().seccomp_syscall_resolve_name(name.encode())
    return None if nr == __NR_SCMP_ERROR else nr


def arch_native() -> int:
    return _load().seccomp_arch_native()


class Filter:
    """A libseccomp filter context: build with add(), then load() or export()."""

    def __init__(self, default_action: int = SCMP_ACT_ALLOW, *, compat: bool = True,
                 nnp: bool = False):
        lib = _load()
        self._lib = lib
        self.default_action = default_action
        self._ctx = lib.seccomp_init(default_action)
        if not self._ctx:
            raise OSError(22, "seccomp_init(): failed (bad default action?)")
        try:
            # libseccomp sets no_new_privs on load unless told not to: that is a policy of
            # its own (security.no_new_privs decides), and it would break setuid programs.
            _rc(lib.seccomp_attr_set(self._ctx, SCMP_FLTATR_CTL_NNP, int(nnp)), "seccomp_attr_set")
            # Kernel errors as they are, not -ECANCELED (libseccomp >= 2.5; ignored if older).
            lib.seccomp_attr_set(self._ctx, SCMP_FLTATR_API_SYSRAWRC, 1)
            if compat:
                for arch in COMPAT_ARCHES.get(lib.seccomp_arch_native(), ()):
                    ret = lib.seccomp_arch_add(self._ctx, arch)
                    if ret < 0 and -ret != 17:  # EEXIST: already there
                        _rc(ret, "seccomp_arch_add", hex(arch))
        except BaseException:
            self.release()
            raise

    def add(self, action: int, syscall: str | int,
            args: Sequence[tuple[int, int, int, int]] = ()) -> bool:
        """Add a rule; args are (arg index, op, datum_a, datum_b) ANDed together.

        Returns False (and adds nothing) for a syscall name libseccomp does not know.
        """
        if isinstance(syscall, str):
            nr = resolve(syscall)
            if nr is None:
                return False
            what = syscall
        else:
            nr, what = syscall, str(syscall)
        arr = (scmp_arg_cmp * max(1, len(args)))()
        for i, (a, op, da, db) in enumerate(args):
            arr[i].arg, arr[i].op, arr[i].datum_a, arr[i].datum_b = a, op, da, db
        ret = self._lib.seccomp_rule_add_array(self._ctx, action, nr, len(args), arr)
        if ret == -17:  # EEXIST: the same rule twice
            return True
        _rc(ret, "seccomp_rule_add", what)
        return True

    def load(self) -> None:
        """Install the filter on this thread (needs CAP_SYS_ADMIN or no_new_privs)."""
        _rc(self._lib.seccomp_load(self._ctx), "seccomp_load")

    def export_bpf(self) -> bytes:
        """The compiled BPF program (struct sock_filter[]), for load_bpf() elsewhere."""
        r, w = os.pipe()
        try:
            # A filter of a few hundred instructions fits the pipe buffer (64 KiB).
            _rc(self._lib.seccomp_export_bpf(self._ctx, w), "seccomp_export_bpf")
            os.close(w)
            w = -1
            return read_to_eof(r)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            self.release()
        except Exception:  # noqa: BLE001
            pass


# -- loading a compiled program without libseccomp ---------------------------

class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_bpf(program: bytes) -> None:
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) for a program from export_bpf()."""
    if not program or len(program) % 8:
        raise OSError(22, "prctl(PR_SET_SECCOMP): not a BPF program (size is not a multiple "
                          "of 8)")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0),
          "prctl(PR_SET_SECCOMP)")
    del buf


def bpf_instructions(program: bytes) -> Iterable[tuple[int, int, int, int]]:
    """(code, jt, jf, k) of each instruction: for tests and debugging."""
    return struct.iter_unpack("=HBBI", program)

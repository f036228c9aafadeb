"""The only door to ctypes: syscalls, constants and structs, with the kernel's own names.

Every wrapper raises OSError(errno, "<syscall>(): <strerror>", path) on failure.
Nothing here imports the rest of lxpy.
"""

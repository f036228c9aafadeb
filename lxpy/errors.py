"""Typed errors. Library code raises these; only lxpy.cli prints them and exits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class LxpyError(Exception):
    """An expected failure: one line for the admin, and a hint where one helps."""

    exit_status = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(LxpyError):
    exit_status = 2


class ConfigError(LxpyError):
    pass


class ContainerNotFound(LxpyError):
    pass


class ContainerExists(LxpyError):
    pass


class StateError(LxpyError):
    """The container is in the wrong state for what was asked (running, stopped...)."""


class NotRunning(StateError):
    exit_status = 2  # lxpy-stop: 2 means "was not running", as documented


class KernelFeatureError(LxpyError):
    pass


class BootstrapError(LxpyError):
    pass


class TemplateError(LxpyError):
    pass


class StorageError(LxpyError):
    pass


class CgroupError(LxpyError):
    pass


class NetworkError(LxpyError):
    pass


class RuntimeStartError(LxpyError):
    """The container could not start; carries the step/syscall/errno/path from the child."""

    def __init__(self, message: str, hint: str | None = None, *, step: str | None = None,
                 syscall: str | None = None, errno: int | None = None, path: str | None = None):
        super().__init__(message, hint)
        self.step = step
        self.syscall = syscall
        self.errno = errno
        self.path = path


class LockBusy(LxpyError):
    pass


class Interrupted(LxpyError):
    exit_status = 130


def lookup(table: Mapping[str, T], name: str, what: str, error: type[LxpyError]) -> T:
    """table[name] (a registry: backends, methods, types); an unknown name is an `error` that
    lists the known ones."""
    try:
        return table[name]
    except KeyError:
        raise error(f"{what} {name!r} is not known", f"use one of: {', '.join(table)}") from None

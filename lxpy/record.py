"""Record: a small read-only class with named fields, for the modules every command imports
(settings table, config, system config, status): generating dataclasses costs ~10 ms of
import (inspect, and exec of the generated methods), which lxpy-ls / lxpy-info pay per call."""

from __future__ import annotations


class Record:
    """Subclasses set __slots__ (the fields, in order) and optionally _defaults.
    Positional or keyword construction, equality and hash by fields, a dataclass-like repr,
    assignment refused (AttributeError)."""

    __slots__ = ()
    _defaults: dict = {}

    def __init__(self, *args, **kwargs):
        names = self.__slots__
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments")
        values = dict(zip(names, args, strict=False))
        for k, v in kwargs.items():
            if k not in names or k in values:
                raise TypeError(f"{type(self).__name__}() got an unexpected or repeated "
                                f"argument {k!r}")
            values[k] = v
        for n in names:
            if n in values:
                v = values[n]
            elif n in self._defaults:
                v = self._defaults[n]
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {n!r}")
            object.__setattr__(self, n, v)

    def _fields(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}")

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self):
        return hash(self._fields())

    def __repr__(self):
        return (f"{type(self).__name__}("
                + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")")

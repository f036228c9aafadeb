"""Loggers that import the logging module only when a message is logged.

Importing logging costs ~10 ms (traceback, string, threading...), and the paths that scripts
call in loops (lxpy-start, lxpy-execute, lxpy-stop) usually log nothing. `get(name)` stands in
for `logging.getLogger(name)`: every attribute (debug, warning, isEnabledFor...) is the real
logger's, looked up on use; lxpy.cli._run configures the handlers when logging loads.
"""

from __future__ import annotations

import sys


class Logger:
    def __init__(self, name: str):
        self._name = name

    # Until something imports logging, nothing can have asked for messages below WARNING
    # (lxpy.cli._run imports it at once for -l, -o or --debug; logging's own default is
    # WARNING): debug and info messages are dropped without importing it (lxpy-copy logs
    # one on every clone).
    def debug(self, *args, **kwargs) -> None:
        if "logging" in sys.modules:
            self.__getattr__("debug")(*args, **kwargs)

    def info(self, *args, **kwargs) -> None:
        if "logging" in sys.modules:
            self.__getattr__("info")(*args, **kwargs)

    def __getattr__(self, attr: str):
        import logging
        return getattr(logging.getLogger(self._name), attr)

    def __repr__(self) -> str:
        return f"<lxpy.log.Logger {self._name}>"


def get(name: str) -> Logger:
    return Logger(name)

"""Loggers that import the logging module only when a message is logged.

Importing logging costs ~10 ms (traceback, string, threading...), and the paths that scripts
call in loops (lxpy-start, lxpy-execute, lxpy-stop) usually log nothing. `get(name)` stands in
for `logging.getLogger(name)`: every attribute (debug, warning, isEnabledFor...) is the real
logger's, looked up on use; lxpy.cli._run configures the handlers when logging loads.
"""

from __future__ import annotations


class Logger:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        import logging
        return getattr(logging.getLogger(self._name), attr)

    def __repr__(self) -> str:
        return f"<lxpy.log.Logger {self._name}>"


def get(name: str) -> Logger:
    return Logger(name)

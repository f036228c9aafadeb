"""python -m lxpy <command> ...: the same as the lxpy umbrella command."""

from lxpy.cli import umbrella

umbrella()

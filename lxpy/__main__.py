"""python -m lxpy <command> ...: the same as the lxpy umbrella command."""

import sys

from lxpy.cli import umbrella

sys.exit(umbrella())

"""lxpy: a system container manager in the tradition of LXC."""

__version__ = "0.1.0"

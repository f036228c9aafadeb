"""The TOML config layer: schema (the settings table), loading with profiles, editing."""

from .loader import load, load_data, merge, validate
from .schema import SETTINGS, Setting, format_size, parse_size
from .signals import parse_signal
from .view import Config

__all__ = ["SETTINGS", "Config", "Setting", "format_size", "load", "load_data", "merge",
           "parse_signal", "parse_size", "validate"]

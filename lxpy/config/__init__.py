"""The TOML config layer: schema (the settings table), loading with profiles, editing."""

from .load import Config, load, load_data, merge, validate
from .schema import SETTINGS, Setting, format_size, parse_signal, parse_size

__all__ = [
           "SETTINGS",
           "Config",
           "Setting",
           "format_size",
           "load",
           "load_data",
           "merge",
           "parse_signal",
           "parse_size",
           "validate",
]

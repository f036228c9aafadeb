"""The TOML config layer: schema (the settings table), loading with profiles, editing."""

from .load import Config, load, load_data, merge, validate
from .schema import SETTINGS, Setting, parse_size, format_size, parse_signal

__all__ = ["Config", "load", "load_data", "merge", "validate", "SETTINGS", "Setting",
           "parse_size", "format_size", "parse_signal"]

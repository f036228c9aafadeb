"""The TOML config layer: schema (the settings table), loading with profiles, editing.

The names below are imported on first use (PEP 562): `lxpy.config.cache` and
`lxpy.config.view` are loaded by every command that looks at a container, and must not
pull in the settings table, tomllib or typing with this package."""

_WHERE = {
    "Config": "view", "load": "loader", "load_data": "loader", "merge": "loader",
    "validate": "loader", "SETTINGS": "schema", "Setting": "schema", "format_size": "schema",
    "parse_signal": "signals", "parse_size": "schema",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'lxpy.config' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value

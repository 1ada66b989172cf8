"""Errors fastcore raises to its users. A leaf module: it imports nothing from fastcore."""


class FastcoreError(Exception):
    """Base class of every error fastcore raises on purpose."""


class ConfigError(FastcoreError, ValueError):
    """An option has a value the server cannot run with."""


class ServerStateError(FastcoreError, RuntimeError):
    """The call does not fit the server's state (e.g. add_static after start)."""

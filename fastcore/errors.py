"""Errors fastcore raises to its users: every error it raises on purpose is a FastcoreError.

A leaf module: it imports nothing from fastcore, so every layer may import it, the compiled core
included (pyext/python.pxi: RequestBodyError is defined there, on FastcoreError), without an
import cycle. tests/test_imports.py keeps it a leaf.

    FastcoreError
        ConfigError          also a ValueError: an option (or a static route) the server cannot run with
        ServerStateError     also a RuntimeError: the call does not fit the server's state
        SupervisorError      also a RuntimeError: the worker processes keep failing at start
        RequestBodyError     also an OSError (fastcore._core): reading a streamed request body failed
        ClientDisconnected   also an OSError: an ASGI app's send() after its client went away
        LifespanFailed       also a RuntimeError: an ASGI app's lifespan startup failed

A second base keeps what callers caught before the hierarchy existed (ValueError, RuntimeError,
OSError). Errors that are Python's own contract stay Python's: a TypeError for an argument of the
wrong type, a ValueError or TypeError for a handler's or WSGI application's malformed output (the
server answers those 500 and logs them), OSError and MemoryError from the system.
"""


class FastcoreError(Exception):
    """Base class of every error fastcore raises on purpose."""


class ConfigError(FastcoreError, ValueError):
    """An option has a value the server cannot run with."""


class ServerStateError(FastcoreError, RuntimeError):
    """The call does not fit the server's state (e.g. add_static after start)."""


class SupervisorError(FastcoreError, RuntimeError):
    """The worker processes keep failing right at start (processes > 1; fastcore.supervisor)."""


class ClientDisconnected(FastcoreError, OSError):
    """An ASGI app's send() came after its client went away (ASGI spec 2.4: an OSError). The
    server does not log it as an error: a client that leaves is not the app's fault."""


class LifespanFailed(FastcoreError, RuntimeError):
    """An ASGI app's lifespan startup failed (it sent lifespan.startup.failed, or raised under
    lifespan="on", or raised after receiving the startup event): the server does not start."""

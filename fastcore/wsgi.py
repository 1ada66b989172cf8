"""WSGI (PEP 3333) on fastcore: the entry points.

    import fastcore
    fastcore.serve_wsgi(app, host="0.0.0.0", port=8000, threads=4)     # blocks; Ctrl-C stops
    server = fastcore.Server.wsgi(app, port=0).start()                  # a WSGIServer, in the background

The pieces live a layer lower, so that Server can offer Server.wsgi without importing upward:
fastcore.wsgi_adapter.WSGIHandler is the adapter (a native handler that runs a WSGI application;
its theory of operation, framing and error rules are there) and fastcore.server.WSGIServer the
Server that runs one. This module gathers them, with serve_wsgi() and serve().
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Unpack

from .config import ServerConfig, ServerOptions
from .errors import ConfigError
from .server import ASGIServer, Server, WSGIServer
from .wsgi_adapter import WSGIHandler

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["WSGIHandler", "WSGIServer", "serve_wsgi", "serve"]


def serve_wsgi(app: WSGIApplication, config: ServerConfig | None = None, **options: Unpack[ServerOptions]) -> None:
    """Serve the WSGI application `app` until Ctrl-C / SIGTERM (or stop() from another thread)."""
    WSGIServer(app, config, **options).serve_forever()


def serve(app: Any, interface: Literal["wsgi", "asgi", "native"] = "wsgi", config: ServerConfig | None = None,
          **options: Unpack[ServerOptions]) -> None:
    """Serve `app` until Ctrl-C / SIGTERM: a WSGI application (interface="wsgi", the default), an
    ASGI application (interface="asgi"), or a native handler, request -> Response (interface="native")."""
    if interface == "wsgi":
        serve_wsgi(app, config, **options)
    elif interface == "asgi":
        ASGIServer(app, config, **options).serve_forever()
    elif interface == "native":
        Server(app, config, **options).serve_forever()      # Server adds the access log if asked
    else:
        raise ConfigError(f"interface must be 'wsgi', 'asgi' or 'native', not {interface!r}")

"""fastcore: an HTTP/1.1 server for Python whose hot path is compiled Cython with the GIL released.

    import fastcore

    def hello(request):
        return fastcore.Response(b"Hello, World!", content_type="text/plain")

    server = fastcore.Server(hello, host="127.0.0.1", port=8000, threads=2)
    server.add_static("/health", b"OK")      # answered in C, never takes the GIL
    server.serve_forever()

    fastcore.serve_wsgi(wsgi_app, port=8000)    # a WSGI (PEP 3333) application; or fastcore.Server.wsgi(app)
    fastcore.serve_asgi(asgi_app, port=8000)    # an ASGI 3 application; or fastcore.Server.asgi(app),
                                                # or `async with fastcore.AsyncServer(app)` on your loop
"""
import os as _os

try:
    from ._core import FileWrapper, Headers, Request, RequestBodyError, Response, WebSocket
except ModuleNotFoundError as _error:
    _here = _os.path.dirname(_os.path.abspath(__file__))
    if _error.name != __name__ + "._core" or not _os.path.isdir(_os.path.join(_here, _os.pardir, "pyext")):
        raise
    # Python found this source folder (with `python -m`, the current directory comes first on
    # sys.path), which shadows an installed fastcore-server and has no extension built in it.
    raise ModuleNotFoundError(
        f"fastcore._core is not built in the source folder {_here}, which Python imported instead of "
        f"an installed fastcore-server (`python -m` puts the current directory first on sys.path). "
        f"Run the `fastcore` command, or run from another directory, or build here: pip install -e .",
        name=_error.name) from None
from .config import ServerConfig
from .asgi_server import ASGIServer, AsyncServer, serve_asgi
from .errors import ClientDisconnected, ConfigError, FastcoreError, LifespanFailed, ServerStateError
from .server import Server
from .wsgi import WSGIHandler, WSGIServer, serve, serve_wsgi

__version__ = "0.1.0"
__all__ = ["Server", "ServerConfig", "Request", "Response", "Headers", "FileWrapper", "RequestBodyError",
           "FastcoreError", "ConfigError", "ServerStateError", "WSGIServer", "WSGIHandler", "serve", "serve_wsgi",
           "ASGIServer", "AsyncServer", "serve_asgi", "ClientDisconnected", "LifespanFailed", "WebSocket"]

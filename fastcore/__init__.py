"""fastcore: an HTTP/1.1 server for Python whose hot path is compiled Cython with the GIL released.

    import fastcore

    def hello(request):
        return fastcore.Response(b"Hello, World!", content_type="text/plain")

    server = fastcore.Server(hello, host="127.0.0.1", port=8000, threads=2)
    server.add_static("/health", b"OK")      # answered in C, never takes the GIL
    server.serve_forever()

    fastcore.serve_wsgi(wsgi_app, port=8000)    # a WSGI (PEP 3333) application; or fastcore.Server.wsgi(app)
"""
from ._core import FileWrapper, Headers, Request, RequestBodyError, Response
from .config import ServerConfig
from .errors import ConfigError, FastcoreError, ServerStateError
from .server import Server
from .wsgi import WSGIHandler, WSGIServer, serve, serve_wsgi

__version__ = "0.1.0"
__all__ = ["Server", "ServerConfig", "Request", "Response", "Headers", "FileWrapper", "RequestBodyError",
           "FastcoreError", "ConfigError", "ServerStateError", "WSGIServer", "WSGIHandler", "serve", "serve_wsgi"]

"""fastcore.pure.server: Server, fastcore.Server with the pure-Python engine (and WSGIServer and
ASGIServer, its WSGI and ASGI twins).

Theory of operation. fastcore.server.Server drives its engine through a small interface: a Core
with run_listener(), run_worker(i), stop_listener(), stop_workers(timeout), release() and stats(),
built by Server._build_core(listening). fastcore.pure.core.Core has the same interface, so this
class overrides only _build_core and inherits everything else: options and ServerConfig,
add_static, the listening socket (TCP, IPv6, unix, inherited fds: fastcore.sockets), start() and
stop() with their ordering and joins, serve_forever() and signals, processes, the access log and
metrics wrappers around the handler, stats(), port / host / url / running, the context manager,
the stop-at-exit registry. Server.wsgi is overridden too, so that it gives the WSGIServer below,
and _handler_callers: this engine calls handlers from Python (the hung-handler watchdog,
fastcore.watchdog, looks for the frame called from there).

The WSGI adapter (fastcore.wsgi_adapter) is a native handler built only on the Request / Response
interface, which this engine implements the same way; so WSGIServer is fastcore.WSGIServer with
this Server as its engine (multiple inheritance: the adapter's __init__/start run, then the pure
start()). ASGIServer likewise: fastcore.ASGIServer's loop and lifespan around this engine's
_build_core (whose Core serves ASGI in fastcore/pure/asgi.py). Nothing is copied.
"""
from .. import server as compiled_server
from .connection import Conn
from .core import Core


class Server(compiled_server.Server):
    """An HTTP/1.1 server in pure Python (standard library + httptools), with fastcore.Server's API:

        server = fastcore.pure.Server(handler, host="127.0.0.1", port=8000, threads=2)
        server.add_static("/health", b"OK")
        server.serve_forever()          # or: with fastcore.pure.Server(handler, port=0) as s: ...
    """

    _handler_callers = (Conn.answer_with_handler.__code__,)

    def _build_core(self, listening):
        return Core(self.config, listening, self._dispatch(), list(self._static_routes.values()),
                    self._websocket_routes or None)   # Server.add_websocket's routes

    @classmethod
    def wsgi(cls, app, config=None, **options):
        """Server.wsgi(app, **options) -> a fastcore.pure.WSGIServer for the WSGI application `app`."""
        return WSGIServer(app, config, **options)

    @classmethod
    def asgi(cls, app, config=None, **options):
        """Server.asgi(app, **options) -> a fastcore.pure.ASGIServer for the ASGI application `app`."""
        return ASGIServer(app, config, **options)

    def __repr__(self):
        state = f"listening on {self.host}:{self.port}" if self.running else "stopped"
        return f"<fastcore.pure.Server {state}, {self.config.threads} threads>"


class WSGIServer(compiled_server.WSGIServer, Server):
    """fastcore.WSGIServer on the pure-Python engine (same options).

        fastcore.pure.serve_wsgi(app, port=8000)
        server = fastcore.pure.Server.wsgi(app, port=0).start()     # a fastcore.pure.WSGIServer
    """

    def __repr__(self):
        state = f"listening on {self.host}:{self.port}" if self.running else "stopped"
        return f"<fastcore.pure.WSGIServer {state}, {self.config.threads} threads>"


class ASGIServer(compiled_server.ASGIServer, Server):
    """fastcore.ASGIServer on the pure-Python engine (same options).

        server = fastcore.pure.Server.asgi(app, port=0).start()     # a fastcore.pure.ASGIServer
    """

    def __repr__(self):
        state = f"listening on {self.host}:{self.port}" if self.running else "stopped"
        return f"<fastcore.pure.ASGIServer {state}, {self.config.threads} threads>"

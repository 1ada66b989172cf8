# dispatch.pxi: Dispatch, the one declaration of how a server's requests reach Python.
#
# Theory of operation. The core answers static routes and protocol errors in C and hands every
# other request to Python. How, is declared once per start, by the Server that builds the Core
# (fastcore.server.Server._dispatch), in a Dispatch:
#
#   handler        called as handler(request) -> Response; None: no Python routes (the core
#                  answers 404). This is what the pure engine calls, always.
#   wsgi           a WSGIAdapter (wsgi.pxi), or None. When set, the compiled engine answers each
#                  request through wsgi_answer() with this adapter instead of calling `handler`.
#                  Whoever builds the Dispatch vouches that `handler(request)` would give the
#                  same response: `handler` is the adapter itself, or a wrapper that hands every
#                  other request to it unchanged. Server sets it only for a WSGIAdapter whose
#                  compiled_fast_path is true (no subclass overrides what wsgi.pxi stands in for)
#                  and that no access-log wrapper needs to see.
#   wrapper_path   with `wsgi`: the one path (compared as request.path) that still goes to
#                  `handler`, because the wrapper answers it itself (the metrics route); else None.
#   asgi           a fastcore.asgi.ASGIApp, or None. When set, `handler` is None and every request
#                  for Python goes to the ASGI app on its event loop (asgi.pxi).
#   websockets     native WebSocket routes (fastcore.websocket.WebSocketRoute, Server.add_websocket):
#                  the worker accepts their handshakes and their callbacks run in handler batches
#                  (websocket_native.pxi). Not with `asgi` (its app has the websocket scope).
#
# Nothing is inferred from the handler's attributes: the Core copies these fields into its own C
# attributes when it is built (Core.__cinit__), and per request it tests one of them (Core.wsgi).


@cython.auto_pickle(False)
@cython.final
cdef class Dispatch:
    """How a server's requests reach Python: `handler(request)`, or the compiled WSGI path for
    `wsgi` (all requests but those for `wrapper_path`). See pyext/dispatch.pxi."""
    cdef readonly object handler
    cdef readonly WSGIAdapter wsgi
    cdef readonly str wrapper_path
    cdef readonly object asgi
    cdef readonly tuple websockets

    def __init__(self, handler, WSGIAdapter wsgi=None, str wrapper_path=None, asgi=None, websockets=()):
        if handler is not None and not callable(handler):
            raise TypeError("a Dispatch's handler is callable (request -> Response) or None")
        if wsgi is not None and handler is None:
            raise TypeError("a Dispatch with a WSGI adapter needs the handler it stands in for")
        self.handler = handler
        self.wsgi = wsgi
        self.wrapper_path = wrapper_path if wsgi is not None else None
        if asgi is not None and (handler is not None or wsgi is not None):
            raise TypeError("a Dispatch for an ASGI app has no handler and no WSGI adapter")
        self.asgi = asgi
        self.websockets = tuple(websockets)
        if self.websockets and asgi is not None:
            raise TypeError("an ASGI app serves its own WebSockets: no native WebSocket routes with it")

    def __repr__(self):
        return (f"<fastcore._core.Dispatch handler={self.handler!r} wsgi={self.wsgi!r} "
                f"wrapper_path={self.wrapper_path!r} asgi={self.asgi!r} websockets={self.websockets!r}>")

"""fastcore.pure.wsgi: WSGI (PEP 3333) on the pure engine.

Theory of operation. fastcore.wsgi's adapter is a native handler (WSGIHandler(app)(request) ->
Response) built only on the Request / Response interface, which the pure engine implements the same
way; so the pure WSGIServer is fastcore.wsgi.WSGIServer with fastcore.pure.Server as its engine
(multiple inheritance: the adapter's __init__/start run, then the pure start()). Nothing is copied.

    fastcore.pure.serve_wsgi(app, port=8000)
    server = fastcore.pure.Server.wsgi(app, port=0).start()     # a fastcore.pure.WSGIServer
"""
from .. import wsgi as compiled_wsgi
from .server import Server


class WSGIServer(compiled_wsgi.WSGIServer, Server):
    """fastcore.WSGIServer on the pure-Python engine (same options)."""

    def __repr__(self):
        state = f"listening on {self.host}:{self.port}" if self.running else "stopped"
        return f"<fastcore.pure.WSGIServer {state}, {self.config.threads} threads>"


def serve_wsgi(app, config=None, **options):
    """Serve the WSGI application `app` until Ctrl-C / SIGTERM (or stop() from another thread)."""
    WSGIServer(app, config, **options).serve_forever()

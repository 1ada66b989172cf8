"""fastcore.pure.wsgi: WSGI (PEP 3333) on the pure engine, the entry points (as fastcore.wsgi).

    fastcore.pure.serve_wsgi(app, port=8000)
    server = fastcore.pure.Server.wsgi(app, port=0).start()     # a fastcore.pure.WSGIServer

WSGIServer is defined next to the pure Server (fastcore.pure.server), so that Server.wsgi needs
no import of this module; this one gathers it with serve_wsgi().
"""
from .server import WSGIServer

__all__ = ["WSGIServer", "serve_wsgi"]


def serve_wsgi(app, config=None, **options):
    """Serve the WSGI application `app` until Ctrl-C / SIGTERM (or stop() from another thread)."""
    WSGIServer(app, config, **options).serve_forever()

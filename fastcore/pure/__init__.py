"""fastcore.pure: fastcore's architecture in pure Python (standard library + httptools).

    import fastcore, fastcore.pure

    server = fastcore.pure.Server(handler, host="127.0.0.1", port=8000, threads=2)
    server.add_static("/health", b"OK")
    server.serve_forever()                       # the same API as fastcore.Server
    fastcore.pure.Server.wsgi(app, port=8000)    # and WSGI, as fastcore.Server.wsgi
    fastcore.pure.Server.asgi(app, port=8000)    # and ASGI, as fastcore.Server.asgi (and AsyncServer)

Theory of operation. The architecture of docs/ARCHITECTURE.md, in modules named like the pyext/
fragments:

    server.py      Server: fastcore.Server with this engine (overrides only _build_core), and
                   WSGIServer and ASGIServer: fastcore.WSGIServer and fastcore.ASGIServer with it
    asgi.py        ASGI: the hand-off of connections to the event loop (an eventfd it watches, as
                   bridge.py hands them to handler threads) and each request's scope/receive/send
    core.py        Core: the state of one server and its threads' entry points
    listener.py    listener thread: select.epoll on the listening socket, accept, bounded
                   queue.Queue (full: canned 503), wake one worker (an idle one first)
    wakeup.py      a worker's wake-up descriptor: os.eventfd, else a pipe
    worker.py      worker threads: own select.epoll each; handler calls batched per loop turn
    batch.py       the handler batch, inline in a worker or on handler threads (handler_threads)
    bridge.py      handler-thread mode: the deque of connections for handler threads (a
                   threading.Condition) and each worker's inbox of connections handed back
    connection.py  one connection: read, serve in order, write (one send for a pipeline), close
                   (lingering after an error answer: half-close, discard input until FIN or 2 s)
    protocol.py    the connection's state machine: phase, close policy, epoll interest, timer
                   (pyext/protocol.pxi's table, written out again; tests compare the two)
    parser.py      httptools (llhttp) parses; we frame heads and bodies and apply fastcore's rules
    request.py     Request (the attributes of fastcore.Request) and BodyReader (large bodies)
    response.py    response bytes: handler results, static routes, errors, Date cache
    timers.py      header / body / keep-alive / write / linger timeouts, one sorted list per kind
    websocket_native.py  Server.add_websocket: the worker does the handshake and framing,
                   callbacks run in the handler batch or on handler threads; WebSocket
    wsgi.py        serve_wsgi: the WSGI entry point on this engine (the adapter is
                   fastcore.wsgi_adapter's, shared by both engines)

Everything observable is meant to match the compiled engine, and the shared test suite runs
against both. Request is this package's own class (fastcore.Request is built from C offsets);
Response, FileWrapper, Headers and RequestBodyError are fastcore's, so the compiled module must be
importable.

Differences that stay, and why:

1. Speed and memory. Every request runs Python code under the GIL: on one core, a hello-world
   handler does about half the compiled engine's requests/s with keep-alive (where kernel work
   dominates both) and about 1/10 with 16 pipelined requests; a WSGI hello-world app about 1/3
   and 1/7 (the compiled engine runs the WSGI adapter in C, pyext/wsgi.pxi; this one runs
   fastcore/wsgi_adapter.py); an idle keep-alive connection costs about 2.5 KB instead of about 0.6 KB
   (bench/RESULTS.md). More threads add little (only system calls overlap).
2. Static routes need the GIL. The compiled core serves them in C without it, so they keep
   answering while a Python thread hogs the interpreter (tests/test_gil.py); here such a thread
   delays every response by up to the interpreter's switch interval.
3. Chunked bodies are decoded by llhttp, whose chunk grammar differs from RFC 9112 7.1.1 and the
   compiled parser in details httptools gives no way around (it reports neither chunk sizes nor
   where a chunk line starts, so only a chunked decoder of our own could change them):
   a. whitespace inside a chunk extension (BWS before ';' or around '=', `5 ;a=b`) is a 400
      here; the compiled parser accepts it. (With llhttp's leniency on, it would accept `5 ;`
      but also `5 ` with trailing whitespace, which the compiled parser refuses; off, pure is
      never more lenient than compiled here);
   b. a few malformed extensions are accepted (an empty name `;=v`, a token value directly
      followed by a quoted string);
   c. Content-Length or Transfer-Encoding in the trailer section is a 400 (llhttp applies its
      framing rules to trailers); the compiled parser checks trailer syntax and ignores them;
   d. limits are enforced per read, not per byte: a chunk-size line over 4 KiB is a 400 and a
      trailer section over max_head_size a 431 as in the compiled parser, but one read can carry
      somewhat more before it is noticed; a chunk size of more than 15 hex digits (the compiled
      limit) is accepted when it fits 64 bits (all zeros ends the body; a huge one ends in 413);
   e. max_body_size on a chunked body is a 413 once the decoded bytes pass it, not as soon as a
      chunk-size line announces it;
   f. an invalid byte in an unfinished chunk line is a 400 at once, where the compiled parser
      waits for the line's end (same answer, earlier).
4. Timing only: the close() of a response body whose client went away is called at once rather
   than at the worker's next handler batch.
"""
from .._core import FileWrapper, Headers, RequestBodyError, Response
from ..config import ServerConfig
from ..asgi_server import AsyncServer as _AsyncServer
from .request import Request
from .server import ASGIServer, Server, WSGIServer
from .websocket_native import WebSocket
from .wsgi import serve_wsgi

__all__ = ["Server", "ServerConfig", "Request", "Response", "Headers", "FileWrapper", "RequestBodyError",
           "WSGIServer", "serve_wsgi", "ASGIServer", "AsyncServer", "WebSocket"]


class AsyncServer(_AsyncServer):
    """fastcore.AsyncServer on the pure-Python engine: `async with fastcore.pure.AsyncServer(app) as s:`."""

    engine = "pure"

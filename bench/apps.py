"""The benchmark's one application, in every interface the servers speak.

Routes, the same in every server (bench/servers.py):

    GET  /       200 text/plain "Hello, World!" (13 bytes)
    GET  /big    200 application/octet-stream, 64 KiB (BIG)
    POST /echo   200 application/octet-stream, the request body sent back
    GET  /blocking   200 "Hello, World!", but one request in ten first blocks 100 ms (a database
                 call, say: time.sleep, which releases the GIL), as issue 13's blocking app
    anything else: 404

Every response carries Content-Length, so no server has to choose chunked framing. The module is
import-light (no fastcore import at the top) because gunicorn, granian and uvicorn import it by name
(`bench.apps:wsgi_app`, `bench.apps:asgi_app`) with the repository root as working directory.
"""
import itertools
import time

HELLO = b"Hello, World!"
BIG = b"0123456789abcdef" * 4096          # 65,536 bytes
ECHO_SIZE = 4096                            # the body wrk POSTs to /echo (bench/echo.lua)
BLOCKING_EVERY, BLOCKING_SECONDS = 10, 0.1   # /blocking: one request in this many sleeps this long
_blocking_count = itertools.count()


def blocking_pause():
    """Sleep on every BLOCKING_EVERY-th call (itertools.count is atomic under the GIL)."""
    if next(_blocking_count) % BLOCKING_EVERY == 0:
        time.sleep(BLOCKING_SECONDS)

_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
_BIG_HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))]
_NOT_FOUND = b"Not Found"
_NOT_FOUND_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(_NOT_FOUND)))]


# -- WSGI (PEP 3333): fastcore WSGI, the pure WSGI server, granian, bjoern, gunicorn, waitress ----

def wsgi_app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        start_response("200 OK", _HELLO_HEADERS)
        return [HELLO]
    if path == "/echo":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/big":
        start_response("200 OK", _BIG_HEADERS)
        return [BIG]
    if path == "/blocking":
        blocking_pause()
        start_response("200 OK", _HELLO_HEADERS)
        return [HELLO]
    start_response("404 Not Found", _NOT_FOUND_HEADERS)
    return [_NOT_FOUND]


# -- ASGI 3: uvicorn -------------------------------------------------------------------------------

_A_HELLO = [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]
_A_BIG = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(BIG)).encode())]
_A_NOT_FOUND = [(b"content-type", b"text/plain"), (b"content-length", str(len(_NOT_FOUND)).encode())]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":                     # uvicorn runs with --lifespan off; for others
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/":
        status, headers, body = 200, _A_HELLO, HELLO
    elif path == "/echo":
        parts, more = [], True
        while more:
            message = await receive()
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        status, headers = 200, [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(len(body)).encode())]
    elif path == "/big":
        status, headers, body = 200, _A_BIG, BIG
    elif path == "/blocking":
        blocking_pause()                            # blocks the event loop, as a blocking call does
        status, headers, body = 200, _A_HELLO, HELLO
    else:
        status, headers, body = 404, _A_NOT_FOUND, _NOT_FOUND
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- fastcore native handler (request -> Response): fastcore.Server and fastcore.pure.Server --------

def make_native_handler(Response):
    """The native handler, built on the engine's Response class (fastcore.Response)."""
    def handler(request):
        path = request.path
        if path == "/":
            return Response(HELLO, content_type="text/plain")
        if path == "/echo":
            return Response(request.body, content_type="application/octet-stream")
        if path == "/big":
            return Response(BIG, content_type="application/octet-stream")
        if path == "/blocking":
            blocking_pause()
            return Response(HELLO, content_type="text/plain")
        return Response(_NOT_FOUND, status=404, content_type="text/plain")
    return handler

"""The benchmark's one application, in every interface the servers speak.

Routes, the same in every server (bench/servers.py):

    GET  /       200 text/plain "Hello, World!" (13 bytes)
    GET  /big    200 application/octet-stream, 64 KiB (BIG)
    POST /echo   200 application/octet-stream, the request body sent back
    GET  /blocking   200 "Hello, World!", but one request in ten first blocks 100 ms (a database
                 call, say: time.sleep, which releases the GIL), as issue 13's blocking app
    anything else: 404

Real apps, mounted under a prefix of the same WSGI or ASGI app (one str.startswith in front of the
framework), each built on its first request so that servers which never see them do not import
the frameworks (RSS, start-up):

    GET /flask/users/<int:id>?fields=a,b   Flask: JSON of the user's chosen fields (REAL_APPS["flask"])
    GET /django/hello/<name>               Django: a view rendering a small template (a list of 5 items)
    GET /fastapi/users/<int:id>            FastAPI (ASGI): JSON, the path parameter validated by FastAPI

`python bench/apps.py` times each real app called directly, without a server (its own CPU per
request), which bench/RESULTS.md sets against a server's CPU per request.

Every response carries Content-Length, so no server has to choose chunked framing. The module is
import-light (no fastcore import at the top) because gunicorn, granian and uvicorn import it by name
(`bench.apps:wsgi_app`, `bench.apps:asgi_app`) with the repository root as working directory.
"""
import itertools
import threading
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


# -- real apps: Flask, Django (WSGI), FastAPI (ASGI) -------------------------------------------------

USERS = {i: {"id": i, "name": f"user{i}", "email": f"user{i}@example.com", "active": i % 2 == 0}
         for i in range(100)}
DJANGO_ITEMS = ["alpha", "beta", "gamma", "delta", "epsilon"]
DJANGO_TEMPLATE = ("<html><head><title>Hello {{ name }}</title></head><body><h1>Hello, {{ name|title }}!</h1>"
                   "<ul>{% for item in items %}<li>{{ forloop.counter }}. {{ item }}</li>{% endfor %}</ul>"
                   "</body></html>")

# scenario: (interface, path wrk requests, the body every server must answer with)
REAL_APPS = {
    "flask": ("wsgi", "/flask/users/42?fields=name,email",
              b'{"email":"user42@example.com","id":42,"name":"user42"}\n'),
    "django": ("wsgi", "/django/hello/world",
               b"<html><head><title>Hello world</title></head><body><h1>Hello, World!</h1><ul>"
               + b"".join(b"<li>%d. %s</li>" % (i + 1, item.encode()) for i, item in enumerate(DJANGO_ITEMS))
               + b"</ul></body></html>"),
    "fastapi": ("asgi", "/fastapi/users/42", b'{"id":42,"name":"user42","email":"user42@example.com","active":true}'),
}

_built = {}
_build_lock = threading.Lock()


def _built_app(name, build):
    app = _built.get(name)
    if app is None:
        with _build_lock:                               # threaded servers: build it once
            app = _built.get(name)
            if app is None:
                app = _built[name] = build()
    return app


def build_flask():
    import flask
    app = flask.Flask("bench")
    app.json.compact = True

    @app.get("/flask/users/<int:user_id>")
    def user(user_id):
        record = USERS.get(user_id)
        if record is None:
            flask.abort(404)
        fields = flask.request.args.get("fields")
        chosen = fields.split(",") if fields else list(record)
        return flask.jsonify({"id": user_id, **{k: record[k] for k in chosen if k in record}})

    return app


def build_django():
    import django
    from django.conf import settings
    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="bench",
                           MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True,
                           TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                                       "DIRS": [], "OPTIONS": {"loaders": [
                                           ("django.template.loaders.locmem.Loader",
                                            {"hello.html": DJANGO_TEMPLATE})]}}])
        django.setup()
    from django.core.wsgi import get_wsgi_application
    return get_wsgi_application()


def _django_hello(request, name):
    from django.shortcuts import render
    return render(request, "hello.html", {"name": name, "items": DJANGO_ITEMS})


def _django_urls():
    from django.urls import path
    return [path("django/hello/<str:name>", _django_hello)]


def __getattr__(name):                                  # Django reads ROOT_URLCONF's urlpatterns lazily
    if name == "urlpatterns":
        return _django_urls()
    raise AttributeError(name)


def build_fastapi():
    import fastapi
    app = fastapi.FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/fastapi/users/{user_id}")
    async def user(user_id: int):
        record = USERS.get(user_id)
        if record is None:
            raise fastapi.HTTPException(404)
        return record

    return app


# -- WSGI (PEP 3333): fastcore WSGI, the pure WSGI server, granian, bjoern, gunicorn, waitress ----

def wsgi_app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/flask/"):
        return _built_app("flask", build_flask)(environ, start_response)
    if path.startswith("/django/"):
        return _built_app("django", build_django)(environ, start_response)
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


async def asgi_lifespan(receive, send):
    """An ASGI lifespan scope answered (startup and shutdown complete), for the bench's apps."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":                     # uvicorn runs with --lifespan off; for others
        await asgi_lifespan(receive, send)
        return
    path = scope["path"]
    if path.startswith("/fastapi/"):
        await _built_app("fastapi", build_fastapi)(scope, receive, send)
        return
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


# -- the apps' own cost: `python bench/apps.py` -------------------------------------------------------

def _wsgi_environ(target):
    import io
    path, _, query = target.partition("?")
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8080", "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False}


def app_cost_us(name, calls=20000):
    """CPU microseconds per request of REAL_APPS[name] called directly (its answer checked): what
    the app costs whatever server runs it. WSGI: a fresh environ per call, the body joined; ASGI:
    the calls awaited one after another inside one coroutine, receive/send plain coroutines, so
    no event-loop scheduling is counted (that is the server's: each one runs its loop its way)."""
    interface, target, expected = REAL_APPS[name]
    if interface == "wsgi":
        def once():
            status = []
            body = b"".join(wsgi_app(_wsgi_environ(target), lambda s, h, e=None: status.append(s)))
            assert status[0].startswith("200") and body == expected, (status, body)
    else:
        import asyncio
        path, _, query = target.partition("?")
        loop = asyncio.new_event_loop()

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def repeat(count):
            for _ in range(count):
                parts = []

                async def send(message):
                    parts.append(message.get("body", b""))

                scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                         "scheme": "http", "path": path, "raw_path": path.encode(),
                         "query_string": query.encode(), "root_path": "", "headers": [(b"host", b"127.0.0.1:8080")],
                         "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080)}
                await asgi_app(scope, receive, send)
                assert b"".join(parts) == expected, parts

        loop.run_until_complete(repeat(calls // 10))    # warm up
        started = time.process_time()
        loop.run_until_complete(repeat(calls))
        loop.close()
        return (time.process_time() - started) / calls * 1e6
    for _ in range(calls // 10):                        # warm up
        once()
    started = time.process_time()
    for _ in range(calls):
        once()
    return (time.process_time() - started) / calls * 1e6


if __name__ == "__main__":
    for name in REAL_APPS:
        try:
            print(f"{name}: {app_cost_us(name):.1f} us of CPU per request, called directly")
        except ImportError as error:
            print(f"{name}: skipped ({error})")

"""WSGI (PEP 3333) adapter: environ, start_response / exc_info, write(), response iterables, close(),
HEAD, wsgi.input (chunked and streamed bodies), wsgi.errors, wsgi.file_wrapper, the access log.

Every app runs under wsgiref.validate.validator (the wsgi_server fixture), and the wsgi_problems
fixture fails the test if anything was logged on the fastcore loggers, an unraisable exception
occurred (an iterable never closed) or a WSGIWarning was raised, unless the test takes the records
it provokes. Apps whose server-side behaviour the validator's wrapping would hide (len() of a
one-item list, wsgi.file_wrapper handed over for sendfile) are validated in-process and then
served bare.
"""
import hashlib
import http.client
import json
import os
import re
import socket
import sys
import threading
import time

import pytest

import fastcore
from conftest import HTTPReader, ResponseReader, connect, read_chunked_response, validate_in_process, wait_until

TIMEOUT = 5.0


def request(port, method="GET", path="/", body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


def text_app(body=b"ok", status="200 OK", extra=()):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain")] + list(extra))
        return [body]
    return app


# -- environ -------------------------------------------------------------------------------------

def environ_app(environ, start_response):
    """The environ as JSON: every str value, and the type facts of the wsgi.* ones."""
    described = {key: value for key, value in environ.items() if isinstance(value, str)}
    described["wsgi.version"] = list(environ["wsgi.version"])
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated"):
        described[key] = environ[key]
    described["file_wrapper_is_fastcore"] = environ["wsgi.file_wrapper"] is fastcore.FileWrapper
    described["errors_has_write"] = callable(getattr(environ["wsgi.errors"], "write", None))
    described["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode("latin-1")
    data = json.dumps(described).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def raw_exchange(port, data):
    """Send raw request bytes; return (status, headers, body) of the one response."""
    with connect(port, TIMEOUT) as sock:
        sock.sendall(data)
        status, headers, body, complete = read_chunked_response(sock, TIMEOUT)
        assert complete
        return status, headers, body


def test_environ_contents(wsgi_server):
    # No trusted proxy: the X-Forwarded-For below is only a header here (tests/test_proxy.py
    # has what a trusted one changes).
    srv = wsgi_server(environ_app, forwarded_allow_ips="")
    with connect(srv.port, TIMEOUT) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(b"POST /a%20b/caf%C3%A9/x%2Fy?q=%20v&r=1 HTTP/1.1\r\n"
                     b"Host: example.test:8080\r\n"
                     b"Content-Type: text/plain; charset=latin-1\r\n"
                     b"Content-Length: 5\r\n"
                     b"X-Repeated: a\r\n"
                     b"X-Forwarded-For: 10.0.0.1\r\n"
                     b"X-Forwarded_For: 6.6.6.6\r\n"
                     b"x-repeated: b\r\n"
                     b"X-Latin: caf\xe9\r\n"
                     b"Cookie: a=1\r\n"
                     b"Cookie: b=2\r\n"
                     b"\r\n"
                     b"hello")
        status, headers, body, complete = read_chunked_response(sock, TIMEOUT)
    assert status == 200 and complete
    env = json.loads(body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    # Percent-decoded bytes as latin-1 (PEP 3333): é is UTF-8 c3 a9 -> two latin-1 characters.
    assert env["PATH_INFO"] == "/a b/caf\u00c3\u00a9/x/y"
    assert env["QUERY_STRING"] == "q=%20v&r=1"
    assert env["REQUEST_URI"] == env["RAW_URI"] == "/a%20b/caf%C3%A9/x%2Fy?q=%20v&r=1"
    assert env["CONTENT_TYPE"] == "text/plain; charset=latin-1"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(srv.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["HTTP_HOST"] == "example.test:8080"
    assert env["HTTP_X_REPEATED"] == "a,b"
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"          # the underscore spelling is dropped
    assert env["HTTP_X_LATIN"] == "caf\u00e9"                   # latin-1 decoded
    assert env["HTTP_COOKIE"] == "a=1; b=2"                      # cookies join with "; "
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["file_wrapper_is_fastcore"] and env["errors_has_write"]
    assert env["body"] == "hello"


def test_environ_http10_without_body_or_host(wsgi_server):
    srv = wsgi_server(environ_app)
    status, headers, body = raw_exchange(srv.port, b"GET / HTTP/1.0\r\n\r\n")
    assert status == 200
    env = json.loads(body)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["PATH_INFO"] == "/" and env["QUERY_STRING"] == ""
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env and "HTTP_HOST" not in env
    assert env["body"] == ""


ENVIRON_PROBES = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /app/p%41th/%7e?x=1&y=%20 HTTP/1.1\r\nHost: a\r\nX-Padded: \t v a l \t\r\n\r\n",
    b"GET /app HTTP/1.0\r\n\r\n",
    b"GET /application? HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\ncookie: b=2\r\nX-A_B: dropped\r\n\r\n",
    b"GET http://example.test/app/x?q HTTP/1.1\r\nHost: example.test\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"DELETE /app/%E2%82%AC HTTP/1.1\r\nHost: a\r\nContent-Type: x/y\r\nContent-Type: z\r\n"
    b"Accept: */*\r\nX-Empty:\r\n\r\n",
    b"PATCH /app/ HTTP/1.1\r\nHost: a\r\nX-High: \xe9\xff\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
]


def test_compiled_environ_matches_the_python_adapter(wsgi_problems):
    """pyext/wsgi.pxi builds the environ on the compiled engine, WSGIHandler.environ() on the pure
    one: for the same bytes they give the same environ (but REMOTE_PORT, the client's own)."""
    from fastcore.pure.wsgi import WSGIServer as PureWSGIServer
    environs = []
    for server_class in (fastcore.WSGIServer, PureWSGIServer):
        with server_class(environ_app, host="127.0.0.1", port=0, threads=1, root_path="/app") as srv:
            answers = []
            for probe in ENVIRON_PROBES:
                status, headers, body = raw_exchange(srv.port, probe)
                assert status == 200, probe
                answers.append(json.loads(body) if body else headers)
            for answer in answers:
                if isinstance(answer, dict):
                    answer.pop("REMOTE_PORT")
                    answer.pop("SERVER_PORT")
            environs.append(answers)
    compiled, python = environs
    for probe, mine, theirs in zip(ENVIRON_PROBES, compiled, python):
        assert mine == theirs, probe


def test_a_handler_subclass_overriding_environ_is_called(server, wsgi_problems):
    """The compiled fast path stands in for WSGIHandler.__call__ and environ(): a subclass that
    overrides environ() must still have it called (the adapter is a native handler, so the
    engine's own Server runs it)."""

    class TaggingHandler(fastcore.WSGIHandler):
        def environ(self, request, errors=None):
            environ = super().environ(request, errors)
            environ["app.tag"] = "tagged"
            return environ

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ.get("app.tag", "missing").encode()]

    srv = server(TaggingHandler(app), threads=1)
    assert request(srv.port)[2] == b"tagged"


def test_a_handler_subclass_overriding_finish_is_called(server, wsgi_problems):
    """_finish (wsgi.errors flushed, access log written) is replaced by the fast path too."""
    finished = []

    class CountingHandler(fastcore.WSGIHandler):
        def _finish(self, exchange, sent):
            finished.append((exchange.code, sent))
            super()._finish(exchange, sent)

    srv = server(CountingHandler(text_app(b"four")), threads=1)
    assert request(srv.port)[2] == b"four"
    assert wait_until(lambda: finished == [(200, 4)], 5)


@pytest.mark.parametrize("path, script_name, path_info", [
    ("/app/x/y", "/app", "/x/y"),
    ("/app", "/app", ""),
    ("/app/", "/app", "/"),
    ("/application", "/app", "/application"),      # a prefix only at a segment boundary
    ("/other", "/app", "/other"),                  # a proxy that already stripped the prefix
    ("/app/%41", "/app", "/A"),
])
def test_root_path_sets_script_name_and_strips_path_info(wsgi_server, path, script_name, path_info):
    srv = wsgi_server(environ_app, root_path="/app/")
    status, _, body = request(srv.port, path=path)
    assert status == 200
    env = json.loads(body)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script_name, path_info)


def test_root_path_must_start_with_slash():
    with pytest.raises(fastcore.ConfigError):
        fastcore.WSGIServer(text_app(), root_path="app")


# -- response framing ----------------------------------------------------------------------------

def test_one_item_list_goes_out_with_content_length(wsgi_server):
    app = text_app(b"Hello, World!")
    assert validate_in_process(app)[2] == b"Hello, World!"
    srv = wsgi_server(app, validate=False)         # bare: the validator's wrapper hides the list
    status, headers, body = raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (status, body) == (200, b"Hello, World!")
    assert headers["content-length"] == "13" and "transfer-encoding" not in headers
    assert headers["content-type"] == "text/plain"


def test_iterable_with_len_one_goes_out_with_content_length(wsgi_server):
    class OnePart:
        def __init__(self):
            self.closed = False

        def __len__(self):
            return 1

        def __iter__(self):
            yield b"single"

        def close(self):
            self.closed = True

    made = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        made.append(OnePart())
        return made[-1]

    validate_in_process(app)
    srv = wsgi_server(app, validate=False)
    status, headers, body = raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (status, body, headers.get("content-length")) == (200, b"single", "6")
    assert made[-1].closed


def test_validated_list_streams_and_declared_length_is_used(wsgi_server):
    """Under the validator the list is an opaque iterator: without a Content-Length it is streamed
    (chunked); with one, the adapter gathers the body and it goes out with Content-Length."""
    def app(environ, start_response):
        headers = [("Content-Type", "text/plain")]
        if environ["PATH_INFO"] == "/declared":
            headers.append(("Content-Length", "9"))
        start_response("200 OK", headers)
        return [b"abc", b"def", b"ghi"]

    srv = wsgi_server(app)
    status, headers, body = raw_exchange(srv.port, b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (status, body) == (200, b"abcdefghi")
    assert headers.get("transfer-encoding") == "chunked"
    status, headers, body = raw_exchange(srv.port, b"GET /declared HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (status, body) == (200, b"abcdefghi")
    assert headers.get("content-length") == "9" and "transfer-encoding" not in headers


def test_generator_app_streams_chunked_and_close_delimited_on_http10(wsgi_server):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        for i in range(200):
            yield b"part %d\n" % i

    expected = b"".join(b"part %d\n" % i for i in range(200))
    srv = wsgi_server(app)
    status, headers, body = raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (status, body, headers.get("transfer-encoding")) == (200, expected, "chunked")
    status, headers, body = raw_exchange(srv.port, b"GET / HTTP/1.0\r\n\r\n")
    assert (status, body) == (200, expected)
    assert "transfer-encoding" not in headers and "content-length" not in headers


def test_declared_content_length_bounds_the_body(wsgi_server):
    """PEP 3333: no more bytes than the app's Content-Length, and iteration stops there."""
    pulled = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])

        def body():
            for part in (b"hel", b"lo world", b"never"):
                pulled.append(part)
                yield part
        return body()

    srv = wsgi_server(app)
    with connect(srv.port, TIMEOUT) as sock:
        reader = ResponseReader(sock)
        for _ in range(2):                           # the connection stays usable
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            response = reader.read_response()
            assert (response.status, response.body) == (200, b"hello")
            assert response.headers["content-length"] == "5"
    assert b"never" not in pulled


def test_empty_iterable_and_empty_parts(wsgi_server):
    def app(environ, start_response):
        start_response("204 No Content", [])
        yield b""

    srv = wsgi_server(app)
    status, headers, body = raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (status, body) == (204, b"")


def test_write_callable_data_comes_before_the_iterable(wsgi_server):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one,")
        write(b"")
        write(b"two,")
        if environ["PATH_INFO"] == "/gen":
            def rest():
                yield b"three,"
                yield b"four"
            return rest()
        return [b"three"]

    srv = wsgi_server(app)
    assert request(srv.port, path="/list")[2] == b"one,two,three"
    assert request(srv.port, path="/gen")[2] == b"one,two,three,four"


def test_custom_status_and_headers_pass_through(wsgi_server):
    srv = wsgi_server(text_app(b"nope", "418 I'm a teapot", [("X-One", "1"), ("Set-Cookie", "a=1"),
                                                             ("Set-Cookie", "b=2")]))
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        raw = b""
        while not raw.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, raw
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 418 ")
    assert "X-One: 1" in lines
    assert [line for line in lines if line.startswith("Set-Cookie")] == ["Set-Cookie: a=1", "Set-Cookie: b=2"]
    assert body == b"4\r\nnope\r\n0\r\n\r\n"


@pytest.mark.parametrize("body_kind", ["list", "generator"])
def test_app_server_and_date_fields_replace_ours(wsgi_server, body_kind):
    """An app that sets Server or Date (Flask's send_file sets Date) gets one of each, its own
    (waitress and granian do the same); an app that sets neither gets ours."""
    date = "Tue, 01 Dec 2026 00:00:00 GMT"

    def app(environ, start_response):
        own = [("Date", date), ("Server", "app-server")] if environ["PATH_INFO"] == "/own" else []
        start_response("200 OK", [("Content-Type", "text/plain")] + own)
        return [b"body"] if body_kind == "list" else (part for part in [b"bo", b"dy"])

    srv = wsgi_server(app)
    client = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
    try:
        for _ in range(2):                          # the second time through the field caches
            for path, server_values in (("/own", ["app-server"]), ("/theirs", ["fastcore"])):
                client.request("GET", path)
                response = client.getresponse()
                assert response.status == 200 and response.read() == b"body"
                assert response.msg.get_all("server") == server_values
                assert len(response.msg.get_all("date")) == 1
                assert (response.msg["date"] == date) == (path == "/own")
    finally:
        client.close()


def test_async_applications_are_refused_at_start(wsgi_server, server):
    """An `async def` WSGI-shaped app would answer every request 500 ("coroutine object is not
    iterable"), an ASGI app likewise: both are refused when the server is built, on both engines,
    as are async native handlers."""
    import functools

    async def wsgi_shaped(environ, start_response):
        return [b"never"]

    async def asgi(scope, receive, send):
        pass

    class Framework:
        async def __call__(self, scope, receive, send):
            pass

    with pytest.raises(TypeError, match=r"async function \(async def\); a WSGI application is a plain"):
        wsgi_server(wsgi_shaped, validate=False)
    for app in (asgi, Framework(), functools.partial(asgi)):
        with pytest.raises(TypeError, match="this is an ASGI application"):
            wsgi_server(app, validate=False)
    with pytest.raises(TypeError, match="a native handler is a plain callable"):
        server(wsgi_shaped)


def test_environ_over_a_unix_socket_names_the_server_from_host(wsgi_server, tmp_path):
    """A unix socket's address has no host or port (SERVER_NAME was "127.0.0.1", SERVER_PORT "0"):
    they come from Host, as in gunicorn; the peer has no address, so REMOTE_ADDR is "" and
    REMOTE_PORT is left out (gunicorn's choice; uvicorn leaves out both)."""
    keys = ("SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({key: environ.get(key) for key in keys}).encode()]

    path = str(tmp_path / "wsgi.sock")
    srv = wsgi_server(app, uds=path)
    cases = [(b"Host: example.com:8080\r\n", "example.com", "8080"),
             (b"Host: example.com\r\n", "example.com", "80"),
             (b"Host: [::1]:8000\r\n", "[::1]", "8000"),
             (b"", "localhost", "80")]
    for host_line, name, port in cases:
        version = b"HTTP/1.1" if host_line else b"HTTP/1.0"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path)
            sock.sendall(b"GET / " + version + b"\r\n" + host_line + b"Connection: close\r\n\r\n")
            status, _, body, _ = HTTPReader(sock, TIMEOUT).read()
        assert status == 200
        described = json.loads(body)
        assert (described["SERVER_NAME"], described["SERVER_PORT"]) == (name, port), described
        assert described["REMOTE_ADDR"] == "" and described["REMOTE_PORT"] is None, described


def test_keep_alive_and_pipelining_across_response_kinds(wsgi_server, tmp_path):
    data = os.urandom(30000)
    (tmp_path / "f.bin").write_bytes(data)

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if path == "/list":
            return [b"list"]
        if path == "/gen":
            return (part for part in (b"g", b"e", b"n"))
        return environ["wsgi.file_wrapper"](open(tmp_path / "f.bin", "rb"), 4096)

    srv = wsgi_server(app)
    with connect(srv.port, TIMEOUT) as sock:
        reader = HTTPReader(sock, TIMEOUT)
        sock.sendall(b"".join(b"GET /%s HTTP/1.1\r\nHost: h\r\n\r\n" % p for p in (b"list", b"gen", b"file") * 3))
        for _ in range(3):
            for expected in (b"list", b"gen", data):
                status, headers, body, complete = reader.read()
                assert (status, complete) == (200, True)
                assert body == expected


def test_streamed_parts_reach_the_client_as_they_are_yielded(wsgi_server):
    """A server-sent-events generator: its first part is on the wire while the generator is still
    running (it waits for the client to have read that part before it yields the next)."""
    first_read = threading.Event()
    waited = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        yield b"data: one\n\n"
        waited.append(first_read.wait(2 * TIMEOUT))
        yield b"data: two\n\n"

    srv = wsgi_server(app)
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
        received = b""
        while b"data: one\n\n" not in received:      # times out if the part is held back
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert b"two" not in received
        first_read.set()
        reader = HTTPReader(sock, TIMEOUT)
        reader.buffer = received
        status, headers, body, complete = reader.read()
    assert waited == [True]
    assert (status, body, complete) == (200, b"data: one\n\ndata: two\n\n", True)
    assert headers["transfer-encoding"] == "chunked"


@pytest.mark.parametrize("validate", [True, False])
def test_streamed_body_with_declared_length_goes_out_with_content_length(wsgi_server, validate):
    """An iterable of several parts with the app's Content-Length is streamed raw with that
    length (not chunked, whatever its size) and the connection stays open, HTTP/1.1 and 1.0."""
    part = bytes(range(256)) * 256                  # 64 KiB
    count = 40                                      # 2.5 MiB: far more than the adapter would hold
    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(part) * count))])
        bodies.append(ClosingBody([part] * count))
        return bodies[-1]

    srv = wsgi_server(app, validate=validate)
    with connect(srv.port, 10) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
        for _ in range(2):
            response = reader.read_response()
            assert response.status == 200
            assert response.headers["content-length"] == str(len(part) * count)
            assert "transfer-encoding" not in response.headers
            assert response.headers.get("connection", "").lower() != "close"
            assert response.body == part * count
        sock.sendall(b"GET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = reader.read_response()
        assert response.headers["content-length"] == str(len(part) * count)
        assert response.body == part * count
        sock.sendall(b"GET /4 HTTP/1.1\r\nHost: h\r\n\r\n")     # still open
        assert reader.read_response().body == part * count
    for body in bodies:
        assert body.closed.wait(TIMEOUT) and body.closes == 1


def test_body_shorter_than_declared(wsgi_server, wsgi_problems):
    """A complete body shorter than the app's Content-Length is an application error, answered
    500 before anything is sent; a streamed one goes out with the declared length as far as it
    goes, then the connection is closed (the client sees it truncated) and an error is logged."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        if environ["PATH_INFO"] == "/stream":
            return iter([b"abc", b"def"])
        return [b"short"]

    srv = wsgi_server(app, validate=False)
    status, _, body = request(srv.port, path="/list")
    assert status == 500 and b"short" not in body
    wsgi_problems.take("fastcore.error", "declared Content-Length: 10")
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, body, complete = read_chunked_response(sock, TIMEOUT)
    assert (status, headers["content-length"], body, complete) == (200, "10", b"abcdef", False)
    wsgi_problems.take("fastcore.error", "short of its Content-Length")


@pytest.mark.parametrize("status, reason", [
    ("299 Custom", "Custom"),                       # no standard phrase for 299
    ("200 Everything Is Fine", "Everything Is Fine"),
    ("404 Not Found", "Not Found"),
    ("200", "OK"),                                  # a bare code gets the standard phrase
])
def test_reason_phrase_passes_through(wsgi_server, tmp_path, status, reason):
    (tmp_path / "f.bin").write_bytes(b"file body")

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/replaced":
            start_response("200 OK", [("Content-Type", "text/plain")])
            try:
                raise LookupError("replaced")
            except LookupError:
                start_response(status, [("Content-Type", "text/plain")], sys.exc_info())
            return [b"replaced"]
        start_response(status, [("Content-Type", "text/plain")])
        if path == "/gen":
            return (part for part in (b"g", b"en"))
        if path == "/file":
            return environ["wsgi.file_wrapper"](open(tmp_path / "f.bin", "rb"))
        return [b"list"]

    srv = wsgi_server(app, validate=False)          # a bare code is outside the validator's rules
    with connect(srv.port, TIMEOUT) as sock:
        reader = HTTPReader(sock, TIMEOUT)
        for path, expected in ((b"/list", b"list"), (b"/gen", b"gen"), (b"/file", b"file body"),
                               (b"/replaced", b"replaced")):
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path)
            while b"\r\n" not in reader.buffer:
                assert reader._fill(), reader.buffer
            status_line = reader.buffer.partition(b"\r\n")[0].decode("latin-1")
            code, _, body, complete = reader.read()
            assert status_line == f"HTTP/1.1 {status[:3]} {reason}"
            assert (code, body, complete) == (int(status[:3]), expected, True)


# -- start_response and exceptions ---------------------------------------------------------------

def test_exc_info_before_headers_replaces_the_response(wsgi_server):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ZeroDivisionError("handled")
        except ZeroDivisionError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    srv = wsgi_server(app)
    status, _, body = request(srv.port)
    assert (status, body) == (503, b"sorry")


def test_exc_info_after_headers_reraises_and_closes_the_connection(wsgi_server, wsgi_problems):
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/fine":
            yield b"fine"
            return
        try:
            yield b"first part"
            raise KeyError("mid-body")
        except KeyError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"never"
        finally:
            closed.set()

    srv = wsgi_server(app)
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, body, complete = read_chunked_response(sock, TIMEOUT)
    assert status == 200 and body == b"first part" and not complete
    assert closed.wait(TIMEOUT)
    wsgi_problems.take("fastcore.error", "KeyError: 'mid-body'")
    assert request(srv.port, path="/fine")[2] == b"fine"        # the server keeps serving


def test_exception_before_headers_is_500_logged_and_server_carries_on(wsgi_server, wsgi_problems):
    calls = []

    def app(environ, start_response):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("app exploded")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    srv = wsgi_server(app)
    status, headers, body = request(srv.port)
    assert status == 500 and b"Internal Server Error" in body
    assert "app exploded" not in body.decode()                  # no traceback to the client
    records = wsgi_problems.take("fastcore.error", "ValueError: app exploded")
    assert records[0].exc_info is not None
    assert request(srv.port)[2] == b"fine"


def test_exception_in_first_iteration_is_500_and_closes_the_iterable(wsgi_server, wsgi_problems):
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise RuntimeError("lazy failure")
            yield b"never"
        finally:
            closed.set()

    srv = wsgi_server(app)
    assert request(srv.port)[0] == 500
    assert closed.is_set()
    wsgi_problems.take("fastcore.error", "RuntimeError: lazy failure")


def test_exception_mid_stream_truncates_and_closes(wsgi_server, wsgi_problems):
    closed = threading.Event()

    class Body:
        def __init__(self):
            self.count = 0

        def __iter__(self):
            return self

        def __next__(self):
            self.count += 1
            if self.count > 3:
                raise OSError("disk went away")
            return b"x" * 1000

        def close(self):
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    srv = wsgi_server(app)
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, body, complete = read_chunked_response(sock, TIMEOUT)
    assert status == 200 and not complete and body == b"x" * 3000
    assert closed.wait(TIMEOUT)
    wsgi_problems.take("fastcore.error", "OSError: disk went away")


def test_start_response_twice_without_exc_info_is_an_error(wsgi_server, wsgi_problems):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"x"]

    srv = wsgi_server(app)
    assert request(srv.port)[0] == 500
    wsgi_problems.take("fastcore.error", "already called")


def test_app_that_never_calls_start_response_is_500(wsgi_server, wsgi_problems):
    def app(environ, start_response):
        return [b"no headers"]

    srv = wsgi_server(app, validate=False)
    assert request(srv.port)[0] == 500
    wsgi_problems.take("fastcore.error", "without calling start_response")


@pytest.mark.parametrize("status, headers, message", [
    ("200", [("Content-Type", "text/plain")], None),                   # a bare code is accepted
    ("20 OK", [], "3-digit"),
    ("200 OK", [("Bad Name", "v")], "invalid response header name"),
    ("200 OK", [("X-Split", "a\r\nInjected: 1")], "invalid character"),
    ("200 OK", (("X", "y"),), "must be a list"),
    ("200 OK", [("X", 1)], "must be str"),
    ("200 OK", [("Content-Length", "-1")], "invalid Content-Length"),
])
def test_start_response_checks_its_arguments(wsgi_server, wsgi_problems, status, headers, message):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"body"]

    srv = wsgi_server(app, validate=False)          # the validator would refuse them first
    code, response_headers, body = request(srv.port)
    if message is None:
        assert (code, body) == (200, b"body")
    else:
        assert code == 500
        assert "Injected" not in response_headers
        wsgi_problems.take("fastcore.error", message)


def test_str_body_part_is_refused(wsgi_server, wsgi_problems):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["text, not bytes"]

    srv = wsgi_server(app, validate=False)
    assert request(srv.port)[0] == 500
    wsgi_problems.take("fastcore.error", "TypeError")


# -- close() -------------------------------------------------------------------------------------

class ClosingBody:
    """An iterable with close(), counting calls."""

    def __init__(self, parts, endless=False):
        self.parts = parts
        self.endless = endless
        self.closes = 0
        self.closed = threading.Event()

    def __iter__(self):
        while True:
            yield from self.parts
            if not self.endless:
                return

    def close(self):
        self.closes += 1
        self.closed.set()


@pytest.mark.parametrize("path", ["/short", "/streamed", "/declared"])
def test_close_called_once_on_normal_end(wsgi_server, path):
    bodies = []

    def app(environ, start_response):
        headers = [("Content-Type", "text/plain")]
        if environ["PATH_INFO"] == "/declared":
            headers.append(("Content-Length", "6"))
        start_response("200 OK", headers)
        parts = [b"ab", b"cd", b"ef"] if environ["PATH_INFO"] != "/short" else [b"abcdef"]
        bodies.append(ClosingBody(parts))
        return bodies[-1]

    srv = wsgi_server(app)
    assert request(srv.port, path=path)[2] == b"abcdef"
    assert bodies[0].closed.wait(TIMEOUT)
    time.sleep(0.05)
    assert bodies[0].closes == 1


def test_close_called_when_the_client_disconnects_mid_stream(wsgi_server):
    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        bodies.append(ClosingBody([b"z" * 65536], endless=True))
        return bodies[-1]

    srv = wsgi_server(app)
    sock = connect(srv.port, TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")   # RST
    sock.close()
    assert bodies[0].closed.wait(TIMEOUT), "close() not called after the client left"
    assert bodies[0].closes == 1
    status, _, _ = request(srv.port, path="/again", method="HEAD")
    assert status == 200


def test_close_called_when_the_server_stops_mid_stream(wsgi_server, wsgi_problems):
    """An endless body is cut at the stop's deadline: closed, and the stop says it cut it."""
    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        bodies.append(ClosingBody([b"z" * 65536], endless=True))
        return bodies[-1]

    srv = wsgi_server(app)
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert srv.stop(timeout=0.5) is False          # the endless body was cut off, and it says so
    assert bodies[0].closed.is_set()
    assert wsgi_problems.take("fastcore.error", "deadline cut 1 request")


# -- HEAD ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("validate", [True, False])
def test_head_runs_the_app_sends_no_body_and_closes_the_iterable(wsgi_server, validate):
    """HEAD gets GET's framing headers, no body; the app runs (to its first body part) and its
    iterable is closed. Under the validator a list is an opaque iterator, so GET and HEAD are
    both chunked there; bare, both carry Content-Length."""
    ran = []
    bodies = []

    def app(environ, start_response):
        ran.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/stream":
            bodies.append(ClosingBody([b"streamed ", b"body"], endless=True))
            return bodies[-1]
        return [b"twelve bytes"]

    validate_in_process(app, {"PATH_INFO": "/list"})
    ran.clear()
    srv = wsgi_server(app, validate=validate)
    framing = ("transfer-encoding", "content-length")
    with connect(srv.port, TIMEOUT) as sock:
        reader = HTTPReader(sock, TIMEOUT)
        sock.sendall(b"HEAD /list HTTP/1.1\r\nHost: h\r\n\r\nGET /list HTTP/1.1\r\nHost: h\r\n\r\n")
        head_status, head_headers, head_body, _ = reader.read("HEAD")
        status, headers, body, _ = reader.read()
        assert (head_status, head_body, status, body) == (200, b"", 200, b"twelve bytes")
        assert {k: head_headers.get(k) for k in framing} == {k: headers.get(k) for k in framing}
        assert head_headers.get("content-length") == (None if validate else "12")
        sock.sendall(b"HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\nGET /list HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, body, _ = reader.read("HEAD")
        assert (status, body, headers.get("transfer-encoding")) == (200, b"", "chunked")
        status, headers, body, _ = reader.read()   # the next response follows the head directly
        assert body == b"twelve bytes"
    assert ran == ["HEAD", "GET", "HEAD", "GET"]
    assert bodies[0].closed.wait(TIMEOUT)


def test_head_keeps_the_declared_content_length(wsgi_server):
    """A framework answering HEAD declares the GET's length and gives no body (werkzeug does)."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1234")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"x" * 1234]

    srv = wsgi_server(app)
    with connect(srv.port, TIMEOUT) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        head = reader.read_response(method="HEAD")
        assert head.headers["content-length"] == "1234" and head.body == b""
        get = reader.read_response()
        assert get.headers["content-length"] == "1234" and get.body == b"x" * 1234


@pytest.mark.parametrize("validate", [True, False])
def test_head_with_declared_content_length_and_no_body(wsgi_server, validate):
    """HEAD answered with the GET's Content-Length and no body, whatever its size (nothing is
    made up to fill it), from a list or a generator; the connection goes on."""
    declared = str(10 ** 10)

    def app(environ, start_response):
        assert environ["REQUEST_METHOD"] == "HEAD"
        start_response("200 OK", [("Content-Type", "video/mp4"), ("Content-Length", declared)])
        if environ["PATH_INFO"] == "/gen":
            return (part for part in ())
        return []

    srv = wsgi_server(app, validate=validate)
    with connect(srv.port, TIMEOUT) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"HEAD /list HTTP/1.1\r\nHost: h\r\n\r\nHEAD /gen HTTP/1.1\r\nHost: h\r\n\r\n"
                     b"HEAD /list HTTP/1.0\r\n\r\n")
        for _ in range(3):
            response = reader.read_response(method="HEAD")
            assert (response.status, response.headers["content-length"], response.body) == (200, declared, b"")
            assert "transfer-encoding" not in response.headers
        assert reader.closed_by_peer()              # HTTP/1.0 without keep-alive: closed after it


# -- wsgi.input ----------------------------------------------------------------------------------

def digest_app(environ, start_response):
    """Reads wsgi.input the way the query asks: read(n) blocks, readline, or iteration."""
    stream = environ["wsgi.input"]
    mode = environ["QUERY_STRING"] or "blocks"
    if mode == "blocks":
        parts = []
        while True:
            block = stream.read(1000)
            if not block:
                break
            parts.append(block)
        data = b"".join(parts)
    elif mode == "lines":
        lines = []
        while True:
            line = stream.readline()
            if not line:
                break
            lines.append(line)
        data = b"".join(lines)
        assert all(line.endswith(b"\n") for line in lines[:-1])
    else:
        data = b"".join(stream)
    assert stream.read(10) == b""                   # wsgi.input_terminated: the end reads as b""
    result = json.dumps({"length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                         "content_length": environ.get("CONTENT_LENGTH")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [result]


def send_chunked(sock, path, data, piece=7000):
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    for start in range(0, len(data), piece):
        chunk = data[start:start + piece]
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    sock.sendall(b"0\r\n\r\n")


@pytest.mark.parametrize("mode", ["blocks", "lines", "iter"])
@pytest.mark.parametrize("size", [0, 1000, 100_000, 700_000])
def test_chunked_upload_read_through_wsgi_input(wsgi_server, mode, size):
    data = b"".join(b"line %06d %s\n" % (i, b"y" * (i % 50)) for i in range(size // 20 + 1))[:size]
    srv = wsgi_server(digest_app, body_buffer_size=65536, max_body_size=4 << 20)
    with connect(srv.port, TIMEOUT) as sock:
        for _ in range(2):                          # twice on one connection: the body is consumed exactly
            send_chunked(sock, "/?" + mode, data)
            status, headers, body, complete = read_chunked_response(sock, TIMEOUT)
            assert (status, complete) == (200, True)
            described = json.loads(body)
            assert described == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                 "content_length": None}


@pytest.mark.parametrize("size", [10, 300_000])
def test_content_length_upload_small_and_streamed(wsgi_server, size):
    data = os.urandom(size)
    srv = wsgi_server(digest_app, body_buffer_size=65536, max_body_size=1 << 20)
    status, _, body = request(srv.port, "POST", "/", body=data)
    assert status == 200
    assert json.loads(body) == {"length": size, "sha256": hashlib.sha256(data).hexdigest(),
                                "content_length": str(size)}


def test_large_body_is_streamed_not_held_and_expect_100_continue(wsgi_server):
    """A body over body_buffer_size reaches wsgi.input as a reader over the socket (not a BytesIO
    holding it), and Expect: 100-continue is answered when the app starts reading."""
    def app(environ, start_response):
        reader = environ["wsgi.input"].input        # under the validator's InputWrapper
        kind = type(reader).__name__
        total = 0
        while True:
            block = environ["wsgi.input"].read(4096)
            if not block:
                break
            total += len(block)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{kind} {total}".encode()]

    srv = wsgi_server(app, body_buffer_size=1024, max_body_size=1 << 20)
    data = b"e" * 200_000
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                     % len(data))
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(1)
            assert chunk, interim
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(data)
        status, _, body, complete = read_chunked_response(sock, TIMEOUT)
    assert (status, complete) == (200, True)
    assert body == b"BodyReader 200000"
    status, _, body = request(srv.port, "POST", "/", body=b"small")
    assert body == b"BytesIO 5"


def test_upload_over_max_body_size_is_413(wsgi_server):
    srv = wsgi_server(digest_app, body_buffer_size=1024, max_body_size=50_000)
    with connect(srv.port, TIMEOUT) as sock:
        send_chunked(sock, "/?blocks", b"q" * 80_000)
        status, _, _, _ = read_chunked_response(sock, TIMEOUT)
    assert status == 413


# -- wsgi.errors ---------------------------------------------------------------------------------

def test_wsgi_errors_goes_to_the_fastcore_wsgi_logger(wsgi_server, wsgi_problems):
    def app(environ, start_response):
        errors = environ["wsgi.errors"]
        errors.write("first line\n")
        errors.write("partial ")
        errors.write("line\n")
        errors.writelines(["a\n", "b\n"])
        errors.write("unterminated")
        errors.flush()
        print("printed", file=errors)
        errors.write("Traceback:\n  line 1\nError: x\n")                 # written at once: one record
        errors.write("\n\nsplit ")
        errors.write("across\nwrites\n")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    srv = wsgi_server(app)
    assert request(srv.port)[2] == b"ok"
    messages = [r.getMessage() for r in wsgi_problems.take("fastcore.wsgi", min_count=8)]
    assert messages == ["first line", "partial line", "a", "b", "unterminated", "printed",
                        "Traceback:\n  line 1\nError: x", "split across\nwrites"]


# -- wsgi.file_wrapper ---------------------------------------------------------------------------

def file_app(path):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        handle = open(path, "rb")
        if environ["QUERY_STRING"]:
            handle.seek(int(environ["QUERY_STRING"]))
        return environ["wsgi.file_wrapper"](handle, 8192)
    return app


def test_file_wrapper_real_file_goes_out_with_sendfile(wsgi_server, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 123)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    app = file_app(path)
    assert validate_in_process(app)[2] == data
    srv = wsgi_server(app, validate=False)          # bare: the validator's wrapper hides the FileWrapper
    before = srv.stats()["sendfile_bytes"]
    with connect(srv.port, 10) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        first = reader.read_response()
        sock.sendall(b"GET /?1000 HTTP/1.1\r\nHost: h\r\n\r\n")
        second = reader.read_response()
    assert first.status == 200 and first.headers["content-length"] == str(len(data))
    assert first.body == data
    assert second.headers["content-length"] == str(len(data) - 1000)
    assert second.body == data[1000:]
    # The worker counts a sendfile step after it returns, which can be after the client has read it.
    assert wait_until(lambda: srv.stats()["sendfile_bytes"] - before == 2 * len(data) - 1000, 5)


def test_request_pipelined_after_a_sendfile_body_is_answered(wsgi_server, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"s" * 100_000)
    srv = wsgi_server(file_app(path), validate=False)
    with connect(srv.port, 2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.read_response().body == b"s" * 100_000
        assert reader.read_response().body == b"s" * 100_000


def test_file_wrapper_under_the_validator_is_iterated_identically(wsgi_server, tmp_path):
    data = os.urandom(200_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    srv = wsgi_server(file_app(path))
    status, _, body = request(srv.port)
    assert (status, body) == (200, data)


def test_file_wrapper_with_declared_shorter_length_and_non_file(wsgi_server, tmp_path):
    data = os.urandom(50_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/part":
            start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "100")])
            return environ["wsgi.file_wrapper"](open(path, "rb"))
        import io
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 1000)

    validate_in_process(app, {"PATH_INFO": "/part"})
    srv = wsgi_server(app, validate=False)
    status, headers, body = request(srv.port, path="/part")
    assert (status, body, headers["Content-Length"]) == (200, data[:100], "100")
    status, headers, body = request(srv.port, path="/bytesio")
    assert (status, body) == (200, data)


def test_file_wrapper_with_declared_length_uses_sendfile(wsgi_server, wsgi_problems, tmp_path):
    """A declared Content-Length up to what the file holds from its position is sent with
    sendfile(2), exactly that many bytes; one beyond it is iterated and falls short (the
    connection closes after what the file had, with an error logged)."""
    data = os.urandom(300_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    def app(environ, start_response):
        offset, length = (int(n) for n in environ["QUERY_STRING"].split(","))
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(length))])
        handle = open(path, "rb")
        handle.seek(offset)
        return environ["wsgi.file_wrapper"](handle, 65536)

    srv = wsgi_server(app, validate=False)
    before = srv.stats()["sendfile_bytes"]
    with connect(srv.port, TIMEOUT) as sock:
        reader = ResponseReader(sock)
        for offset, length in ((0, 120_000), (1000, 299_000), (299_999, 0)):
            sock.sendall(b"GET /?%d,%d HTTP/1.1\r\nHost: h\r\n\r\n" % (offset, length))
            response = reader.read_response()
            assert response.headers["content-length"] == str(length)
            assert response.body == data[offset:offset + length]
    assert wait_until(lambda: srv.stats()["sendfile_bytes"] - before == 120_000 + 299_000, 5)
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"GET /?1000,300000 HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, body, complete = read_chunked_response(sock, TIMEOUT)
    assert (status, headers["content-length"], body, complete) == (200, "300000", data[1000:], False)
    wsgi_problems.take("fastcore.error", "short of its Content-Length")


# -- access log ----------------------------------------------------------------------------------

ACCESS_LINE = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                         r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-) (?P<duration>\d+)us$')


def wait_for(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_access_log_lines(wsgi_server, wsgi_problems, access_lines, tmp_path):
    (tmp_path / "f.bin").write_bytes(b"f" * 5000)

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [("Content-Type", "text/plain")])
        if path == "/stream":
            return (b"s" * 10 for _ in range(3))
        if path == "/file":
            return environ["wsgi.file_wrapper"](open(tmp_path / "f.bin", "rb"))
        return [b"hello"]

    srv = wsgi_server(app, validate=False, access_log=True)
    assert request(srv.port, path="/x?y=1")[0] == 200
    assert request(srv.port, path="/stream")[2] == b"s" * 30
    assert request(srv.port, path="/file")[2] == b"f" * 5000
    assert request(srv.port, "HEAD", "/x")[0] == 200
    assert request(srv.port, path="/boom")[0] == 500
    wait_for(lambda: len(access_lines) == 5)
    parsed = [ACCESS_LINE.match(line) for line in access_lines]
    assert all(parsed), access_lines
    summary = sorted((m["request"], m["status"], m["bytes"]) for m in parsed)
    assert summary == sorted([("GET /x?y=1 HTTP/1.1", "200", "5"), ("GET /stream HTTP/1.1", "200", "30"),
                              ("GET /file HTTP/1.1", "200", "5000"), ("HEAD /x HTTP/1.1", "200", "-"),
                              ("GET /boom HTTP/1.1", "500", "-")])
    wsgi_problems.take("fastcore.error", "RuntimeError: boom")


def test_access_log_counts_what_the_declared_length_lets_out(wsgi_server, access_lines):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return iter([b"hel", b"lo world", b"never"])

    srv = wsgi_server(app, validate=False, access_log=True)
    assert request(srv.port, path="/capped")[2] == b"hello"
    assert request(srv.port, "HEAD", "/capped")[1]["Content-Length"] == "5"
    wait_for(lambda: len(access_lines) == 2)
    summary = sorted((m["request"], m["status"], m["bytes"]) for m in map(ACCESS_LINE.match, access_lines))
    assert summary == [("GET /capped HTTP/1.1", "200", "5"), ("HEAD /capped HTTP/1.1", "200", "-")]


def test_access_log_for_native_handlers_and_never_twice(server, wsgi_problems, access_lines):
    """Server(handler, access_log=True) logs a native handler's responses; a handler that logs
    itself (a WSGIHandler with access_log, an access_logged wrapper) is not logged again."""
    from fastcore.access import access_logged

    def native(request):
        if request.path == "/stream":
            return fastcore.Response((part for part in (b"str", b"eam")), 299, reason="Custom")
        return fastcore.Response(b"native", content_type="text/plain")

    wsgi = text_app(b"wsgi")
    servers = {
        "native": server(native, access_log=True),
        "wrapped": server(access_logged(native), access_log=True),
        "wsgi-server": fastcore.WSGIServer(wsgi, host="127.0.0.1", port=0, access_log=True).start(),
        "wsgi-handler-logging": server(fastcore.WSGIHandler(wsgi, fastcore.ServerConfig(access_log=True)),
                                       access_log=True),
        "wsgi-handler-quiet": server(fastcore.WSGIHandler(wsgi), access_log=True),
        "off": server(native),
    }
    try:
        for name, srv in servers.items():
            access_lines.clear()
            status, headers, body = request(srv.port, path="/" + name)
            assert status == 200 and body in (b"native", b"wsgi")
            if name == "native":
                with connect(srv.port, TIMEOUT) as sock:
                    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
                    reader = HTTPReader(sock, TIMEOUT)
                    status, _, body, complete = reader.read()
                assert (status, body, complete) == (299, b"stream", True)
            expected = 0 if name == "off" else 2 if name == "native" else 1
            if expected:
                wait_for(lambda: len(access_lines) >= expected)
            time.sleep(0.1)                         # a second line for the same response would be here by now
            assert len(access_lines) == expected, (name, access_lines)
            lines = [ACCESS_LINE.match(line) for line in access_lines]
            assert all(lines), access_lines
            if expected:
                assert lines[0]["request"] == f"GET /{name} HTTP/1.1" and lines[0]["status"] == "200"
            if name == "native":
                assert (lines[1]["request"], lines[1]["status"], lines[1]["bytes"]) == \
                    ("GET /stream HTTP/1.1", "299", "6")
    finally:
        servers["wsgi-server"].stop()


@pytest.mark.compiled_only("the WSGI fast path is the compiled engine's")
def test_access_log_keeps_the_wsgi_fast_path(engine, wsgi_server, python_wsgi_calls, access_lines):
    """A WSGIServer with access_log writes the lines itself, so its requests still go through
    pyext/wsgi.pxi, not through the Python WSGIHandler.__call__ (counted here)."""
    srv = wsgi_server(text_app(b"logged"), validate=False, access_log=True)
    assert request(srv.port, path="/one")[2] == b"logged"
    assert request(srv.port, path="/two")[2] == b"logged"
    wait_for(lambda: len(access_lines) == 2)
    assert python_wsgi_calls == []


def test_the_server_declares_the_wsgi_fast_path_in_its_dispatch():
    """Server._dispatch() names the WSGI adapter to the core (Dispatch.wsgi) only when the compiled
    WSGI path gives what calling the handler would: the adapter is not overridden by a subclass and
    no access-log wrapper has to see its responses. The metrics route keeps it, with its path."""
    app = text_app(b"x")

    class Overriding(fastcore.WSGIHandler):
        def environ(self, request, errors=None):
            return super().environ(request, errors)

    plain = fastcore.WSGIServer(app)._dispatch()
    assert plain.wsgi is plain.handler and isinstance(plain.wsgi, fastcore.WSGIHandler)
    assert plain.wrapper_path is None
    metered = fastcore.WSGIServer(app, metrics_path="/metrics")._dispatch()
    assert isinstance(metered.wsgi, fastcore.WSGIHandler) and metered.handler is not metered.wsgi
    assert metered.wrapper_path == "/metrics"
    logging_itself = fastcore.WSGIServer(app, access_log=True, metrics_path="/m")._dispatch()
    assert isinstance(logging_itself.wsgi, fastcore.WSGIHandler) and logging_itself.wrapper_path == "/m"
    wrapped_for_the_log = fastcore.Server(fastcore.WSGIHandler(app), access_log=True)._dispatch()
    assert wrapped_for_the_log.wsgi is None and wrapped_for_the_log.wrapper_path is None
    assert fastcore.Server(Overriding(app))._dispatch().wsgi is None
    native = fastcore.Server(lambda request: b"native", metrics_path="/metrics")._dispatch()
    assert native.wsgi is None and native.wrapper_path is None and callable(native.handler)
    assert fastcore.Server(None)._dispatch().handler is None


def test_native_reason_phrase_survives_the_access_log(server, access_lines):
    def native(request):
        return fastcore.Response(iter([b"a", b"b"]), 299, reason="Custom Reason")

    srv = server(native, access_log=True)
    with connect(srv.port, TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert received.startswith(b"HTTP/1.1 299 Custom Reason\r\n")
    wait_for(lambda: len(access_lines) == 1)


def test_access_log_off_by_default(wsgi_server, access_lines):
    srv = wsgi_server(text_app())
    assert request(srv.port)[0] == 200
    assert srv.config.access_log is False
    assert access_lines == []


# -- API -----------------------------------------------------------------------------------------

def test_server_wsgi_is_defined_on_the_class():
    """Server.wsgi is part of Server itself (fastcore.server), not patched on by importing another
    module; fastcore.pure.Server has its own, giving the pure WSGIServer."""
    from fastcore import server as server_module
    import fastcore.pure
    assert "wsgi" in vars(server_module.Server)
    assert "wsgi" in vars(fastcore.pure.Server)
    assert fastcore.WSGIServer is server_module.WSGIServer and fastcore.wsgi.WSGIServer is fastcore.WSGIServer
    assert fastcore.pure.WSGIServer is fastcore.pure.wsgi.WSGIServer


def test_server_wsgi_and_serve_wsgi_api(wsgi_problems):
    srv = fastcore.Server.wsgi(text_app(b"via Server.wsgi"), host="127.0.0.1", port=0)
    assert isinstance(srv, fastcore.WSGIServer) and isinstance(srv, fastcore.Server)
    with srv:
        assert request(srv.port)[2] == b"via Server.wsgi"
    assert not srv.running

    # serve_wsgi blocks until stopped: run it on a thread and stop it through the server it made.
    made = []
    original_init = fastcore.WSGIServer.__init__

    def spy_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        made.append(self)

    fastcore.WSGIServer.__init__ = spy_init
    try:
        thread = threading.Thread(target=fastcore.serve_wsgi, args=(text_app(b"via serve_wsgi"),),
                                  kwargs={"host": "127.0.0.1", "port": 0}, daemon=True)
        thread.start()
        wait_for(lambda: made and made[0].running)
    finally:
        fastcore.WSGIServer.__init__ = original_init
    try:
        assert request(made[0].port)[2] == b"via serve_wsgi"
    finally:
        made[0].stop()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_wsgi_server_restarts_on_a_new_port(wsgi_problems):
    srv = fastcore.WSGIServer(environ_app, host="127.0.0.1", port=0)
    ports = []
    for _ in range(2):
        with srv:
            ports.append(srv.port)
            assert json.loads(request(srv.port)[2])["SERVER_PORT"] == str(srv.port)
    assert len(ports) == 2

"""ASGI 3 behaviour over real sockets, on both engines (the `asgi_server` fixture): the scope, the body in one message
or in parts, framing of what the app sends, the errors an app can make, disconnects, lifespan,
pipelining, contextvars, backpressure, the stop, and AsyncServer on the caller's loop."""
import asyncio
import contextvars
import functools
import json
import os
import re
import socket
import threading
import time

import pytest

import fastcore
import fastcore.pure
from fastcore.asgi import is_asgi_app
from conftest import (HTTPReader, ResponseReader, connect, raw_request,
                      read_until_closed, wait_until)

TIMEOUT = 5.0
ASGI_LIFESPAN = "off"           # the small apps here answer HTTP only; the lifespan tests ask for it


async def read_body(receive):
    """The whole request body, and the sizes of the messages it came in."""
    parts = []
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        parts.append(message["body"])
        if not message.get("more_body", False):
            return b"".join(parts), [len(part) for part in parts]


async def respond(send, status=200, body=b"", headers=((b"content-type", b"text/plain"),)):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def echo_app(scope, receive, send):
    """The scope (JSON-able parts) and the body, as JSON."""
    if scope["type"] != "http":
        return
    body, sizes = await read_body(receive)
    described = {key: scope[key] for key in ("type", "http_version", "method", "scheme", "path", "root_path",
                                             "asgi", "client", "server", "extensions")}
    described["raw_path"] = scope["raw_path"].decode("latin-1")
    described["query_string"] = scope["query_string"].decode("latin-1")
    described["headers"] = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]]
    described["body"] = body.decode("latin-1")
    described["sizes"] = sizes
    described["state"] = scope.get("state")
    await respond(send, body=json.dumps(described).encode(), headers=[(b"content-type", b"application/json")])


def get_json(port, target="/", headers=b"", body=b""):
    request = (b"POST " if body else b"GET ") + target.encode() + b" HTTP/1.1\r\nHost: t\r\n" + headers
    if body:
        request += b"Content-Length: %d\r\n" % len(body)
    with connect(port) as sock:
        sock.sendall(request + b"\r\n" + body)
        status, fields, data, complete = HTTPReader(sock).read()
    assert status == 200 and complete, (status, data)
    return json.loads(data), fields


# -- the scope and the request body ----------------------------------------------------------------

def test_scope(asgi_server):
    srv = asgi_server(echo_app)
    described, fields = get_json(srv.port, "/a%20b/%C3%A9?x=1&y=%20", b"X-Test: Value\r\nX-Test: two\r\n", b"hello")
    assert described["type"] == "http" and described["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert described["http_version"] == "1.1" and described["method"] == "POST" and described["scheme"] == "http"
    assert described["path"] == "/a b/\u00e9" and described["raw_path"] == "/a%20b/%C3%A9"
    assert described["query_string"] == "x=1&y=%20" and described["root_path"] == ""
    assert described["headers"][:3] == [["host", "t"], ["x-test", "Value"], ["x-test", "two"]]
    assert described["client"][0] == "127.0.0.1" and described["server"] == ["127.0.0.1", srv.port]
    assert described["body"] == "hello" and described["sizes"] == [5]
    assert described["extensions"] == {"http.response.pathsend": {}}
    assert described["state"] is None                    # the app has no lifespan
    assert fields["server"] == "fastcore" and "date" in fields and fields["content-length"]


def test_scope_header_names_are_lower_case_bytes(asgi_server):
    # Common names come from a table of shared objects, the rest are lowered while copied: both
    # must give exactly the lower-cased name, and a name one letter off a common one is its own.
    srv = asgi_server(echo_app)
    sent = [("USER-AGENT", "a"), ("Content-Type", "b"), ("CooKie", "c"), ("Cookif", "d"),
            ("X-Forwarded-FOR", "e"), ("X-Odd_Name!1~", "f"), ("sec-fetch-mode", "g")]
    described, _ = get_json(srv.port, "/", b"".join(f"{n}: {v}\r\n".encode() for n, v in sent))
    assert described["headers"][1:] == [[name.lower(), value] for name, value in sent]


@pytest.mark.parametrize("target, expected_path, expected_raw", [
    ("/app/items", "/app/items", "/app/items"),        # the prefix is there: as is
    ("/items", "/app/items", "/app/items"),            # a proxy stripped it: put back
    ("/app", "/app", "/app"),
    ("/application", "/app/application", "/app/application"),
])
def test_root_path(asgi_server, target, expected_path, expected_raw):
    srv = asgi_server(echo_app, root_path="/app/")
    described, _ = get_json(srv.port, target)
    assert (described["root_path"], described["path"], described["raw_path"]) == ("/app", expected_path, expected_raw)


def test_large_body_arrives_in_parts_and_100_continue_on_the_first_receive(asgi_server):
    seen = []

    async def app(scope, receive, send):
        seen.append("called")
        body, sizes = await read_body(receive)
        seen.append(sizes)
        await respond(send, body=b"%d" % len(body))

    srv = asgi_server(app, body_buffer_size=1024, max_body_size=8 << 20)
    body = os.urandom(3 << 20)
    with connect(srv.port) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        reader = ResponseReader(sock)
        interim = reader.read_response()
        assert interim.status == 100 and seen[:1] == ["called"]     # sent when the app asked for the body
        sock.sendall(body)
        response = reader.read_response()
    assert response.status == 200 and response.body == b"%d" % len(body)
    sizes = seen[1]
    assert sum(sizes) == len(body) and len(sizes) > 1 and max(sizes) < len(body)


def test_100_continue_is_not_sent_when_the_app_answers_without_reading(asgi_server):
    async def app(scope, receive, send):
        await respond(send, status=413, body=b"no")

    srv = asgi_server(app, body_buffer_size=1024)
    with connect(srv.port) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
        response = ResponseReader(sock).read_response()
        assert response.status == 413 and response.body == b"no"
        assert response.headers["connection"] == "close"     # the unread body ends the connection


def test_small_body_with_100_continue(asgi_server):
    srv = asgi_server(echo_app)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.read_response().status == 100
        sock.sendall(b"abc")
        assert json.loads(reader.read_response().body)["body"] == "abc"


def test_chunked_request_body(asgi_server):
    srv = asgi_server(echo_app)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert json.loads(ResponseReader(sock).read_response().body)["body"] == "abcde"


# -- what the app sends ----------------------------------------------------------------------------

def streaming_app(parts, headers=()):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    return app


def test_streamed_response_is_chunked_on_http11_and_keeps_the_connection(asgi_server):
    srv = asgi_server(streaming_app([b"one ", b"two ", b"three"]))
    with connect(srv.port) as sock:
        reader = HTTPReader(sock)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            status, fields, body, complete = reader.read()
            assert (status, body, complete) == (200, b"one two three", True)
            assert fields["transfer-encoding"] == "chunked" and "content-length" not in fields


def test_streamed_response_with_a_declared_length(asgi_server):
    srv = asgi_server(streaming_app([b"ab", b"cd"], [(b"content-length", b"4")]))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = ResponseReader(sock).read_response()
    assert response.body == b"abcd" and response.headers["content-length"] == "4"
    assert "transfer-encoding" not in response.headers


def test_http10_streamed_response_is_close_delimited(asgi_server):
    srv = asgi_server(streaming_app([b"one ", b"two"]))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert b"Connection: close" in head and body == b"one two"


def test_http10_keep_alive_and_close(asgi_server):
    srv = asgi_server(echo_app)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reader = ResponseReader(sock)
        first = reader.read_response()
        assert first.headers["connection"] == "keep-alive"
        assert json.loads(first.body)["http_version"] == "1.0"
        sock.sendall(b"GET /b HTTP/1.0\r\n\r\n")
        second = reader.read_response()
        assert second.headers["connection"] == "close" and reader.closed_by_peer()


def test_head_sends_no_body(asgi_server):
    async def app(scope, receive, send):
        await respond(send, body=b"twelve bytes")

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        head = reader.read_response("HEAD")
        assert head.headers["content-length"] == "12" and head.body == b""
        assert reader.read_response().body == b"twelve bytes"        # the next request is intact


def test_pathsend(asgi_server, tmp_path):
    data = os.urandom(200_000)
    (tmp_path / "file.bin").write_bytes(data)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(tmp_path / "file.bin")})

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
        reader = ResponseReader(sock)
        for _ in range(2):
            response = reader.read_response()
            assert response.headers["content-length"] == str(len(data)) and response.body == data


def test_the_apps_server_and_date_fields_win(asgi_server):
    async def app(scope, receive, send):
        await respond(send, body=b"x", headers=[(b"Server", b"mine"), (b"date", b"then"), (b"X-Two", b"1"),
                                                (b"x-two", b"2")])

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = ResponseReader(sock).read_response()
    assert response.getall("server") == ["mine"] and response.getall("date") == ["then"]
    assert response.getall("x-two") == ["1", "2"]


def test_static_routes_keep_answering_beside_the_app(asgi_server):
    srv = asgi_server(echo_app, static={"/health": b"OK"})
    with connect(srv.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /app HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.read_response().body == b"OK"
        assert json.loads(reader.read_response().body)["path"] == "/app"


# -- the app's mistakes ----------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    [(b"x-evil", b"a\r\nX-Injected: 1")],
    [(b"x-evil", b"a\nX-Injected: 1")],
    [(b"x-evil", b"a\x00b")],
    [(b"x-evil\r\nX-Injected", b"1")],
    [(b"bad name", b"1")],
])
def test_response_splitting_is_refused(asgi_server, error_log, headers):
    async def app(scope, receive, send):
        await respond(send, body=b"never", headers=headers)

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = ResponseReader(sock).read_response()
    assert response.status == 500 and b"Injected" not in response.raw and b"never" not in response.raw
    assert wait_until(lambda: error_log.records, TIMEOUT)
    assert "RuntimeError" in error_log.text()
    error_log.records.clear()


@pytest.mark.parametrize("mistake, answer", [
    ("body before start", 500),
    ("no response", 500),
    ("raise before start", 500),
    ("bad status", 500),
    ("interim status", 500),
    ("unknown message", 500),
    ("start twice", "cut"),
    ("raise after start", "cut"),
    ("raise mid-body", "cut"),
    ("longer than content-length", "cut"),
    ("shorter than content-length", "cut"),
    ("return mid-body", "cut"),
])
def test_app_mistakes_give_a_500_before_the_start_and_a_cut_connection_after(asgi_server, error_log, mistake, answer):
    async def app(scope, receive, send):
        start = {"type": "http.response.start", "status": 200, "headers": []}
        if mistake == "body before start":
            await send({"type": "http.response.body", "body": b"x"})
        elif mistake == "no response":
            return
        elif mistake == "raise before start":
            raise ValueError("the app broke")
        elif mistake == "bad status":
            await send({"type": "http.response.start", "status": "200", "headers": []})
        elif mistake == "interim status":
            await send({"type": "http.response.start", "status": 103, "headers": []})
        elif mistake == "unknown message":
            await send({"type": "http.response.nonsense"})
        elif mistake == "start twice":
            await send(start)
            await send(start)
        elif mistake == "raise after start":
            await send(start)
            raise ValueError("the app broke")
        elif mistake == "raise mid-body":
            await send(start)
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise ValueError("the app broke")
        elif mistake == "longer than content-length":
            await send({**start, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"abc"})
        elif mistake == "shorter than content-length":
            await send({**start, "headers": [(b"content-length", b"9")]})
            await send({"type": "http.response.body", "body": b"ab", "more_body": True})
            await send({"type": "http.response.body", "body": b"c"})
        elif mistake == "return mid-body":
            await send(start)
            await send({"type": "http.response.body", "body": b"part", "more_body": True})

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = HTTPReader(sock)
        if answer == 500:
            status, fields, body, complete = reader.read()
            assert status == 500 and complete
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")       # the connection stays usable
            assert reader.read()[0] == 500
        else:
            try:
                status, fields, body, complete = reader.read()
            except Exception:                                      # closed before a head: cut too
                complete = False
            assert not complete
            assert read_until_closed(sock) == b""
    assert wait_until(lambda: len(error_log.records) >= (2 if answer == 500 else 1), TIMEOUT)
    assert "ASGI app failed on GET /" in error_log.text()
    error_log.records.clear()


# -- disconnects -----------------------------------------------------------------------------------

def test_early_disconnect_is_received_as_http_disconnect(asgi_server):
    received = []
    done = threading.Event()

    async def app(scope, receive, send):
        received.append(await receive())
        received.append(await receive())            # waits for the client to go
        done.set()

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        assert wait_until(lambda: received, TIMEOUT)
    assert done.wait(TIMEOUT)
    assert received == [{"type": "http.request", "body": b"hi", "more_body": False}, {"type": "http.disconnect"}]


def test_receive_after_the_response_is_http_disconnect(asgi_server):
    received = []

    async def app(scope, receive, send):
        await receive()
        await respond(send, body=b"done")
        received.append(await receive())

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ResponseReader(sock).read_response().body == b"done"
        assert wait_until(lambda: received, TIMEOUT)
    assert received == [{"type": "http.disconnect"}]


def test_send_after_disconnect_raises_client_disconnected(asgi_server):
    outcome = []
    done = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        except OSError as error:
            # What it is, not the error itself: its traceback would keep this request's cycle
            # alive past the server's stop (the leak check counts live cycles).
            outcome.append((isinstance(error, fastcore.ClientDisconnected), isinstance(error, OSError)))
            done.set()
            raise                                   # not logged: the client left

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")   # RST
    assert done.wait(TIMEOUT)
    assert outcome[0] == (True, True)


# -- order, isolation, backpressure ------------------------------------------------------------------

def test_pipelined_requests_are_answered_in_order_one_cycle_at_a_time(asgi_server):
    active = []
    overlap = []

    async def app(scope, receive, send):
        active.append(scope["path"])
        if len(active) > 1:
            overlap.append(list(active))
        delay = {"/1": 0.05, "/2": 0.0, "/3": 0.02}.get(scope["path"], 0)
        await asyncio.sleep(delay)
        active.remove(scope["path"])
        await respond(send, body=scope["path"].encode())

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in (1, 2, 3, 4)))
        reader = ResponseReader(sock)
        assert [reader.read_response().body for _ in range(4)] == [b"/1", b"/2", b"/3", b"/4"]
    assert overlap == []


def test_contextvars_do_not_leak_between_requests(asgi_server):
    variable = contextvars.ContextVar("request_marker")
    seen = []

    async def app(scope, receive, send):
        seen.append(variable.get(None))
        variable.set(scope["path"])
        await respond(send, body=b"ok")

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5)))
        reader = ResponseReader(sock)
        for _ in range(5):
            reader.read_response()
    for _ in range(3):
        raw_request(srv.port, b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n")
    assert seen == [None] * 8


def test_a_streamed_response_waits_for_a_slow_client(asgi_server):
    part = b"x" * (256 << 10)
    total_parts = 128                                   # 32 MiB: far more than the socket buffers hold
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(total_parts):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            sent.append(1)
        await send({"type": "http.response.body", "body": b""})

    srv = asgi_server(app)
    with connect(srv.port, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_until(lambda: sent, TIMEOUT)
        time.sleep(0.3)                                 # shows that send() does not run ahead
        assert len(sent) < total_parts // 2, len(sent)
        status, fields, body, complete = HTTPReader(sock, timeout=30).read()
    assert complete and len(body) == len(part) * total_parts and len(sent) == total_parts


# -- lifespan --------------------------------------------------------------------------------------

def lifespan_app(events, fail=None, state_value="from startup"):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            events.append(message["type"])
            if fail == "message":
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            if fail == "raise":
                raise ConnectionError("no database")
            scope["state"]["value"] = state_value
            scope["state"]["hits"] = []
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            events.append(message["type"])
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        state["mine"] = scope["path"]                   # a shallow copy: not seen by the next request
        state["hits"].append(scope["path"])             # the objects inside are shared
        await respond(send, body=json.dumps({"value": state["value"], "keys": sorted(state)}).encode())
    return app


def test_lifespan_state_reaches_each_request_as_a_shallow_copy(asgi_server):
    events = []
    srv = asgi_server(lifespan_app(events), lifespan="on")
    assert events == ["lifespan.startup"]
    for path in ("/a", "/b"):
        body = raw_request(srv.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        assert json.loads(body.partition(b"\r\n\r\n")[2]) == {"value": "from startup", "keys": ["hits", "mine", "value"]}
    srv.stop()
    assert events == ["lifespan.startup", "lifespan.shutdown"]


@pytest.mark.parametrize("fail, mode", [("message", "auto"), ("message", "on"), ("raise", "on")])
def test_lifespan_startup_failure_stops_the_start(engine, fail, mode):
    from conftest import asgi_server_class
    server_class = asgi_server_class(engine)
    srv = server_class(lifespan_app([], fail=fail), host="127.0.0.1", port=0, lifespan=mode)
    with pytest.raises(fastcore.LifespanFailed, match="no database"):
        srv.start()
    assert not srv.running and srv._loop_runner is None
    assert not [t for t in threading.enumerate() if t.name.startswith("fastcore-asgi-loop")]


def test_lifespan_auto_serves_an_app_without_lifespan(asgi_server):
    async def app(scope, receive, send):            # as Django's ASGIHandler: refuses the scope
        if scope["type"] != "http":
            raise ValueError("only HTTP")
        await respond(send, body=b"served")

    srv = asgi_server(app, lifespan="auto")
    assert raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").endswith(b"served")


def test_lifespan_on_refuses_an_app_without_lifespan(engine):
    from conftest import asgi_server_class
    srv = asgi_server_class(engine)(echo_app, host="127.0.0.1", port=0, lifespan="on")
    with pytest.raises(fastcore.LifespanFailed, match="without completing its startup"):
        srv.start()


def test_lifespan_off_does_not_call_the_app(asgi_server):
    events = []
    srv = asgi_server(lifespan_app(events), lifespan="off")
    srv.stop()
    assert events == []


# -- stop ------------------------------------------------------------------------------------------

def test_stop_waits_for_a_cycle_and_cancels_it_at_the_deadline(asgi_server, error_log):
    entered = threading.Event()
    cancelled = threading.Event()

    async def app(scope, receive, send):
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    srv = asgi_server(app)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered.wait(TIMEOUT)
        started = time.monotonic()
        assert srv.stop(timeout=0.3) is False              # the deadline cut it
        assert 0.25 < time.monotonic() - started < 3
        assert cancelled.is_set()
        data = read_until_closed(sock)
    assert data == b"" or data.startswith(b"HTTP/1.1 503")
    assert "the deadline cut 1 request(s)" in error_log.text()
    error_log.records.clear()


def test_stop_lets_a_background_task_finish(asgi_server):
    finished = threading.Event()

    async def app(scope, receive, send):
        await respond(send, body=b"now")
        await asyncio.sleep(0.2)                        # after the response: a background task
        finished.set()

    srv = asgi_server(app)
    assert raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").endswith(b"now")
    assert srv.stop(timeout=5) is True
    assert finished.is_set()


# -- the API ----------------------------------------------------------------------------------------

def test_detection_and_constructors():
    async def app(scope, receive, send):
        pass

    class Framework:
        async def __call__(self, scope, receive, send):
            pass

    async def wsgi_shaped(environ, start_response):
        pass

    def wsgi(environ, start_response):
        pass

    assert is_asgi_app(app) and is_asgi_app(Framework()) and is_asgi_app(functools.partial(app))
    assert not is_asgi_app(wsgi_shaped) and not is_asgi_app(wsgi) and not is_asgi_app(Framework)
    assert type(fastcore.Server.asgi(app)) is fastcore.ASGIServer
    assert type(fastcore.pure.Server.asgi(app)) is fastcore.pure.ASGIServer
    assert fastcore.Server.asgi(app, handler_threads=4).config.handler_threads == 0
    with pytest.raises(fastcore.ConfigError, match="root_path must start with '/'"):
        fastcore.ASGIServer(app, root_path="app")
    with pytest.raises(fastcore.ConfigError, match="lifespan must be"):
        fastcore.ASGIServer(app, lifespan="sometimes")
    with pytest.raises(fastcore.ConfigError, match="loop must be"):
        fastcore.ASGIServer(app, loop="trio")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_loop_choice(asgi_server, loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    kinds = []

    async def app(scope, receive, send):
        kinds.append(type(asyncio.get_running_loop()).__module__)
        await respond(send, body=b"ok")

    srv = asgi_server(app, loop=loop)
    raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert kinds and kinds[0].startswith("uvloop" if loop == "uvloop" else "asyncio")
    assert [t for t in threading.enumerate() if t.name == f"fastcore-asgi-loop:{srv.port}"]


def test_async_server_runs_on_the_callers_loop(engine):
    loops = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            loops.append("shutdown")
            return
        loops.append(asyncio.get_running_loop())
        await respond(send, body=b"embedded")

    async def main():
        async with fastcore.AsyncServer(app, host="127.0.0.1", port=0, engine=engine) as server:
            assert server.running and server.url == f"http://127.0.0.1:{server.port}/"
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), TIMEOUT)
            writer.close()
            assert data.endswith(b"embedded")
            assert loops == [asyncio.get_running_loop()]
            assert not [t for t in threading.enumerate() if t.name.startswith("fastcore-asgi-loop")]
        assert not server.running and loops[-1] == "shutdown"

    asyncio.run(asyncio.wait_for(main(), 20))


def test_each_request_runs_in_a_task_made_by_the_loops_task_factory_if_it_has_one(engine):
    # Without a factory the compiled engine builds asyncio.Task itself (a fixed name saves the
    # "Task-<n>" formatting); with one, every request's task must still come from it.
    made = []

    def factory(loop, coroutine, **options):
        task = asyncio.Task(coroutine, loop=loop, **options)
        made.append(task)
        return task

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        current = asyncio.current_task()
        await respond(send, body=b"%d%d" % (current is not None, current in made))

    async def request(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        return data.rpartition(b"\r\n\r\n")[2]

    async def main():
        async with fastcore.AsyncServer(app, host="127.0.0.1", port=0, engine=engine) as server:
            assert await request(server.port) == b"10"      # a task, not one of the factory's
            asyncio.get_running_loop().set_task_factory(factory)
            assert await request(server.port) == b"11"
            asyncio.get_running_loop().set_task_factory(None)
            assert await request(server.port) == b"10"

    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.mark.compiled_only("the pure engine's I/O workers are Python threads")
def test_the_io_workers_never_take_the_gil_for_an_asgi_app(asgi_server):
    srv = asgi_server(echo_app)
    for _ in range(20):
        described, _ = get_json(srv.port, "/x")
        assert described["path"] == "/x"
    stats = srv.stats()
    assert stats["responses"]["2xx"] >= 20 and stats["worker_gil_batches"] == 0


# -- access log and metrics route ------------------------------------------------------------------

ACCESS_LINE = re.compile(r'^(?P<addr>\S+) - - \[[^\]]+\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-) \d+us$')


def test_access_log_writes_one_line_per_response(asgi_server, access_lines, error_log, tmp_path):
    (tmp_path / "f.bin").write_bytes(b"f" * 5000)

    async def app(scope, receive, send):
        await receive()
        if scope["path"] == "/boom":
            raise ValueError("boom")
        if scope["path"] == "/file":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.pathsend", "path": str(tmp_path / "f.bin")})
            return
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cde"})

    srv = asgi_server(app, access_log=True)
    for target in ("/x?y=1", "/file", "/boom"):
        raw_request(srv.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % target.encode())
    assert wait_until(lambda: len(access_lines) == 3, TIMEOUT)
    parsed = [ACCESS_LINE.match(line) for line in access_lines]
    assert all(parsed), access_lines
    assert sorted((m["addr"], m["request"], m["status"], m["bytes"]) for m in parsed) == sorted([
        ("127.0.0.1", "GET /x?y=1 HTTP/1.1", "201", "5"), ("127.0.0.1", "GET /file HTTP/1.1", "200", "5000"),
        ("127.0.0.1", "GET /boom HTTP/1.1", "500", "-")])
    assert wait_until(lambda: error_log.records, TIMEOUT)
    error_log.records.clear()


def test_metrics_route_is_answered_before_the_app(asgi_server):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    srv = asgi_server(app, metrics_path="/metrics")
    raw_request(srv.port, b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n")
    with connect(srv.port) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        response = ResponseReader(sock).read_response()
    assert response.status == 200 and b"fastcore_requests_total" in response.body
    assert seen == ["/other"]

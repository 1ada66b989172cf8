"""What a handler's (or WSGI app's) response head may be: a final status, at most
MAX_RESPONSE_FIELDS fields and MAX_RESPONSE_HEAD_SIZE bytes. Beyond that: a 500, a line on
"fastcore.error", and the connection keeps working (the next response is the next request's)."""
import logging
import threading

import pytest

import fastcore
from conftest import ResponseReader, connect

MAX_RESPONSE_HEAD_SIZE = 65536      # pyext/serializer.pxi, fastcore/pure/response.py
MAX_RESPONSE_FIELDS = 256


def ask_twice(port, path):
    """GET `path` then GET /after on one keep-alive connection: both responses."""
    with connect(port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        first = reader.read_response()
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        return first, reader.read_response()


def head_handler(request):
    path = request.path
    if path.startswith("/status/"):
        return fastcore.Response(b"interim?", status=int(path[8:]))
    if path == "/reason-103":
        return fastcore.Response(b"interim?", status=103, reason="Early Hints")
    if path == "/fields-at-limit":
        return fastcore.Response(b"x", headers=[("X-F%d" % i, "v") for i in range(MAX_RESPONSE_FIELDS)])
    if path == "/fields-over-limit":
        return fastcore.Response(b"x", headers=[("X-F%d" % i, "v") for i in range(MAX_RESPONSE_FIELDS + 1)])
    if path == "/fields-100000":
        return fastcore.Response(b"x", headers={"X-F%d" % i: "v" for i in range(100_000)})
    if path == "/value-near-limit":
        return fastcore.Response(b"x", headers={"X-Big": "v" * (MAX_RESPONSE_HEAD_SIZE - 200)})
    if path == "/value-over-limit":
        return fastcore.Response(b"x", headers={"X-Big": "v" * MAX_RESPONSE_HEAD_SIZE})
    if path == "/value-10mb":
        return fastcore.Response(b"x", headers={"X-Big": "v" * 10_000_000})
    if path == "/fields-generator-over-size":      # no len(): the size bound still holds
        return fastcore.Response(b"x", headers=(("X-G%d" % i, "v" * 100) for i in range(1000)))
    return b"after " + path.encode()


# -- item 3: a 1xx is not a final response ---------------------------------------------------------

@pytest.mark.parametrize("path", [b"/status/100", b"/status/101", b"/status/103", b"/status/199", b"/reason-103"])
def test_interim_status_from_handler_is_a_500_and_logged(server, error_log, path):
    srv = server(head_handler)
    first, after = ask_twice(srv.port, path)
    assert first.status == 500, (first.status, first.body)
    assert b"interim?" not in first.body
    assert (after.status, after.body) == (200, b"after /after")     # no desync: the next answer is ours
    assert error_log.arrived.wait(5)
    assert "interim status" in error_log.text()


def test_final_statuses_still_pass(server):
    srv = server(head_handler)
    first, after = ask_twice(srv.port, b"/status/299")
    assert (first.status, first.body) == (299, b"interim?")
    assert after.status == 200


def test_server_own_100_continue_still_sent(server):
    srv = server(lambda request: b"got " + request.body)
    with connect(srv.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        interim = reader.read_response()
        assert interim.status == 100
        sock.sendall(b"abc")
        final = reader.read_response()
        assert (final.status, final.body) == (200, b"got abc")


@pytest.mark.parametrize("status", ["103 Early Hints", "100 Continue", "101 Switching Protocols"])
def test_interim_status_from_wsgi_app_is_a_500_and_logged(wsgi_server, wsgi_problems, status):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain")])
        return [b"interim?"]

    srv = wsgi_server(app, validate=False)
    first, after = ask_twice(srv.port, b"/x")
    assert first.status == 500
    assert after.status == 500                      # the same app again: still refused, still in step
    wsgi_problems.take("fastcore.error", contains="interim status", min_count=2)


# -- item 5: bounded response heads ----------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    (b"/fields-at-limit", 200),
    (b"/fields-over-limit", 500),
    (b"/fields-100000", 500),
    (b"/value-near-limit", 200),
    (b"/value-over-limit", 500),
    (b"/value-10mb", 500),
    (b"/fields-generator-over-size", 500),
])
def test_response_head_bounds(server, error_log, path, expected):
    srv = server(head_handler)
    first, after = ask_twice(srv.port, path)
    assert first.status == expected, (first.status, len(first.body))
    assert (after.status, after.body) == (200, b"after /after")
    if expected == 500:
        assert len(first.body) < 100 and b"v" * 50 not in first.body
        assert error_log.arrived.wait(5)
        assert "more than the limit" in error_log.text()
    else:
        assert not [r for r in error_log.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("headers, what", [
    ([("X-F%d" % i, "v") for i in range(MAX_RESPONSE_FIELDS + 1)], "header fields"),
    ([("X-Big", "v" * MAX_RESPONSE_HEAD_SIZE)], "response head is"),
])
def test_wsgi_response_head_bounds(wsgi_server, wsgi_problems, headers, what):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/after":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"after"]
        start_response("200 OK", [("Content-Type", "text/plain")] + headers)
        return [b"x"]

    srv = wsgi_server(app, validate=False)     # the validator's iterator would make /after chunked
    first, after = ask_twice(srv.port, b"/big")
    assert first.status == 500
    assert (after.status, after.body) == (200, b"after")
    wsgi_problems.take("fastcore.error", contains=what)

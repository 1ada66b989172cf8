"""The access log of the responses the server writes itself (issue 18 item 2): static routes, the
404 of a server without a handler, and protocol errors, which never reach Python. The compiled core
formats their lines in C on the worker (pyext/access.pxi) and a Python thread writes them on the
"fastcore.access" logger; the pure engine logs them as it writes them. Both engines, one format."""
import re

import pytest

from conftest import raw_request, wait_until

TIMEOUT = 5.0
LINE = re.compile(r'^(?P<addr>\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(?P<request>[^"]*)" '
                  r'(?P<status>\d{3}) (?P<bytes>\d+|-) \d+us$')


def logged(lines, count):
    assert wait_until(lambda: len(lines) >= count, TIMEOUT), lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    return sorted((m["addr"], m["request"], m["status"], m["bytes"]) for m in parsed)


def test_static_routes_404s_and_protocol_errors_are_logged(server, access_lines):
    srv = server(None, static={"/health": b"OK"}, access_log=True, max_body_size=10)
    for request in (b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    b"HEAD /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    b"GET /nope?x=1 HTTP/1.0\r\n\r\n",
                    b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n",
                    b"GET /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"):
        raw_request(srv.port, request)
    assert logged(access_lines, 5) == sorted([
        ("127.0.0.1", "GET /health HTTP/1.1", "200", "2"), ("127.0.0.1", "HEAD /health HTTP/1.1", "200", "-"),
        ("127.0.0.1", "GET /nope?x=1 HTTP/1.0", "404", "10"), ("127.0.0.1", "POST /up HTTP/1.1", "413", "18"),
        ("127.0.0.1", "GET /te HTTP/1.1", "400", "12")])


def test_python_and_core_responses_are_each_logged_once(server, access_lines):
    srv = server(lambda request: b"from python", static={"/health": b"OK"}, access_log=True)
    raw_request(srv.port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    raw_request(srv.port, b"GET /app HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert logged(access_lines, 2) == sorted([
        ("127.0.0.1", "GET /health HTTP/1.1", "200", "2"), ("127.0.0.1", "GET /app HTTP/1.1", "200", "11")])
    srv.stop()
    assert len(access_lines) == 2


@pytest.mark.compiled_only("the pure engine's parser keeps no copy of a request line it refused")
def test_an_unparsable_request_line_is_logged_made_safe(server, access_lines):
    srv = server(None, access_log=True)
    raw_request(srv.port, b'\x16\x03\x01bad "line\\\r\n\r\n')
    assert logged(access_lines, 1) == [("127.0.0.1", "???bad ?line?", "400", "12")]


def test_nothing_is_logged_without_access_log(server, access_lines):
    srv = server(None, static={"/health": b"OK"})
    raw_request(srv.port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    srv.stop()
    assert access_lines == []

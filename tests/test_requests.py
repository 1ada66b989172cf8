"""Requests and responses through real clients: http.client, urllib, curl, and raw sockets."""
import email.utils
import http.client
import json
import shutil
import subprocess
import urllib.request
from datetime import datetime, timezone

import pytest

import fastcore
from conftest import (ResponseReader, assert_standard_fields, connect, echo_handler, get,
                      parse_response, raw_request)


def raw_body_handler(request):
    """/raw returns the request body as is; anything else is described as JSON."""
    if request.path == "/raw":
        return fastcore.Response(request.body, content_type="application/octet-stream")
    return echo_handler(request)


# -- clients ---------------------------------------------------------------------------------------

def test_http_client_get_returns_handler_response(server):
    srv = server(echo_handler)
    status, headers, body = get(srv.port, "/hello?a=1")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    described = json.loads(body)
    assert described["method"] == "GET"
    assert described["path"] == "/hello"
    assert described["query_string"] == "a=1"
    assert described["body"] == ""


def test_http_client_post_body_reaches_handler(server):
    srv = server(raw_body_handler)
    payload = bytes(range(256)) * 1000           # 256000 bytes, every byte value
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request("POST", "/raw", body=payload, headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200
    assert int(response.getheader("Content-Length")) == len(payload)
    assert body == payload


def test_urllib_get_and_post(server):
    srv = server(echo_handler)
    base = f"http://127.0.0.1:{srv.port}"
    with urllib.request.urlopen(base + "/via-urllib?x=y", timeout=5) as response:
        assert response.status == 200
        described = json.loads(response.read())
    assert (described["method"], described["path"], described["query_string"]) == ("GET", "/via-urllib", "x=y")

    with urllib.request.urlopen(base + "/form", data=b"field=value&other=2", timeout=5) as response:
        assert response.status == 200
        described = json.loads(response.read())
    assert described["method"] == "POST"
    assert described["body"] == "field=value&other=2"
    headers = {name.lower(): value for name, value in described["headers"]}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["content-length"] == str(len(b"field=value&other=2"))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_get_and_post(server):
    srv = server(raw_body_handler)
    base = f"http://127.0.0.1:{srv.port}"

    def curl(*args):
        completed = subprocess.run(
            ["curl", "--silent", "--show-error", "--http1.1", "--max-time", "5",
             "--write-out", "\n%{http_code}", *args],
            capture_output=True, timeout=15)
        assert completed.returncode == 0, completed.stderr
        body, _, code = completed.stdout.rpartition(b"\n")
        return int(code), body

    code, body = curl(base + "/curl-get?q=1")
    assert code == 200
    described = json.loads(body)
    assert (described["method"], described["path"], described["query_string"]) == ("GET", "/curl-get", "q=1")

    payload = b"posted by curl \x00\xff" * 100
    completed = subprocess.run(
        ["curl", "--silent", "--show-error", "--http1.1", "--max-time", "5", "--data-binary", "@-",
         "-H", "Content-Type: application/octet-stream", "--output", "-", base + "/raw"],
        input=payload, capture_output=True, timeout=15)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == payload


# -- Request fields --------------------------------------------------------------------------------

def test_request_fields_method_path_query_version_body(server):
    srv = server(echo_handler)
    body = b"some body \xe9"
    data = (b"PUT /a/b%20c/d.txt?x=1&y=%2F&z HTTP/1.1\r\nHost: example.test\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    response = parse_response(raw_request(srv.port, data))
    assert response.status == 200
    described = json.loads(response.body)
    assert described["method"] == "PUT"
    assert described["path"] == "/a/b%20c/d.txt"
    assert described["query_string"] == "x=1&y=%2F&z"
    assert described["http_version"] == "1.1"
    assert described["keep_alive"] is True
    assert described["body"].encode("latin-1") == body
    assert described["body_type"] == "bytes"


def test_request_query_string_is_empty_without_question_mark(server):
    srv = server(echo_handler)
    response = parse_response(raw_request(srv.port, b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n"))
    described = json.loads(response.body)
    assert described["path"] == "/plain"
    assert described["query_string"] == ""
    assert described["body"] == ""


def test_request_query_string_empty_after_bare_question_mark(server):
    srv = server(echo_handler)
    response = parse_response(raw_request(srv.port, b"GET /q? HTTP/1.1\r\nHost: h\r\n\r\n"))
    described = json.loads(response.body)
    assert described["path"] == "/q"
    assert described["query_string"] == ""


def test_request_headers_are_case_insensitive_and_ordered(server):
    srv = server(echo_handler)
    data = (b"GET / HTTP/1.1\r\nHost: h\r\nX-Test-Header: first value\r\nx-REPEATED: one\r\n"
            b"Accept: */*\r\nX-Repeated: two\r\n\r\n")
    response = parse_response(raw_request(srv.port, data))
    described = json.loads(response.body)
    assert described["headers"] == [["Host", "h"], ["X-Test-Header", "first value"], ["x-REPEATED", "one"],
                                     ["Accept", "*/*"], ["X-Repeated", "two"]]
    assert described["header_count"] == 5
    lookups = described["lookups"]
    for spelling in ("x-test-header", "X-TEST-HEADER", "X-Test-Header"):
        assert lookups[spelling] == {"getitem": "first value", "get": "first value", "in": True,
                                     "getall": ["first value"]}
    assert lookups["x-repeated"]["getitem"] == "one"
    assert lookups["x-repeated"]["getall"] == ["one", "two"]
    assert lookups["X-Missing"] == {"getitem": None, "get": "<default>", "in": False, "getall": []}


def test_request_header_values_have_surrounding_whitespace_stripped(server):
    srv = server(echo_handler)
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-Test-Header: \t padded value \t\r\n\r\n"
    described = json.loads(parse_response(raw_request(srv.port, data)).body)
    assert described["lookups"]["X-Test-Header"]["get"] == "padded value"


def test_request_http_1_0_version_reported(server):
    srv = server(echo_handler)
    described = json.loads(parse_response(raw_request(srv.port, b"GET /old HTTP/1.0\r\n\r\n")).body)
    assert described["http_version"] == "1.0"
    assert described["keep_alive"] is False


# -- Response ------------------------------------------------------------------------------------

def test_response_status_headers_and_content_type_are_sent(server):
    def handler(request):
        if request.path == "/dict":
            return fastcore.Response(b"I'm a teapot", status=418, headers={"X-One": "1", "X-Two": "two"},
                                     content_type="application/x-test")
        return fastcore.Response("created", status=201,
                                 headers=[("X-Multi", "a"), ("X-Multi", "b"), ("Cache-Control", "no-store")])

    srv = server(handler)
    response = parse_response(raw_request(srv.port, b"GET /dict HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 418
    assert response.body == b"I'm a teapot"
    assert response.headers["x-one"] == "1"
    assert response.headers["x-two"] == "two"
    assert response.getall("content-type") == ["application/x-test"]
    assert_standard_fields(response)

    response = parse_response(raw_request(srv.port, b"GET /list HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 201
    assert response.body == b"created"
    assert response.getall("x-multi") == ["a", "b"]
    assert response.headers["cache-control"] == "no-store"
    assert_standard_fields(response)


def test_handler_returning_bytes_is_a_200(server):
    srv = server(lambda request: b"plain bytes \x00\x01")
    response = parse_response(raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 200
    assert response.body == b"plain bytes \x00\x01"
    assert int(response.headers["content-length"]) == len(b"plain bytes \x00\x01")


def test_handler_returning_str_is_a_200_utf8(server):
    text = "héllo ✓ wörld"
    srv = server(lambda request: text)
    response = parse_response(raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 200
    assert response.body == text.encode("utf-8")
    assert int(response.headers["content-length"]) == len(text.encode("utf-8"))


def test_response_with_str_body_is_utf8(server):
    srv = server(lambda request: fastcore.Response("ünïcode", content_type="text/plain; charset=utf-8"))
    response = parse_response(raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.body == "ünïcode".encode("utf-8")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_empty_response_body_has_content_length_zero(server):
    srv = server(lambda request: fastcore.Response())
    response = parse_response(raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 200
    assert response.body == b""
    assert response.headers["content-length"] == "0"


def test_every_response_has_date_server_and_content_length(server):
    srv = server(lambda request: fastcore.Response(b"x", status=200 if request.path == "/" else 404),
                 static={"/static": b"static"})
    for request in (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
                    b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n",
                    b"GET /static HTTP/1.1\r\nHost: h\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"):
        response = parse_response(raw_request(srv.port, request))
        assert_standard_fields(response)
        assert response.headers["server"] == "fastcore"
        sent = email.utils.parsedate_to_datetime(response.headers["date"])
        assert response.headers["date"].endswith(" GMT")
        assert abs((datetime.now(timezone.utc) - sent).total_seconds()) < 60


def test_server_name_option_sets_server_field(server):
    srv = server(lambda request: b"x", server_name="unit-test-server", static={"/s": b"s"})
    for path in (b"/", b"/s"):
        response = parse_response(raw_request(srv.port, b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n"))
        assert response.headers["server"] == "unit-test-server"


@pytest.mark.parametrize("style", ["dict", "list", "bytes"])
def test_handler_server_and_date_fields_replace_ours(server, style):
    """A handler's own Server or Date (Flask's send_file sets Date) is sent once, its value winning
    (as waitress and granian do), whatever the shape of its headers and however often it is seen
    (the compiled serializer caches field lines)."""
    date = "Tue, 01 Dec 2026 00:00:00 GMT"
    fields = {"dict": {"Server": "app-server", "Date": date, "X-Other": "1"},
              "list": [("server", "app-server"), ("DATE", date), ("X-Other", "1")],
              "bytes": [(b"Server", b"app-server"), (b"Date", date.encode()), (b"X-Other", b"1")]}[style]

    def handler(request):
        if request.path == "/server":
            return fastcore.Response(b"s", headers={"Server": "only-server"})
        if request.path == "/plain":
            return fastcore.Response(b"p", headers={"X-Other": "1"})
        return fastcore.Response(b"x", headers=fields, content_type="text/plain")

    srv = server(handler)
    for _ in range(3):                              # the second time comes from the field cache
        response = parse_response(raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
        assert response.getall("server") == ["app-server"]
        assert response.getall("date") == [date]
        assert response.getall("x-other") == ["1"] and response.body == b"x"
        response = parse_response(raw_request(srv.port, b"GET /server HTTP/1.1\r\nHost: h\r\n\r\n"))
        assert response.getall("server") == ["only-server"]
        assert len(response.getall("date")) == 1 and response.headers["date"] != date
        response = parse_response(raw_request(srv.port, b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n"))
        assert response.getall("server") == ["fastcore"] and len(response.getall("date")) == 1
        assert_standard_fields(response)


# -- static routes and 404 -----------------------------------------------------------------------

def test_static_route_get_is_served(server):
    srv = server(None, static={"/health": b"OK", "/page": {"body": b"<p>hi</p>", "content_type": "text/html"}})
    response = parse_response(raw_request(srv.port, b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 200
    assert response.body == b"OK"
    assert response.headers["content-type"] == "text/plain"
    assert_standard_fields(response)

    response = parse_response(raw_request(srv.port, b"GET /page HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.body == b"<p>hi</p>"
    assert response.headers["content-type"] == "text/html"


def test_static_route_ignores_query_string(server):
    srv = server(None, static={"/health": b"OK"})
    response = parse_response(raw_request(srv.port, b"GET /health?probe=1 HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 200
    assert response.body == b"OK"


def test_static_route_custom_status(server):
    srv = server(None, static={"/gone": {"body": b"gone", "status": 410}})
    response = parse_response(raw_request(srv.port, b"GET /gone HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 410
    assert response.body == b"gone"


def test_static_route_head_has_no_body_and_same_content_length(server):
    body = b"static body of some length"
    srv = server(None, static={"/file": body})
    with connect(srv.port) as sock:
        # HEAD then GET pipelined on one connection: if the HEAD response carried body bytes,
        # the GET response would not parse.
        sock.sendall(b"HEAD /file HTTP/1.1\r\nHost: h\r\n\r\nGET /file HTTP/1.1\r\nHost: h\r\n\r\n")
        reader = ResponseReader(sock)
        head = reader.read_response(method="HEAD")
        full = reader.read_response()
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(body))
    assert "date" in head.headers and "server" in head.headers
    assert full.status == 200
    assert full.body == body
    assert full.headers["content-length"] == head.headers["content-length"]


def test_static_route_head_via_http_client(server):
    srv = server(None, static={"/health": b"OK"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request("HEAD", "/health")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") == "2"
        assert response.read() == b""
        conn.request("GET", "/health")
        response = conn.getresponse()
        assert response.read() == b"OK"
    finally:
        conn.close()


def test_unknown_path_without_handler_is_404(server):
    srv = server(None, static={"/health": b"OK"})
    response = parse_response(raw_request(srv.port, b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert response.status == 404
    assert_standard_fields(response)
    status, _, _ = get(srv.port, "/health/extra")
    assert status == 404


def test_no_handler_and_no_static_routes_is_404(server):
    srv = server(None)
    status, headers, body = get(srv.port, "/")
    assert status == 404
    assert headers["Server"] and headers["Date"]


def test_static_route_takes_precedence_over_handler(server):
    srv = server(lambda request: b"from python", static={"/health": b"from C"})
    assert get(srv.port, "/health")[2] == b"from C"
    assert get(srv.port, "/other")[2] == b"from python"


def test_date_header_tracks_current_time(server):
    srv = server(None, static={"/s": b"s"})
    first = email.utils.parsedate_to_datetime(get(srv.port, "/s")[1]["Date"])
    now = datetime.now(timezone.utc)
    assert abs((now - first).total_seconds()) < 5

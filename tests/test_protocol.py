"""HTTP/1.1 framing the core implements: chunked request bodies, Expect: 100-continue, strict
Transfer-Encoding rules; and the parser entry point the differential tests use."""
import http.client
import io
import os
import socket
import threading
import time

import pytest

import fastcore
from conftest import (ResponseReader, asgi_server_class, connect, exchange_and_check_close, get,
                      pure_server_class, read_until_closed, start_asgi_servers, start_servers, stop_servers,
                      wait_until)
from fastcore._core import parse_request


class NativeRequestFromScope:
    """What the handlers of this file read from a native Request, built from an ASGI scope and body."""

    def __init__(self, scope, body):
        self.method = scope["method"]
        self.path = scope["raw_path"].decode("latin-1")
        self.query_string = scope["query_string"].decode("latin-1")
        self.target = self.path + ("?" + self.query_string if self.query_string else "")
        self.http_version = scope["http_version"]
        self.headers = fastcore.Headers([(name.decode("latin-1"), value.decode("latin-1"))
                                         for name, value in scope["headers"]])
        self.body = body
        self.stream = io.BytesIO(body)
        self.remote_addr, self.remote_port = scope["client"] or ("", 0)


def asgi_from_native(handler):
    """An ASGI app answering as the native `handler` would, so the protocol corpus also runs through
    the ASGI path (the bridge to the event loop and the ASGI cycle) on both engines."""
    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        result = handler(NativeRequestFromScope(scope, body))
        if not isinstance(result, fastcore.Response):
            result = fastcore.Response(result)
        payload = result.body.encode() if isinstance(result.body, str) else bytes(result.body)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (result.headers or [])]
        if result.content_type:
            headers.append((b"content-type", result.content_type.encode("latin-1")))
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
    return app


# What a native handler's Response can be that an ASGI app has no way to say (iterables whose
# close() is called, FileWrapper, a reason phrase, a Content-Length the server enforces): those
# tests run on native handlers only; tests/test_asgi.py covers the ASGI side of responses.
NATIVE_RESPONSES = pytest.mark.native_responses


@pytest.fixture(params=["native", "asgi"])
def server(request, engine):
    """This file's `server`: conftest's, and the same handlers served as ASGI apps (the request side
    of the protocol corpus, through the bridge to the event loop)."""
    started = []
    if request.param == "asgi" and request.node.get_closest_marker("native_responses"):
        pytest.skip("a native handler's response, which ASGI cannot express")
    if request.param == "native":
        yield start_servers(pure_server_class() if engine == "pure" else fastcore.Server, started)
    else:
        start_asgi = start_asgi_servers(asgi_server_class(engine), started, lifespan="off")
        yield lambda handler=None, **options: start_asgi(asgi_from_native(handler), **options)
    stop_servers(started)


def body_echo(request):
    return request.body


HEAD = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("chunks, body", [
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"5;name=value;flag\r\nhello\r\n0\r\n\r\n", b"hello"),                      # chunk extensions
    pytest.param(b'5 ; q="quoted \\" ext"\r\nhello\r\n0\r\n\r\n', b"hello",         # quoted-string ext
                 marks=pytest.mark.compiled_only("llhttp rejects whitespace around ';' (fastcore/pure/__init__.py)")),
    (b"5\r\nhello\r\n0\r\nTrailer-One: 1\r\nTrailer-Two: two\r\n\r\n", b"hello"),  # trailers
    (b"0\r\n\r\n", b""),
])
def test_chunked_request_body_is_decoded(server, chunks, body):
    srv = server(body_echo)
    with connect(srv.port) as sock:
        sock.sendall(HEAD + chunks)
        response = ResponseReader(sock).read_response()
    assert response.status == 200
    assert response.body == body


def test_chunked_body_split_at_every_offset_gives_the_same_body(server):
    srv = server(body_echo)
    message = HEAD + b"5;x=y\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nT: v\r\n\r\n"
    with connect(srv.port) as sock:
        reader = ResponseReader(sock)
        for offset in range(1, len(message)):
            sock.sendall(message[:offset])
            sock.sendall(message[offset:])
            response = reader.read_response()
            assert (offset, response.status, response.body) == (offset, 200, b"hello world")


def test_chunked_then_pipelined_request_on_the_same_connection(server):
    srv = server(body_echo)
    second = b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
    with connect(srv.port) as sock:
        sock.sendall(HEAD + b"3\r\nxyz\r\n0\r\n\r\n" + second)
        reader = ResponseReader(sock)
        assert reader.read_response().body == b"xyz"
        assert reader.read_response().body == b"abc"


@pytest.mark.parametrize("chunks", [
    b"5\nhello\r\n0\r\n\r\n",                # bare LF after the size
    b"5\r\nhello\n0\r\n\r\n",                # bare LF after the data
    b"5\r\nhelloXY0\r\n\r\n",                # data longer than the size
    b"g\r\nhello\r\n0\r\n\r\n",              # not hex
    b"-5\r\nhello\r\n0\r\n\r\n",             # sign
    b"0x5\r\nhello\r\n0\r\n\r\n",            # 0x prefix
    b"fffffffffffffffff\r\n",                # overflowing size
    b"5;\r\nhello\r\n0\r\n\r\n",             # empty extension name
    b"5\r\nhello\r\n0\r\nBad Trailer: x\r\n\r\n",   # trailer with whitespace in the name
    b"5\r\nhello\r\n0\r\n folded\r\n\r\n",   # obs-fold in trailers
])
def test_bad_chunk_framing_is_400_and_close(server, chunks):
    srv = server(body_echo)
    response, closed = exchange_and_check_close(srv.port, HEAD + chunks)
    assert response.status == 400
    assert closed


def test_chunked_body_over_the_limit_is_413_while_reading(server):
    srv = server(body_echo, max_body_size=10)
    response, closed = exchange_and_check_close(srv.port, HEAD + b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
    assert response.status == 413
    assert closed


@pytest.mark.parametrize("fields, status", [
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),      # CL and TE together
    (b"Transfer-Encoding: gzip\r\n", 400),                             # final coding not chunked
    (b"Transfer-Encoding: chunked, gzip\r\n", 400),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400),   # chunked twice
    (b"Transfer-Encoding: gzip, chunked\r\n", 501),                    # a coding we do not decode
    (b"Transfer-Encoding: identity, chunked\r\n", 501),
])
def test_transfer_encoding_rules(server, fields, status):
    srv = server(body_echo)
    request = b"POST / HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n0\r\n\r\n"
    response, closed = exchange_and_check_close(srv.port, request)
    assert response.status == status
    assert closed


def test_transfer_encoding_on_http10_is_400(server):
    srv = server(body_echo)
    response, closed = exchange_and_check_close(
        srv.port, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert response.status == 400
    assert closed


def test_expect_100_continue_is_answered_before_the_body_is_sent(server):
    srv = server(body_echo)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        reader = ResponseReader(sock)
        interim = reader.read_response()
        assert interim.status == 100
        sock.sendall(b"hello")
        final = reader.read_response()
    assert (final.status, final.body) == (200, b"hello")


def test_expect_100_continue_is_not_sent_when_the_body_came_with_the_head(server):
    srv = server(body_echo)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
        response = ResponseReader(sock).read_response()
    assert (response.status, response.body) == (200, b"hello")


def test_expect_100_continue_with_a_body_over_the_limit_gets_413_not_100(server):
    srv = server(body_echo, max_body_size=4)
    response, closed = exchange_and_check_close(
        srv.port, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert response.status == 413
    assert closed


def test_unknown_expectation_is_417(server):
    srv = server(body_echo)
    response, closed = exchange_and_check_close(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n")
    assert response.status == 417
    assert closed


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses_carry_no_body(server, status):
    import fastcore
    srv = server(lambda request: fastcore.Response(b"ignored", status=status))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        for _ in range(2):                       # the second response proves no body bytes leaked
            response = reader.read_response()
            assert response.status == status
            assert response.body == b""
            assert "content-length" not in response.headers


def test_parse_request_reports_fields():
    status, fields = parse_request(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert status == "ok"
    assert (fields["method"], fields["path"], fields["target"], fields["version"]) == ("GET", "/a/b", "/a/b?x=1", "1.1")
    assert fields["headers"] == [(b"Host", b"h"), (b"Connection", b"close")]
    assert fields["connection_close"]


def test_parse_request_needs_more_for_a_partial_head():
    assert parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n") == ("need-more", None)


def describe_target(request):
    return f"{request.method} {request.path} {request.query_string}"


@pytest.mark.parametrize("target, described", [
    (b"http://example.com/a/b?x=1", "GET /a/b x=1"),           # absolute-form (RFC 9112 3.2.2)
    (b"HTTP://example.com", "GET / "),                          # scheme is case-insensitive; no path
    (b"/plain?", "GET /plain "),
    (b"/q?a?b", "GET /q a?b"),                                  # only the first '?' separates
])
def test_request_target_forms(server, target, described):
    srv = server(describe_target)
    with connect(srv.port) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: example.com\r\n\r\n")
        response = ResponseReader(sock).read_response()
    assert response.body.decode() == described


def test_options_asterisk_is_accepted_and_asterisk_elsewhere_is_400(server):
    srv = server(describe_target)
    with connect(srv.port) as sock:
        sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ResponseReader(sock).read_response().body == b"OPTIONS * "
    response, closed = exchange_and_check_close(srv.port, b"GET * HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 400 and closed


def test_absolute_form_reaches_a_static_route(server):
    srv = server(None, static={"/health": b"OK"})
    with connect(srv.port) as sock:
        sock.sendall(b"GET http://t/health HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ResponseReader(sock).read_response().body == b"OK"


# -- streamed responses ---------------------------------------------------------------------------

class TrackedBody:
    """An iterable response body that records whether the server called close()."""

    def __init__(self, parts, fail_after=None):
        self.parts = list(parts)
        self.fail_after = fail_after
        self.closed = threading.Event()

    def __iter__(self):
        for index, part in enumerate(self.parts):
            if self.fail_after is not None and index == self.fail_after:
                raise RuntimeError("body failed mid-stream")
            yield part

    def close(self):
        self.closed.set()



@NATIVE_RESPONSES
def test_streamed_body_goes_out_chunked_on_http11_and_close_is_called(server):
    import fastcore
    body = TrackedBody([b"alpha,", b"", "beta,", b"gamma"])
    srv = server(lambda request: fastcore.Response(body))
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Length") is None
    assert response.read() == b"alpha,beta,gamma"
    assert body.closed.wait(5)
    conn.request("GET", "/")                     # the connection is still usable
    assert conn.getresponse().read() == b"alpha,beta,gamma"
    conn.close()


@NATIVE_RESPONSES
def test_streamed_body_is_close_delimited_on_http10(server):
    import fastcore
    srv = server(lambda request: fastcore.Response(iter([b"one", b"two"])))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = read_until_closed(sock)
    head, _, payload = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Transfer-Encoding" not in head
    assert payload == b"onetwo"


@NATIVE_RESPONSES
def test_large_streamed_body_arrives_whole(server):
    import fastcore
    part = bytes(range(256)) * 64                      # 16 KiB
    srv = server(lambda request: fastcore.Response(part for _ in range(512)))   # 8 MiB
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/")
    data = conn.getresponse().read()
    conn.close()
    assert len(data) == len(part) * 512 and data[:len(part)] == part and data[-len(part):] == part


@NATIVE_RESPONSES
def test_head_with_streamed_body_sends_no_body_and_closes_the_iterable(server):
    import fastcore
    body = TrackedBody([b"never sent"])
    srv = server(lambda request: fastcore.Response(body) if request.path == "/" else b"plain")
    with connect(srv.port) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        head = reader.read_response(method="HEAD")
        assert head.status == 200 and head.body == b""
        assert reader.read_response().body == b"plain"  # framing intact after the HEAD
    assert body.closed.wait(5)


@NATIVE_RESPONSES
def test_exception_mid_stream_closes_the_connection_without_the_last_chunk(server, caplog):
    import fastcore
    body = TrackedBody([b"first", b"second"], fail_after=1)
    srv = server(lambda request: fastcore.Response(body))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_closed(sock)
    assert b"5\r\nfirst\r\n" in data
    assert not data.endswith(b"0\r\n\r\n")
    assert body.closed.wait(5)
    assert any("mid-stream" in record.getMessage() or record.exc_info for record in caplog.records
               if record.name == "fastcore.error")


@NATIVE_RESPONSES
def test_client_gone_mid_stream_still_gets_close_called(server):
    import fastcore
    body = TrackedBody([b"x" * 65536] * 2000)          # 128 MiB: far more than socket buffers
    srv = server(lambda request: fastcore.Response(body))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    assert body.closed.wait(10)
    assert get(srv.port)[0] == 200


# -- files and peers ------------------------------------------------------------------------------

@NATIVE_RESPONSES
def test_file_wrapper_goes_out_with_sendfile_and_is_closed(server, tmp_path):
    import fastcore
    payload = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    opened = []

    def handler(request):
        handle = open(path, "rb")
        handle.seek(17)                          # from the current position to the end
        opened.append(handle)
        return fastcore.Response(fastcore.FileWrapper(handle), content_type="application/octet-stream")

    srv = server(handler)
    status, headers, body = get(srv.port, timeout=10)
    assert status == 200
    assert int(headers["Content-Length"]) == len(payload) - 17
    assert body == payload[17:]
    # The worker counts a sendfile step after it returns, which can be after the client has read it.
    assert wait_until(lambda: srv.stats()["sendfile_bytes"] == len(payload) - 17, 5)
    assert wait_until(lambda: opened[0].closed, 5)


@NATIVE_RESPONSES
def test_file_wrapper_over_a_non_file_is_iterated(server):
    import fastcore
    srv = server(lambda request: fastcore.Response(fastcore.FileWrapper(io.BytesIO(b"abc" * 5000), 1000)))
    status, _, body = get(srv.port)
    assert (status, body) == (200, b"abc" * 5000)
    assert srv.stats()["sendfile_bytes"] == 0


def test_request_knows_the_client_address(server):
    srv = server(lambda request: f"{request.remote_addr} {request.remote_port}")
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        body = ResponseReader(sock).read_response().body.decode()
        assert body == f"127.0.0.1 {sock.getsockname()[1]}"


def test_request_stream_reads_the_body(server):
    srv = server(lambda request: b"|".join([request.stream.readline(), request.stream.read(2), request.stream.read()]))
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\nline\nabcdefg")
        assert ResponseReader(sock).read_response().body == b"line\n|ab|cdefg"



# -- a handler's own Content-Length and reason phrase ----------------------------------------------

@NATIVE_RESPONSES
def test_head_carries_the_declared_content_length_without_a_body(server):
    import fastcore
    srv = server(lambda request: fastcore.Response(b"", headers={"Content-Length": "1234"}))
    with connect(srv.port) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        for _ in range(2):
            response = reader.read_response(method="HEAD")
            assert response.headers["content-length"] == "1234" and response.body == b""
            assert len(response.getall("content-length")) == 1


@NATIVE_RESPONSES
def test_a_body_longer_than_declared_is_cut_and_a_shorter_one_is_500(server):
    import fastcore
    srv = server(lambda request: fastcore.Response(b"0123456789", headers=[("Content-Length", request.path[1:])]))
    with connect(srv.port) as sock:
        sock.sendall(b"GET /4 HTTP/1.1\r\nHost: t\r\n\r\nGET /20 HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.read_response().body == b"0123"
        assert reader.read_response().status == 500


@NATIVE_RESPONSES
def test_streamed_body_with_declared_length_goes_out_with_content_length(server):
    import fastcore
    srv = server(lambda request: fastcore.Response(iter([b"abc", b"defg", b"hij-extra"]),
                                                   headers={"Content-Length": "10"}))
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    for _ in range(2):                           # keep-alive survives
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") is None
        assert response.getheader("Content-Length") == "10"
        assert response.read() == b"abcdefghij"
    conn.close()


@NATIVE_RESPONSES
def test_streamed_body_short_of_its_declared_length_closes_the_connection(server):
    import fastcore
    srv = server(lambda request: fastcore.Response(iter([b"abc"]), headers={"Content-Length": "10"}))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_closed(sock)
    assert data.endswith(b"\r\n\r\nabc")


@NATIVE_RESPONSES
def test_reason_phrase_of_the_handler_is_sent(server):
    import fastcore
    srv = server(lambda request: fastcore.Response(b"x", status=299, reason="Custom Thing"))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = ResponseReader(sock).read_response()
    assert (response.status, response.reason) == (299, "Custom Thing")


@NATIVE_RESPONSES
def test_each_streamed_part_reaches_the_client_before_the_next_is_produced(server):
    import fastcore
    first_part_seen = threading.Event()

    def events():
        yield b"data: one\n\n"
        assert first_part_seen.wait(5), "the first event never reached the client"
        yield b"data: two\n\n"

    srv = server(lambda request: fastcore.Response(events(), content_type="text/event-stream"))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"data: one" not in data:
            data += sock.recv(65536)
        first_part_seen.set()
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
    assert b"data: two" in data


@NATIVE_RESPONSES
def test_request_pipelined_behind_a_file_is_answered(server, tmp_path):
    import fastcore
    path = tmp_path / "f.bin"
    path.write_bytes(b"F" * 200000)
    srv = server(lambda request: fastcore.Response(fastcore.FileWrapper(open(path, "rb")))
                 if request.path == "/file" else b"after")
    with connect(srv.port) as sock:
        sock.sendall(b"GET /file HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        assert len(reader.read_response().body) == 200000
        assert reader.read_response().body == b"after"


def test_an_empty_line_split_between_reads_before_a_request_is_ignored(server):
    srv = server(lambda request: b"ok")
    with connect(srv.port) as sock:
        sock.sendall(b"\r")
        # The server must have read the lone CR before the rest arrives (bytes_received counts it).
        assert wait_until(lambda: srv.stats()["bytes_received"] >= 1, 10)
        sock.sendall(b"\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ResponseReader(sock).read_response().body == b"ok"


@pytest.mark.parametrize("host", [b"a b", b"user@h", b"h/path", b"h?q", b"h#f"])
def test_an_invalid_host_value_is_400(server, host):
    srv = server(lambda request: b"ok")
    response, closed = exchange_and_check_close(srv.port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert response.status == 400 and closed


def test_an_empty_transfer_encoding_is_400(server):
    srv = server(lambda request: b"ok")
    response, closed = exchange_and_check_close(
        srv.port, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert response.status == 400 and closed


# -- large bodies go out from their own memory ---------------------------------------------------------

def test_large_bodies_pipelined_with_small_ones_arrive_whole_and_in_order(server):
    big = bytes(range(256)) * 512                         # 128 KiB: sent without copying
    srv = server(lambda request: big if request.path == "/big" else b"small", static={"/static": big})
    paths = [b"/big", b"/small", b"/static", b"/big", b"/small"] * 4
    with connect(srv.port, timeout=10) as sock:
        sock.sendall(b"".join(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n" for path in paths))
        reader = ResponseReader(sock)
        for path in paths:
            response = reader.read_response()
            assert response.body == (b"small" if path == b"/small" else big), path
        sock.sendall(b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n")
        head = reader.read_response(method="HEAD")
        assert head.headers["content-length"] == str(len(big)) and head.body == b""


def test_client_leaving_during_a_large_body_leaves_the_server_serving(server):
    big = b"L" * (8 * 1024 * 1024)
    srv = server(lambda request: big)
    sock = connect(srv.port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    sock.close()
    assert wait_until(lambda: srv.stats()["open_connections"] == 0, 5)
    status, _, body = get(srv.port, timeout=10)
    assert status == 200 and body == big

"""Bodies larger than body_buffer_size are not held whole: the handler reads them through
request.stream while they arrive (wsgi.input semantics), with the same limits and strictness."""
import hashlib
import http.client
import threading
import time

import pytest

import fastcore
from conftest import ResponseReader, connect, exchange_and_check_close


def digest_handler(request):
    """Read the body in 64 KiB pieces and answer with its length and sha256, plus how the server
    delivered it (a streamed reader or bytes already in memory)."""
    stream = request.stream
    digest = hashlib.sha256()
    total = 0
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        total += len(piece)
        digest.update(piece)
    kind = "streamed" if not hasattr(stream, "getvalue") else "buffered"
    return f"{total} {digest.hexdigest()} {kind}"


def test_large_content_length_body_is_streamed_and_arrives_whole(server):
    srv = server(digest_handler, body_buffer_size=64 * 1024, max_body_size=64 * 1024 * 1024)
    payload = bytes(range(256)) * (40 * 1024)            # 10 MiB
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
    conn.request("POST", "/", body=payload)
    answer = conn.getresponse().read().decode()
    assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()} streamed"
    conn.request("POST", "/", body=b"small")             # keep-alive intact; small bodies buffered
    assert conn.getresponse().read().decode().endswith(" buffered")
    conn.close()


def test_large_chunked_body_is_streamed_and_decoded(server):
    srv = server(digest_handler, body_buffer_size=16 * 1024, max_body_size=64 * 1024 * 1024)
    pieces = [bytes([i % 251]) * (1000 + i * 37) for i in range(300)]
    payload = b"".join(pieces)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
    conn.request("POST", "/", body=iter(pieces), encode_chunked=True)
    answer = conn.getresponse().read().decode()
    assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()} streamed"
    conn.close()


def test_streamed_body_memory_stays_bounded(server):
    """A 64 MiB upload read slowly by the handler must not be buffered by the server."""
    srv = server(digest_handler, body_buffer_size=64 * 1024, max_body_size=128 * 1024 * 1024)
    payload = b"z" * (64 * 1024 * 1024)

    def rss_kib():
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmRSS")).split()[1])

    before = rss_kib()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.request("POST", "/", body=payload)
    answer = conn.getresponse().read().decode()
    conn.close()
    assert answer.startswith(f"{len(payload)} ")
    # The client's own 64 MiB is already counted in `before`; the server must add far less.
    assert rss_kib() - before < 32 * 1024


def test_readline_and_iteration_over_a_streamed_body(server):
    def lines(request):
        first = request.stream.readline()
        rest = list(request.stream)
        return b"%d|%s|%d" % (len(first), first[:5], len(rest))

    srv = server(lines, body_buffer_size=1024)
    body = b"".join(b"line %05d\n" % i for i in range(2000))
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("POST", "/", body=body)
    assert conn.getresponse().read() == b"11|line |1999"
    conn.close()


def test_request_body_property_reads_a_streamed_body_whole(server):
    srv = server(lambda request: hashlib.sha256(request.body).hexdigest(), body_buffer_size=1024)
    payload = b"q" * 300000
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("POST", "/", body=payload)
    assert conn.getresponse().read().decode() == hashlib.sha256(payload).hexdigest()
    conn.close()


def test_handler_that_ignores_a_large_body_answers_and_the_connection_closes(server):
    srv = server(lambda request: b"not reading", body_buffer_size=1024)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"a" * 5000)
        reader = ResponseReader(sock)
        response = reader.read_response()
        assert response.body == b"not reading"
        assert response.headers.get("connection") == "close"


def test_expect_100_continue_for_a_streamed_body_is_sent_only_when_the_handler_reads(server):
    srv = server(lambda request: request.body if request.path == "/read" else b"declined",
                 body_buffer_size=10)
    head = b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n"
    with connect(srv.port) as sock:                      # the handler declines: no 100, a final answer
        sock.sendall(head % b"/decline")
        response = ResponseReader(sock).read_response()
        assert (response.status, response.body) == (200, b"declined")
    with connect(srv.port) as sock:                      # the handler reads: 100 first
        sock.sendall(head % b"/read")
        reader = ResponseReader(sock)
        assert reader.read_response().status == 100
        sock.sendall(b"x" * 20)
        assert reader.read_response().body == b"x" * 20


def test_streamed_chunked_body_over_max_body_size_is_413(server):
    srv = server(digest_handler, body_buffer_size=1024, max_body_size=8192)
    chunk = b"1000\r\n" + b"b" * 4096 + b"\r\n"
    response, closed = exchange_and_check_close(
        srv.port, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n")
    assert response.status == 413
    assert closed


def test_client_that_stops_sending_a_streamed_body_gets_408(server):
    srv = server(digest_handler, body_buffer_size=1024, body_timeout=0.5)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"a" * 3000)
        started = time.monotonic()
        response = ResponseReader(sock).read_response()
    assert response.status == 408
    assert time.monotonic() - started < 3


def test_client_that_disconnects_mid_body_does_not_disturb_others(server):
    srv = server(digest_handler, body_buffer_size=1024, threads=1)
    sock = connect(srv.port)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"a" * 3000)
    sock.close()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("POST", "/", body=b"fine")
    assert conn.getresponse().read().decode().startswith("4 ")
    conn.close()


def test_reading_a_streamed_body_after_the_handler_returned_is_an_error_not_a_crash(server):
    kept = {}

    def keep_stream(request):
        kept["stream"] = request.stream
        return b"kept"

    srv = server(keep_stream, body_buffer_size=1024)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" + b"a" * 100)
        assert ResponseReader(sock).read_response().body == b"kept"
    assert not hasattr(kept["stream"], "getvalue")         # it was a streamed body
    with pytest.raises(ValueError):
        kept["stream"].read(10)
    with pytest.raises(ValueError):
        kept["stream"].readline()

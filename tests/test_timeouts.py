"""Timeouts and the connection cap, each with short values: header read (slowloris), body read,
keep-alive idle, write (a client that stops reading), and max_connections."""
import socket
import threading
import time

import pytest

from conftest import ConnectionClosed, ResponseReader, connect, get, read_until_closed, wait_until


def hello(request):
    return b"hello"




def test_slowloris_is_cut_off_at_the_header_deadline_not_kept_alive_by_each_byte(server):
    srv = server(hello, header_timeout=1.0)
    request = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    with connect(srv.port, timeout=5) as sock:
        closed_at = None
        for byte in request:                     # one byte every 50 ms: 10 s if never cut off
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
            sock.setblocking(False)
            try:
                if sock.recv(65536, socket.MSG_PEEK) is not None:
                    closed_at = time.monotonic()
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        sock.settimeout(5)
        answer = read_until_closed(sock)
    elapsed = (closed_at or time.monotonic()) - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 <= elapsed < 3.0
    assert get(srv.port)[0] == 200              # everyone else is still served


def test_a_new_connection_that_sends_nothing_is_closed_after_header_timeout(server):
    """A connection's first head is due header_timeout after accept: one that never sends a byte
    is closed then, without an answer (there is no request to answer)."""
    srv = server(hello, header_timeout=0.5, keepalive_timeout=10)
    started = time.monotonic()
    with connect(srv.port, timeout=5) as sock:
        assert read_until_closed(sock) == b""
    assert 0.4 <= time.monotonic() - started < 3.0


def test_a_later_heads_timer_starts_at_its_first_byte_not_at_the_previous_response(server):
    """On a kept-alive connection the idle time before the next request is keepalive_timeout's;
    header_timeout runs from the next head's first byte."""
    srv = server(hello, header_timeout=0.6, keepalive_timeout=10)
    with connect(srv.port, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.read_response().status == 200
        time.sleep(0.9)                          # idle longer than header_timeout: still open
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        first_byte = time.monotonic()
        response = reader.read_response()
        elapsed = time.monotonic() - first_byte
    assert response.status == 408
    assert 0.5 <= elapsed < 3.0


def test_idle_keepalive_connection_is_closed_after_keepalive_timeout(server):
    srv = server(hello, keepalive_timeout=0.3)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.read_response().status == 200
        started = time.monotonic()
        assert reader.closed_by_peer()
        assert time.monotonic() - started < 2.0


def test_keepalive_timer_restarts_after_each_response(server):
    srv = server(hello, keepalive_timeout=0.5)
    with connect(srv.port) as sock:
        reader = ResponseReader(sock)
        for _ in range(4):                       # 4 x 0.3 s > 0.5 s: alive only if re-armed
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert reader.read_response().status == 200
            time.sleep(0.3)


def test_stalled_body_gets_408_after_body_timeout(server):
    srv = server(hello, body_timeout=0.5)
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3.0


def test_client_that_never_reads_is_closed_after_write_timeout_and_others_are_served(server):
    big = b"x" * (32 * 1024 * 1024)
    srv = server(lambda request: big, write_timeout=0.5, threads=1)
    stuck = connect(srv.port)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stuck.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_until(lambda: srv.stats()["open_connections"] == 1, 5)
        # Another client is served while the first one's response is stuck.
        status, _, body = get(srv.port, timeout=5)
        assert status == 200 and len(body) == len(big)
        assert wait_until(lambda: srv.stats()["open_connections"] == 0, 5)
    finally:
        stuck.close()


def test_connection_cap_refuses_with_503_and_recovers(server):
    srv = server(hello, max_connections=2)
    held = [connect(srv.port), connect(srv.port)]
    try:
        for sock in held:                        # both are open and served
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert ResponseReader(sock).read_response().status == 200
        with connect(srv.port) as third:
            third.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                response = ResponseReader(third).read_response()
                assert response.status == 503
            except (ConnectionClosed, ConnectionResetError):
                pass                             # the canned 503 is best effort
        assert srv.stats()["rejected_connection_limit"] >= 1
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: srv.stats()["open_connections"] == 0, 5)
    assert get(srv.port)[0] == 200


def test_empty_lines_do_not_keep_a_connection_alive(server):
    srv = server(hello, header_timeout=0.6, keepalive_timeout=5)
    with connect(srv.port) as sock:
        started = time.monotonic()
        closed = False
        for _ in range(8):                       # 8 x 0.2 s > header_timeout
            try:
                sock.sendall(b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
        if not closed:
            sock.settimeout(3)
            assert read_until_closed(sock) == b""
    assert time.monotonic() - started < 3


def test_a_flood_of_empty_lines_is_400(server):
    srv = server(hello)
    with connect(srv.port) as sock:
        sock.sendall(b"\r\n" * 20 + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 400 ")
    with connect(srv.port) as sock:              # a couple are tolerated (RFC 9112 2.2)
        sock.sendall(b"\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ResponseReader(sock).read_response().body == b"hello"


# -- the body's minimum rate (body_min_rate, body_min_rate_grace) ---------------------------------

def trickle(sock, stop, interval=0.3):
    """Send one body byte every `interval` seconds until `stop` is set or the server has closed."""
    while not stop.is_set():
        try:
            sock.sendall(b"x")
        except OSError:
            return
        stop.wait(interval)


def body_reading_handler(request):
    if request.path == "/upload":
        return b"%d" % len(request.stream.read())
    return b"other"


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "buffered"])
def test_a_body_trickled_below_the_minimum_rate_gets_408_and_frees_its_thread(server, streamed):
    """One byte every 0.3 s (3 bytes/s) against body_min_rate=100 after a 0.5 s grace: each byte
    comes well within body_timeout, yet the request is cut about 0.6 s in. Streamed (over
    body_buffer_size), the handler thread reading it is freed: the only one, and another client is
    answered next. Buffered, the worker cuts it in its BODY phase before any handler runs."""
    srv = server(body_reading_handler, threads=1, handler_threads=1, body_buffer_size=1024 if streamed else 65536,
                 body_timeout=10, body_min_rate=100, body_min_rate_grace=0.5)
    stop = threading.Event()
    with connect(srv.port, timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n" + b"x" * 10)
        started = time.monotonic()
        trickler = threading.Thread(target=trickle, args=(sock, stop))
        trickler.start()
        try:
            response = ResponseReader(sock).read_response()
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            trickler.join(5)
    assert not trickler.is_alive()
    assert response.status == 408 and response.headers["connection"] == "close"
    assert 0.4 <= elapsed < 3.0, elapsed                # not before the grace, long before body_timeout
    assert get(srv.port, "/other", timeout=2)[2] == b"other"
    stats = srv.stats()
    assert (stats["body_rate_timeouts"], stats["body_timeouts"]) == (1, 0)


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "buffered"])
def test_a_body_sent_above_the_minimum_rate_is_not_cut(server, streamed):
    """40 bytes every 0.2 s (200 bytes/s) for 1.6 s against body_min_rate=100, grace 0.5 s."""
    srv = server(body_reading_handler, threads=1, handler_threads=1, body_buffer_size=100 if streamed else 65536,
                 body_timeout=10, body_min_rate=100, body_min_rate_grace=0.5)
    parts = [b"%02d" % index * 20 for index in range(8)]
    with connect(srv.port, timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 320\r\n\r\n" + parts[0])
        for part in parts[1:]:
            time.sleep(0.2)
            sock.sendall(part)
        response = ResponseReader(sock).read_response()
    assert (response.status, response.body) == (200, b"320")
    assert srv.stats()["body_rate_timeouts"] == 0


def test_body_min_rate_0_turns_the_rate_off(server):
    srv = server(body_reading_handler, body_timeout=10, body_min_rate=0, body_min_rate_grace=0)
    with connect(srv.port, timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nx")
        time.sleep(0.5)                          # far below any rate: still waited for
        sock.sendall(b"yz")
        assert ResponseReader(sock).read_response().body == b"3"


# -- connections waiting in the listener's queue ----------------------------------------------------

def test_a_connection_queued_past_header_timeout_is_closed_unread_when_adopted(server):
    """Inline handlers, one worker, stuck in a handler for longer than header_timeout: a connection
    accepted meanwhile waits in the queue. Its head was due header_timeout after its accept, so
    once the worker is free it is closed at once, without an answer (it was never read), and
    counted; a connection that arrives after that is served."""
    entered = threading.Event()
    release = threading.Event()

    def handler(request):
        if request.path == "/block":
            entered.set()
            release.wait(10)
        return b"done"

    srv = server(handler, threads=1, handler_threads=0, header_timeout=1.0)
    with connect(srv.port, timeout=5) as blocker:
        blocker.sendall(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered.wait(5)
        queued = connect(srv.port, timeout=5)           # accepted while the only worker is in the handler
        queued_connect = time.monotonic()
        queued.sendall(b"GET /queued HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_until(lambda: srv.stats()["accepted"] == 2, 5)
        time.sleep(1.2 - (time.monotonic() - queued_connect))      # its head's deadline passes in the queue
        release.set()
        released = time.monotonic()
        assert ResponseReader(blocker).read_response().body == b"done"
        with queued:
            assert read_until_closed(queued) == b""
        assert time.monotonic() - released < 0.8, "closed at adoption, not header_timeout after it"
    assert srv.stats()["queue_expired"] == 1
    assert get(srv.port, "/later")[2] == b"done"

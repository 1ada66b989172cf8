"""Hostile and broken clients: none of them stops the others being served, and nothing leaks."""
import os
import socket
import struct
import time

import pytest

from conftest import ResponseReader, connect, get, open_fds, wait_until


def hello(request):
    return b"hello"


def big(request):
    return b"y" * (8 * 1024 * 1024)




def reset(sock):
    """Close with SO_LINGER 0: the peer gets RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_half_close_after_the_request_still_gets_the_response(server):
    srv = server(hello)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        reader = ResponseReader(sock)
        assert reader.read_response().body == b"hello"
        assert reader.closed_by_peer()


def test_half_close_after_pipelined_requests_answers_them_all(server):
    srv = server(hello)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
        sock.shutdown(socket.SHUT_WR)
        reader = ResponseReader(sock)
        assert [reader.read_response().body for _ in range(3)] == [b"hello"] * 3
        assert reader.closed_by_peer()


def test_reset_in_the_middle_of_a_request(server):
    srv = server(hello)
    for partial in (b"GET / HTT", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc"):
        sock = connect(srv.port)
        sock.sendall(partial)
        reset(sock)
    assert wait_until(lambda: srv.stats()["open_connections"] == 0, 5)
    assert get(srv.port)[0] == 200


def test_reset_in_the_middle_of_a_response(server):
    srv = server(big)
    sock = connect(srv.port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    reset(sock)
    assert wait_until(lambda: srv.stats()["open_connections"] == 0, 5)
    status, _, body = get(srv.port)
    assert status == 200 and len(body) == 8 * 1024 * 1024


@pytest.mark.hang_timeout(120)
def test_a_normal_client_is_served_promptly_while_1000_idle_connections_are_open(server):
    srv = server(hello, threads=2)
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        assert wait_until(lambda: srv.stats()["open_connections"] == 1000, 10)
        for _ in range(20):
            started = time.monotonic()
            status, _, body = get(srv.port, timeout=2)
            assert (status, body) == (200, b"hello")
            assert time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()
    assert wait_until(lambda: srv.stats()["open_connections"] == 0, 10)


def test_abusive_clients_leave_no_fd_behind():
    import fastcore
    before = open_fds()
    server = fastcore.Server(big, port=0, threads=2, header_timeout=0.3, write_timeout=0.3).start()
    try:
        for _ in range(5):
            with connect(server.port) as sock:             # bad request
                sock.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
                sock.recv(4096)
            sock = connect(server.port)                     # RST mid-response
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.recv(1024)
            reset(sock)
            stalled = connect(server.port)                  # never finishes its head
            stalled.sendall(b"GET / HTTP/1.1\r\n")
            stalled.close()
        stuck = connect(server.port)                        # never reads its response
        stuck.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_until(lambda: server.stats()["open_connections"] == 0, 5)
        stuck.close()
    finally:
        server.stop()
    assert open_fds() == before


def test_stop_called_from_a_handler_stops_the_server_without_deadlock():
    import threading
    import urllib.request

    import fastcore
    holder = {}

    def handler(request):
        holder["server"].stop()
        return b"stopping"

    earlier = set(threading.enumerate())        # (another test's stop may still be finishing)
    holder["server"] = server = fastcore.Server(handler, port=0).start()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5) as response:
        assert response.read() == b"stopping"
    assert wait_until(lambda: not server.running, 10)

    def ours_left():
        return [t.name for t in threading.enumerate() if t.name.startswith("fastcore") and t not in earlier]
    assert wait_until(lambda: not ours_left(), 10), ours_left()


def test_an_error_answer_survives_a_client_that_keeps_uploading(server):
    """Lingering close: the server answers 413 at once, half-closes, and discards what the client
    still sends, so the answer is not destroyed by an RST before the client reads it."""
    srv = server(lambda request: b"never", max_body_size=1000)
    with connect(srv.port, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n")
        for _ in range(32):                              # 2 MiB more after the answer was sent
            sock.sendall(b"u" * 65536)
        sock.shutdown(socket.SHUT_WR)
        reader = ResponseReader(sock)
        response = reader.read_response()
        assert response.status == 413
        assert reader.closed_by_peer()
    assert wait_until(lambda: srv.stats()["open_connections"] == 0, 5)


LINGER_TIMEOUT = 2.0    # both engines' lingering close limit (pyext LINGER_TIMEOUT_MS, fastcore.pure.timers)


def test_a_lingering_connection_closes_at_the_clients_fin(server):
    """After an error answer the server half-closes but keeps the connection (still counted open)
    while the client may still be sending, discards what it sends, and closes at the client's FIN:
    before the linger timer could have fired, and without a reset."""
    srv = server(lambda request: b"never", max_body_size=1000)
    started = time.monotonic()                          # before the linger starts, so before its timer
    with connect(srv.port, timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n" + b"u" * 65536)
        reader = ResponseReader(sock)
        assert reader.read_response().status == 413
        assert reader.buffer == b"" and sock.recv(65536) == b""     # FIN: the server half-closed
        assert srv.stats()["open_connections"] == 1     # ... and lingers: it still reads
        sock.sendall(b"u" * 65536)                      # discarded: no answer, no reset
        sock.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: srv.stats()["open_connections"] == 0, 5)
        closed_at = time.monotonic()
        assert sock.recv(65536) == b""                  # FIN, not RST: everything sent was read
    assert closed_at - started < LINGER_TIMEOUT, "closed by the linger timer, not at the client's FIN"

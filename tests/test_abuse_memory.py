"""What a hostile client can make the server hold in memory (issue 16, items 1 and 2).

Each test measures the peak resident memory of this process (the server runs in it) while one
kind of abuse goes on, after resetting the peak (/proc/self/clear_refs "5"), and bounds it far
below what the abuse would cost if the server kept what it was sent. The clients stream what they
send, so their own memory stays small.
"""
import socket
import time

import pytest

from conftest import connect

MIB = 1024 * 1024


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def peak_rss_kib():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1])


def current_rss_kib():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1])


def test_chunk_framing_is_not_kept(server):
    """1-byte chunks, each with a 4 KiB chunk extension: ~24 MiB on the wire for 6,000 body bytes.
    The server must hold about what the body decodes to, not what the client sent."""
    srv = server(lambda request: b"%d" % len(request.body), max_body_size=MIB)
    extension = b";x=" + b"e" * 4000
    chunks = 6000
    before = current_rss_kib()
    reset_peak_rss()
    with connect(srv.port, 30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        batch = b"".join(b"1" + extension + b"\r\nb\r\n" for _ in range(32))
        for _ in range(chunks // 32):
            sock.sendall(batch)
        sock.sendall(b"0\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\n%d" % (chunks // 32 * 32)):
            data = sock.recv(65536)
            assert data, answer
            answer += data
    assert answer.startswith(b"HTTP/1.1 200 ")
    grown = peak_rss_kib() - before
    assert grown < 8 * 1024, f"peak RSS grew by {grown} KiB for {chunks * len(extension) // MIB} MiB of framing"


def test_pipelining_without_reading_is_bounded_by_the_output_high_water_mark(server):
    """Clients that pipeline requests for a 4 KiB answer and never read: each 16 KiB of requests
    would be ~2 MiB of responses. The server stops parsing a connection's requests while its
    unsent output is over the high-water mark, so 32 such clients cost little."""
    body = b"x" * 4096
    srv = server(static={"/page": body})
    request = b"GET /page HTTP/1.1\r\nHost: t\r\n\r\n"
    burst = request * (16384 // len(request))
    clients = []
    before = current_rss_kib()
    reset_peak_rss()
    try:
        for _ in range(32):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            clients.append(sock)
        deadline = time.monotonic() + 3
        sent = 0
        while time.monotonic() < deadline:            # send until every client's send blocks
            progressed = False
            for sock in clients:
                try:
                    sent += sock.send(burst)
                    progressed = True
                except BlockingIOError:
                    pass
            if not progressed:
                break
        # Let the server take in what it will (its input is read until its output blocks): wait
        # until its count of bytes received stops moving, at most 3 s.
        settled, last = 0, -1
        deadline = time.monotonic() + 3
        while settled < 3 and time.monotonic() < deadline:
            received = srv.stats()["bytes_received"]
            settled = settled + 1 if received == last else 0
            last = received
            time.sleep(0.05)
        grown = peak_rss_kib() - before
        would_be = sent // len(request) * (len(body) + 120) // 1024
        assert grown < 24 * 1024, f"peak RSS grew by {grown} KiB (unbounded: about {would_be} KiB)"
    finally:
        for sock in clients:
            sock.close()
    # The server still answers others.
    with connect(srv.port, 5) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_pipelined_responses_all_arrive_past_the_high_water_mark(server):
    """Pausing at the high-water mark must not lose or reorder anything: 400 pipelined requests for
    distinct 4 KiB pages, read slowly, come back complete and in order."""
    pages = {f"/p{i}": bytes([65 + i % 26]) * 4096 for i in range(400)}
    srv = server(static=pages)
    with connect(srv.port, 20) as sock:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode() for path in pages))
        received = b""
        expected_bodies = list(pages.values())
        while received.count(b"HTTP/1.1 200 ") < len(pages) or not received.endswith(expected_bodies[-1]):
            data = sock.recv(65536)
            assert data
            received += data
            if len(received) < 256 * 1024:
                time.sleep(0.001)                    # slow at first: the output fills up
    responses = received.split(b"HTTP/1.1 200 ")[1:]
    assert [response[-4096:] for response in responses] == expected_bodies

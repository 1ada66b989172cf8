"""server.stats(): counters kept in C match the traffic a client sent and received."""
import time

from conftest import ResponseReader, connect, wait_until


def test_stats_match_the_traffic(server):
    srv = server(lambda request: b"python" if request.path == "/py" else b"", static={"/static": b"S"})
    sent = received = 0
    requests = [b"GET /py HTTP/1.1\r\nHost: t\r\n\r\n"] * 5 + [b"GET /static HTTP/1.1\r\nHost: t\r\n\r\n"] * 3
    with connect(srv.port) as sock:
        reader = ResponseReader(sock)
        for request in requests:
            sock.sendall(request)
            sent += len(request)
            received += len(reader.read_response().raw)
    bad = b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"
    with connect(srv.port) as sock:
        sock.sendall(bad)
        sent += len(bad)
        reader = ResponseReader(sock)
        received += len(reader.read_response().raw)
        assert reader.closed_by_peer()
    deadline = time.monotonic() + 5
    while srv.stats()["open_connections"] and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = srv.stats()
    assert stats["accepted"] == 2
    assert stats["requests"] == 8                          # the malformed head is not a request
    assert stats["responses"]["2xx"] == 8 and stats["responses"]["4xx"] == 1
    assert stats["bytes_received"] == sent
    assert stats["bytes_sent"] == received
    assert stats["open_connections"] == 0
    assert sum(worker["requests"] for worker in stats["workers"]) == 8
    assert len(stats["workers"]) == srv.config.threads


def test_a_refused_handler_response_counts_once_as_5xx(server):
    import fastcore
    srv = server(lambda request: fastcore.Response(b"x", headers={"X-Bad": "a\r\nInjected: 1"}))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ResponseReader(sock).read_response().status == 500
    stats = srv.stats()
    assert stats["responses"]["5xx"] == 1 and stats["responses"]["2xx"] == 0


def test_streamed_request_bodies_are_counted_in_bytes_received(server):
    srv = server(lambda request: b"%d" % len(request.stream.read()), body_buffer_size=1024)
    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n"
    with connect(srv.port) as sock:
        sock.sendall(head + b"b" * 1000)                   # the rest arrives while the handler reads
        sock.sendall(b"b" * 199000)
        response = ResponseReader(sock).read_response()
        assert response.body == b"200000"
    # The client can read the answer before the worker has added it up: let the counters settle.
    assert wait_until(lambda: srv.stats()["bytes_sent"] == len(response.raw), 5)
    assert srv.stats()["bytes_received"] == len(head) + 200000

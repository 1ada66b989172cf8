"""server.stats(): counters kept in C match the traffic a client sent and received."""
import time

from conftest import ResponseReader, connect


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

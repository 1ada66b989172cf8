"""Many clients at once, a full queue, and several servers in one process."""
import socket
import threading
import time

import pytest

import fastcore
from conftest import ConnectionClosed, ResponseReader, assert_standard_fields, connect, get


def path_handler(request):
    return fastcore.Response(request.path.encode("latin-1"), content_type="text/plain")


@pytest.mark.hang_timeout(120)
def test_200_concurrent_keep_alive_clients_50_requests_each_all_correct(server):
    clients, requests_per_client = 200, 50
    srv = server(path_handler, threads=4, static={"/health": b"OK"})
    errors = []
    completed = [0] * clients
    start_line = threading.Barrier(clients + 1, timeout=30)

    def client(index):
        try:
            with connect(srv.port, timeout=20) as sock:
                reader = ResponseReader(sock)
                start_line.wait()
                for i in range(requests_per_client):
                    if i % 10 == 9:
                        sock.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
                        expected = b"OK"
                    else:
                        path = f"/client/{index}/request/{i}"
                        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
                        expected = path.encode()
                    response = reader.read_response()
                    if response.status != 200 or response.body != expected:
                        errors.append(f"client {index} request {i}: {response.status} {response.body[:80]!r}")
                        return
                    completed[index] += 1
        except Exception as error:           # reported below, with the client's number
            errors.append(f"client {index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    start_line.wait()
    deadline = began + 90
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    assert stuck == 0, f"{stuck} clients still running after 90 s; errors: {errors[:10]}"
    assert errors == [], errors[:10]
    assert sum(completed) == clients * requests_per_client


def test_queue_overflow_answers_503_or_closes_and_recovers(server):
    release = threading.Event()
    entered = threading.Event()

    def handler(request):
        if request.path == "/block":
            entered.set()
            release.wait(20)
            return b"unblocked"
        return b"ok " + request.path.encode()

    queue_size = 1
    # Inline handlers: the one worker is blocked in /block, so accepted connections pile up in the
    # queue (with handler threads the worker keeps adopting them: test_handler_threads.py).
    srv = server(handler, threads=1, queue_size=queue_size, handler_threads=0)
    blocker_result = {}

    def blocked_client():
        try:
            with connect(srv.port, timeout=20) as sock:
                sock.sendall(b"GET /block HTTP/1.1\r\nHost: h\r\n\r\n")
                blocker_result["response"] = ResponseReader(sock).read_response()
        except Exception as error:
            blocker_result["error"] = error

    blocker = threading.Thread(target=blocked_client, daemon=True)
    blocker.start()
    extra = []
    try:
        assert entered.wait(5), "the blocking request never reached the handler"

        # The only worker is busy: new connections go to the queue (queue_size of them) or are
        # refused with a 503 and closed.
        for i in range(10):
            sock = connect(srv.port, timeout=2)
            extra.append(sock)
            try:
                sock.sendall(f"GET /extra/{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                pass                          # already refused and closed: fine

        outcomes = []                         # "503", "closed" or "waiting", per connection
        for i, sock in enumerate(extra):
            reader = ResponseReader(sock)
            try:
                response = reader.read_response()
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                outcomes.append("closed")
                continue
            except socket.timeout:
                outcomes.append("waiting")    # queued behind the blocked worker
                continue
            assert response.status == 503, f"connection {i}: {response.status} {response.body!r}"
            assert_standard_fields(response)
            outcomes.append("503")
            try:
                assert reader.closed_by_peer(), f"connection {i}: 503 without a close"
            except socket.timeout:
                pytest.fail(f"connection {i}: the server kept the connection open after its 503")
        waiting = [i for i, outcome in enumerate(outcomes) if outcome == "waiting"]
        assert len(waiting) <= queue_size, f"outcomes: {outcomes}"
        assert outcomes.count("503") + outcomes.count("closed") >= len(extra) - queue_size, outcomes
    finally:
        release.set()

    blocker.join(10)
    assert not blocker.is_alive()
    assert "error" not in blocker_result, blocker_result
    assert blocker_result["response"].status == 200
    assert blocker_result["response"].body == b"unblocked"

    # Connections that waited in the queue are served once the worker is free.
    for i in waiting:
        extra[i].settimeout(5)
        response = ResponseReader(extra[i]).read_response()
        assert response.status == 200
        assert response.body == f"ok /extra/{i}".encode()
    for sock in extra:
        sock.close()

    # And the server serves normally again.
    for i in range(5):
        status, _, body = get(srv.port, f"/after/{i}")
        assert (status, body) == (200, f"ok /after/{i}".encode())


def test_two_servers_in_one_process_serve_with_their_own_handlers(server):
    first = server(lambda request: b"first:" + request.path.encode(), static={"/who": b"static-first"})
    second = server(lambda request: b"second:" + request.path.encode(), static={"/who": b"static-second"})
    assert first.port != second.port
    for i in range(5):
        status, _, body = get(first.port, f"/r{i}")
        assert (status, body) == (200, f"first:/r{i}".encode())
        status, _, body = get(second.port, f"/r{i}")
        assert (status, body) == (200, f"second:/r{i}".encode())
    # interleaved, on keep-alive connections held open at the same time
    with connect(first.port) as sock_a, connect(second.port) as sock_b:
        reader_a, reader_b = ResponseReader(sock_a), ResponseReader(sock_b)
        for i in range(5):
            sock_a.sendall(f"GET /a{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            sock_b.sendall(f"GET /b{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            assert reader_b.read_response().body == f"second:/b{i}".encode()
            assert reader_a.read_response().body == f"first:/a{i}".encode()
        sock_a.sendall(b"GET /who HTTP/1.1\r\nHost: h\r\n\r\n")
        sock_b.sendall(b"GET /who HTTP/1.1\r\nHost: h\r\n\r\n")
        assert reader_a.read_response().body == b"static-first"
        assert reader_b.read_response().body == b"static-second"


def test_stopping_one_server_leaves_the_other_serving(server):
    first = server(lambda request: b"first")
    second = server(lambda request: b"second")
    first.stop()
    assert not first.running
    assert get(second.port, "/")[2] == b"second"
    with pytest.raises(OSError):
        connect(first.port, timeout=2).close()


@pytest.mark.hang_timeout(120)
def test_interleaved_split_and_pipelined_uploads_each_get_their_own_body_back(server):
    """Workers hand a released input or output block to the next connection that reads. Twelve
    connections upload bodies of 0 B to 40 KiB (past the recycled 16 KiB input block, so some
    buffers grow and are freed rather than recycled), in random pieces, sometimes two requests
    pipelined in one write, all at once on two workers: every response must carry exactly its own
    request's body, so no bytes cross between connections or survive into the next request."""
    import random

    srv = server(lambda request: fastcore.Response(request.body, content_type="application/octet-stream"),
                 threads=2)
    clients, rounds = 12, 20
    errors = []

    def request_bytes(tag, size, rng):
        body = (tag.encode() * (size // len(tag) + 1))[:size] if size else b""
        body = bytes(rng.randrange(256) for _ in range(min(size, 64))) + body[64:]
        head = f"POST /{tag} HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n".encode()
        return head + body, body

    def client(index):
        rng = random.Random(index)
        try:
            with connect(srv.port, timeout=20) as sock:
                reader = ResponseReader(sock)
                for round_ in range(rounds):
                    batch = [request_bytes(f"c{index}r{round_}p{k}", rng.choice([0, 13, 900, 16000, 17000, 40000]), rng)
                             for k in range(rng.choice([1, 1, 2]))]
                    wire = b"".join(raw for raw, _ in batch)
                    cuts = sorted(rng.sample(range(1, len(wire)), min(3, len(wire) - 1)))
                    for start, stop in zip([0] + cuts, cuts + [len(wire)]):
                        sock.sendall(wire[start:stop])
                    for k, (_, body) in enumerate(batch):
                        response = reader.read_response()
                        if response.status != 200 or response.body != body:
                            errors.append(f"client {index} round {round_} request {k}: {response.status}, "
                                          f"{len(response.body)} bytes instead of {len(body)}")
                            return
        except Exception as error:           # reported below, with the client's number
            errors.append(f"client {index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not any(thread.is_alive() for thread in threads), errors[:5]
    assert errors == [], errors[:5]


def test_no_connection_is_stranded_behind_a_worker_busy_in_a_handler(server):
    """With every worker in a handler, new connections are credited to busy workers. Once one
    worker is free again it must serve every queued connection, including those credited to a
    worker still stuck in its handler, and every later one: none waits for the stuck handler."""
    entered = {name: threading.Event() for name in ("stuck", "brief")}
    release = {name: threading.Event() for name in ("stuck", "brief")}

    def handler(request):
        name = request.path.strip("/")
        if name in entered:
            entered[name].set()
            assert release[name].wait(15)
        return b"served " + name.encode()

    srv = server(handler, threads=2)
    stuck, brief = connect(srv.port, 10), None
    waiting = []
    try:
        stuck.sendall(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered["stuck"].wait(5)
        brief = connect(srv.port, 10)                  # accepted now: the other worker takes it
        brief.sendall(b"GET /brief HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered["brief"].wait(5)               # both workers are in a handler now
        for index in range(4):                         # credited to busy workers, in turn
            sock = connect(srv.port, 3)
            sock.sendall(b"GET /early%d HTTP/1.1\r\nHost: t\r\n\r\n" % index)
            waiting.append(sock)
        release["brief"].set()                         # one worker is free; the other stays stuck
        assert ResponseReader(brief).read_response().body == b"served brief"
        for index in range(4):                         # arriving while one worker is free
            sock = connect(srv.port, 3)
            sock.sendall(b"GET /later%d HTTP/1.1\r\nHost: t\r\n\r\n" % index)
            waiting.append(sock)
        for sock in waiting:                           # each within 3 s, while /stuck still runs
            response = ResponseReader(sock).read_response()
            assert response.status == 200 and response.body.startswith(b"served ")
    finally:
        release["stuck"].set()
        for sock in [stuck, brief] + waiting:
            if sock is not None:
                sock.close()

"""Handler threads (handler_threads = N): Python runs beside the I/O workers, so what blocks in
Python (a slow upload read through request.stream, a server-sent-events generator, a slow handler)
holds a handler thread, never an I/O worker and the other connections it serves (issue 13).

Each test is a repro that failed with handlers inline in the I/O workers: it runs both ways and
asserts the failure inline, where the test says so, to show what the mode changes.
"""
import threading
import time

import pytest

import fastcore
from conftest import ResponseReader, connect, get


def test_slow_uploaders_do_not_stall_the_io_workers(engine, server):
    """Two clients trickle streamed bodies into a server with two I/O workers; a third client is
    answered at once."""
    def handler(request):
        if request.path == "/upload":
            return b"%d" % len(request.stream.read())
        return b"fast"

    srv = server(handler, threads=2, handler_threads=4, body_buffer_size=1024, body_timeout=10)
    uploaders = [connect(srv.port, 10) for _ in range(2)]
    try:
        for sock in uploaders:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n" + b"x" * 2048)
        time.sleep(0.2)                                 # both handlers are reading their body now
        started = time.monotonic()
        assert get(srv.port, "/other", timeout=5)[0] == 200
        assert time.monotonic() - started < 1.0
        for sock in uploaders:
            sock.sendall(b"y" * 2048)
            assert ResponseReader(sock).read_response().body == b"4096"
    finally:
        for sock in uploaders:
            sock.close()


def test_slow_uploaders_holding_every_handler_thread_are_cut_by_the_minimum_rate(engine, server):
    """The issue's repro against handler_threads=2: two clients each send one body byte every
    0.3 s, well within body_timeout, and their handlers read request.stream, so both handler threads
    are theirs. Without a rate they would hold them until the whole body came (hours), and a third
    client would never be answered. With body_min_rate=100 after a 1 s grace, each is cut with a
    408 about grace + bytes received / rate = 1 s + about 0.1 s after its handler began reading, so
    the third client is answered within that bound plus scheduling: 2.5 s."""
    reading = threading.Semaphore(0)

    def handler(request):
        if request.path == "/upload":
            reading.release()
            return b"%d" % len(request.stream.read())
        return b"fast"

    srv = server(handler, threads=2, handler_threads=2, body_buffer_size=1024, body_timeout=10,
                 body_min_rate=100, body_min_rate_grace=1.0)
    stop = threading.Event()

    def trickle(sock):
        while not stop.is_set():
            try:
                sock.sendall(b"x")
            except OSError:
                return
            stop.wait(0.3)

    uploaders = [connect(srv.port, 10) for _ in range(2)]
    tricklers = [threading.Thread(target=trickle, args=(sock,)) for sock in uploaders]
    try:
        for sock, trickler in zip(uploaders, tricklers):
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
            trickler.start()
        assert reading.acquire(timeout=5) and reading.acquire(timeout=5)    # both handler threads are taken
        started = time.monotonic()
        status, _, body = get(srv.port, "/other", timeout=5)
        waited = time.monotonic() - started
        assert (status, body) == (200, b"fast")
        assert waited < 2.5, f"answered after {waited:.2f} s"
        for sock in uploaders:
            assert ResponseReader(sock).read_response().status == 408
    finally:
        stop.set()
        for sock, trickler in zip(uploaders, tricklers):
            if trickler.ident is not None:
                trickler.join(5)
            sock.close()
    assert srv.stats()["body_rate_timeouts"] == 2


def test_event_streams_do_not_stall_the_io_workers(engine, server):
    """Two server-sent-event generators that sleep between events, on two I/O workers: a plain GET
    is answered at once, and the events keep coming."""
    stop_streams = threading.Event()

    def events():
        for index in range(50):
            if stop_streams.is_set():
                return
            yield b"data: %d\n\n" % index
            time.sleep(0.2)

    def handler(request):
        if request.path == "/events":
            return fastcore.Response(events(), content_type="text/event-stream")
        return b"plain"

    srv = server(handler, threads=2, handler_threads=4)
    streams = [connect(srv.port, 10) for _ in range(2)]
    try:
        for sock in streams:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b"data: 0" in sock.recv(4096)
        started = time.monotonic()
        status, _, body = get(srv.port, "/plain", timeout=5)
        assert (status, body) == (200, b"plain")
        assert time.monotonic() - started < 1.0
        for sock in streams:
            received = b""
            while b"data: 2" not in received:           # the streams go on meanwhile
                received += sock.recv(4096)
    finally:
        stop_streams.set()
        for sock in streams:
            sock.close()


def test_a_fast_response_is_not_held_behind_a_slow_one(engine, server):
    """A slow and a fast request arrive together: the fast one is answered while the slow one runs."""
    slow_entered = threading.Event()
    release = threading.Event()

    def handler(request):
        if request.path == "/slow":
            slow_entered.set()
            release.wait(10)
            return b"slow"
        return b"fast"

    srv = server(handler, threads=1, handler_threads=2)
    with connect(srv.port, 10) as slow, connect(srv.port, 2) as fast:
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert slow_entered.wait(5)
        fast.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            assert ResponseReader(fast).read_response().body == b"fast"     # within 2 s
        finally:
            release.set()
        assert ResponseReader(slow).read_response().body == b"slow"


def test_pipelined_requests_of_one_connection_reach_python_in_order(engine, server):
    seen = []

    def handler(request):
        seen.append(request.path)
        return request.path.encode()

    srv = server(handler, threads=1, handler_threads=4)
    paths = [f"/r{index}" for index in range(40)]
    with connect(srv.port, 10) as sock:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode() for path in paths))
        reader = ResponseReader(sock)
        assert [reader.read_response().body.decode() for _ in paths] == paths
    assert seen == paths


def test_io_workers_never_take_the_gil_with_handler_threads(engine, server):
    """The GIL claim, counted: with handler threads the I/O workers run no Python batch at all
    (stats()['worker_gil_batches']); inline, each batch is one acquisition."""
    threaded = server(lambda request: b"ok", threads=2, handler_threads=2, static={"/health": b"OK"})
    inline = server(lambda request: b"ok", threads=2, handler_threads=0)
    for srv in (threaded, inline):
        for path in ("/", "/health", "/x") * 10:
            assert get(srv.port, path)[0] == 200
    assert threaded.stats()["worker_gil_batches"] == 0
    assert threaded.stats()["responses"]["2xx"] == 30
    assert inline.stats()["worker_gil_batches"] >= 10


def test_a_stream_read_after_its_handler_returned_raises(engine, server):
    """request.stream handed to another thread: once the handler has returned, reading raises
    instead of touching a connection the handler thread no longer owns."""
    kept = []

    def handler(request):
        kept.append(request.stream)
        return b"returned"

    srv = server(handler, threads=1, handler_threads=2, body_buffer_size=1024)
    with connect(srv.port, 10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n" + b"x" * 100)
        assert ResponseReader(sock).read_response().body == b"returned"
    with pytest.raises(ValueError):
        kept[0].read()


def test_stop_returns_in_time_with_a_handler_stuck_past_the_deadline(engine, server, caplog):
    """A handler that runs 3 s past stop(timeout=1): stop() returns after the deadline and a short
    grace, says so, and the server's memory is released when the handler does return."""
    entered = threading.Event()
    release = threading.Event()

    def handler(request):
        entered.set()
        release.wait(10)
        return b"late"

    srv = server(handler, threads=1, handler_threads=2)
    core = srv._core
    with connect(srv.port, 10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered.wait(5)
        caplog.set_level("WARNING", logger="fastcore.error")
        started = time.monotonic()
        srv.stop(timeout=1)
        took = time.monotonic() - started
        assert took < 2.6, f"stop(timeout=1) took {took:.2f} s"
        assert any("still in a handler" in record.getMessage() for record in caplog.records)
        release.set()
    deadline = time.monotonic() + 5
    while not core.released:                            # the handler thread released it on its way out
        assert time.monotonic() < deadline, "the core was never released"
        time.sleep(0.05)

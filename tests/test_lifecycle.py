"""Server lifecycle: start, stop with requests in flight, threads and file descriptors released."""
import http.client
import os
import threading
import time

import pytest

import fastcore
from conftest import ResponseReader, connect, get, wait_until


def open_fd_count():
    return len(os.listdir("/proc/self/fd"))


def slow_handler_factory(entered):
    def handler(request):
        if request.path == "/slow":
            entered.set()
            time.sleep(0.5)
            return fastcore.Response(b"slow response body " * 100)
        return b"fast"
    return handler


def test_stop_finishes_in_flight_request_joins_threads_and_closes_fds():
    baseline_threads = len(threading.enumerate())
    baseline_fds = open_fd_count()
    entered = threading.Event()
    srv = fastcore.Server(slow_handler_factory(entered), host="127.0.0.1", port=0, threads=2)
    srv.start()
    stop_result = {}

    def stop_from_another_thread():
        if not entered.wait(5):
            stop_result["error"] = "the /slow request never reached the handler"
            return
        began = time.monotonic()
        try:
            srv.stop()
        except BaseException as error:       # reported by the main thread
            stop_result["error"] = error
        stop_result["seconds"] = time.monotonic() - began

    stopper = threading.Thread(target=stop_from_another_thread, name="test-stopper")
    try:
        port = srv.port
        assert srv.running
        assert len(threading.enumerate()) > baseline_threads     # listener + workers are threads
        with connect(port, timeout=10) as sock:
            stopper.start()
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
            reader = ResponseReader(sock)
            response = reader.read_response()
            assert response.status == 200
            assert response.body == b"slow response body " * 100
            assert int(response.headers["content-length"]) == len(response.body)
            assert reader.closed_by_peer()                        # stopping: no keep-alive
        stopper.join(10)
        assert not stopper.is_alive(), "stop() did not return"
        assert "error" not in stop_result, stop_result
        assert stop_result["seconds"] < 5.5
    finally:
        srv.stop()
        if stopper.is_alive():
            stopper.join(10)

    assert not srv.running
    assert len(threading.enumerate()) == baseline_threads, threading.enumerate()
    assert open_fd_count() == baseline_fds, os.listdir("/proc/self/fd")
    with pytest.raises(ConnectionRefusedError):
        connect(port, timeout=2).close()


def test_stop_closes_idle_keep_alive_connections():
    srv = fastcore.Server(lambda request: b"hi", host="127.0.0.1", port=0, threads=2).start()
    try:
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            reader = ResponseReader(sock)
            assert reader.read_response().body == b"hi"
            stopper = threading.Thread(target=srv.stop)
            stopper.start()
            stopper.join(10)
            assert not stopper.is_alive()
            assert reader.closed_by_peer()
    finally:
        srv.stop()


def test_repeated_start_stop_leaves_no_threads_or_fds():
    baseline_threads = len(threading.enumerate())
    baseline_fds = open_fd_count()
    for round_number in range(5):
        srv = fastcore.Server(lambda request: b"round", host="127.0.0.1", port=0, threads=3)
        srv.add_static("/health", b"OK")
        srv.start()
        try:
            assert get(srv.port, "/")[2] == b"round"
            assert get(srv.port, "/health")[2] == b"OK"
            idle = connect(srv.port)                      # left open: stop must close it
            idle.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert ResponseReader(idle).read_response().body == b"round"
        finally:
            srv.stop()
        idle.close()
        assert len(threading.enumerate()) == baseline_threads, (round_number, threading.enumerate())
        assert open_fd_count() == baseline_fds, (round_number, os.listdir("/proc/self/fd"))


def test_context_manager_starts_and_stops():
    baseline_threads = len(threading.enumerate())
    with fastcore.Server(lambda request: b"ctx", host="127.0.0.1", port=0) as srv:
        assert srv.running
        port = srv.port
        assert get(port, "/")[2] == b"ctx"
    assert not srv.running
    assert len(threading.enumerate()) == baseline_threads
    with pytest.raises(ConnectionRefusedError):
        connect(port, timeout=2).close()


def test_stop_is_idempotent():
    srv = fastcore.Server(lambda request: b"x", host="127.0.0.1", port=0).start()
    srv.stop()
    srv.stop()
    assert not srv.running


def test_start_returns_the_server_already_accepting():
    srv = fastcore.Server(None, host="127.0.0.1", port=0)
    srv.add_static("/health", b"OK")
    try:
        assert srv.start() is srv
        # no waiting of any kind: the first request right after start() is answered
        with connect(srv.port) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
            assert ResponseReader(sock).read_response().body == b"OK"
    finally:
        srv.stop()


def test_server_config_options_and_overrides():
    config = fastcore.ServerConfig(threads=3, max_body_size=10)
    srv = fastcore.Server(None, config=config, port=0, host="127.0.0.1", max_body_size=20)
    assert srv.config.threads == 3
    assert srv.config.max_body_size == 20
    assert not srv.running
    defaults = fastcore.ServerConfig()
    assert (defaults.host, defaults.port, defaults.threads, defaults.queue_size, defaults.backlog) == \
        ("127.0.0.1", 8000, 2, 1024, 1024)
    assert (defaults.max_request_line, defaults.max_head_size, defaults.max_header_count,
            defaults.max_body_size, defaults.python_batch, defaults.server_name) == \
        (8190, 32768, 100, 1048576, 16, "fastcore")


def test_port_and_host_are_reported_after_start(server):
    srv = server(None)
    assert srv.host == "127.0.0.1"
    assert 0 < srv.port < 65536
    with connect(srv.port) as sock:
        assert sock.getpeername() == ("127.0.0.1", srv.port)


def test_stop_with_many_open_connections_is_prompt():
    srv = fastcore.Server(lambda request: b"x", host="127.0.0.1", port=0, threads=2).start()
    sockets = []
    try:
        for _ in range(50):
            sock = connect(srv.port)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            sockets.append(sock)
        for sock in sockets:
            assert ResponseReader(sock).read_response().body == b"x"
        began = time.monotonic()
        srv.stop()
        assert time.monotonic() - began < 3
        for sock in sockets:
            assert ResponseReader(sock).closed_by_peer()
    finally:
        srv.stop()
        for sock in sockets:
            sock.close()


class StopObserver:
    """Stands in for a server's core and tells when stop() has asked its workers to stop."""

    def __init__(self, core):
        self._core = core
        self.workers_asked = threading.Event()

    def stop_workers(self, timeout):
        self._core.stop_workers(timeout)
        self.workers_asked.set()

    def __getattr__(self, name):
        return getattr(self._core, name)


def test_stop_half_closes_an_idle_connection_whose_next_request_is_unread(server):
    """A stopping server closes idle keep-alive connections. One whose client has just sent its next
    request, not yet read by the server, must see a clean FIN, not RST (which can destroy data the
    client has not read, and reads as a reset instead of a closed keep-alive connection).

    To have such a connection at the moment the idle ones are closed, on one worker: the stop is
    seen in the same loop turn that reads B's request, whose handler then holds the worker while
    A sends its second request; when B's handler returns, A is idle with that request unread."""
    entered = {name: threading.Event() for name in ("one", "two")}
    release = {name: threading.Event() for name in ("one", "two")}

    def handler(request):
        name = request.path.strip("/")
        if name in entered:
            entered[name].set()
            assert release[name].wait(10)
        return b"done"

    # Inline handlers: the scene needs the worker held in a handler (with handler threads it reads
    # A's second request as soon as it comes, and answers it with Connection: close).
    srv = server(handler, threads=1, shutdown_timeout=10, handler_threads=0)
    srv._core = observer = StopObserver(srv._core)
    with connect(srv.port) as a, connect(srv.port) as b, connect(srv.port) as c:
        a_reader = ResponseReader(a)
        a.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        assert a_reader.read_response().status == 200           # A: kept alive, idle
        c.sendall(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered["one"].wait(5)                            # the worker is in C's handler
        b.sendall(b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n")      # B's request waits in the kernel
        stopping = threading.Thread(target=srv.stop)
        stopping.start()
        assert observer.workers_asked.wait(5)                    # the stop is asked for
        release["one"].set()                                     # next turn: B read, stop seen
        assert entered["two"].wait(5)                            # the worker is in B's handler
        a.sendall(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")   # unread until B's handler returns
        release["two"].set()
        a.settimeout(5)
        try:
            rest = a.recv(65536)
        except ConnectionResetError:
            rest = "reset"
        stopping.join(10)
        assert not stopping.is_alive()
    assert rest == b"", f"A got {rest!r} instead of a clean end of the connection"


def test_the_stop_deadline_is_a_deadline_no_handler_starts_after_it(server, caplog):
    """Ten requests for a 0.4 s handler wait for one worker (an inline batch is 4 s of handlers).
    stop(timeout=1) must return within the deadline plus the one handler call running at it (and a
    small grace), start no handler after the deadline, and say how many requests it cut."""
    started = []
    first_entered = threading.Event()

    def slow(request):
        started.append(time.monotonic())
        first_entered.set()
        time.sleep(0.4)
        return b"slow"

    srv = server(slow, threads=1)
    clients = [connect(srv.port, 10) for _ in range(10)]
    try:
        for sock in clients:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert first_entered.wait(5)
        caplog.set_level("WARNING", logger="fastcore.error")
        stop_called = time.monotonic()
        srv.stop(timeout=1)
        stop_took = time.monotonic() - stop_called
    finally:
        for sock in clients:
            sock.close()
    deadline = stop_called + 1
    assert stop_took < 2.0, f"stop(timeout=1) took {stop_took:.2f} s"
    assert [round(at - deadline, 2) for at in started if at > deadline + 0.05] == []
    assert len(started) < 10
    cut = [record for record in caplog.records if "cut" in record.getMessage()]
    assert cut and f"{10 - len(started)} request" in cut[0].getMessage(), [r.getMessage() for r in caplog.records]


def test_stop_says_whether_requests_were_cut_off(server):
    """stop() returns True when everything in flight finished, False when the deadline cut a
    request off (the command line then exits 1), on both engines."""
    import threading
    from fastcore.server import HANDLER_RETURN_GRACE

    entered, release = threading.Event(), threading.Event()

    def handler(request):
        if request.path == "/slow":
            entered.set()
            release.wait(10)
        return b"done"

    srv = server(handler)
    assert get(srv.port, "/")[0] == 200
    assert srv.stop(timeout=1.0) is True                 # nothing in flight
    assert srv.stop() is True                           # idempotent: the same answer

    srv = server(handler)                               # a request body still arriving: cut off
    with connect(srv.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        wait_until(lambda: srv.stats()["requests"] == 1, 5)
        started = time.monotonic()
        assert srv.stop(timeout=0.3) is False
        assert 0.25 < time.monotonic() - started < 3
        assert sock.recv(65536) == b""                  # closed without an answer

    srv = server(handler)                               # a handler running past the deadline
    results = []
    client = threading.Thread(target=lambda: results.append(_get_or_error(srv.port, "/slow")))
    client.start()
    assert entered.wait(5)
    threading.Timer(0.6, release.set).start()
    assert srv.stop(timeout=0.2) is False
    client.join(10)
    assert not client.is_alive()
    assert HANDLER_RETURN_GRACE == 5.0                  # what --help and README state

    release.clear()
    entered.clear()
    srv = server(handler)
    client = threading.Thread(target=lambda: results.append(_get_or_error(srv.port, "/slow")))
    client.start()
    assert entered.wait(5)
    threading.Timer(0.2, release.set).start()           # returns well before the 5 s deadline
    assert srv.stop(timeout=5.0) is True
    client.join(10)
    assert results[-1] == 200


def _get_or_error(port, path):
    try:
        return get(port, path)[0]
    except (OSError, http.client.HTTPException) as error:
        return error


def test_port_after_stop_is_the_port_it_was_bound_to(server):
    """port=0 asks for any free port; after stop() the server still says which one it had (it
    said 0, the config's)."""
    srv = server(lambda request: b"x", port=0)
    bound = srv.port
    assert bound > 0
    srv.stop()
    assert srv.port == bound and not srv.running
    assert fastcore.Server(lambda request: b"x", port=0).port == 0       # never started: the config's


def test_max_requests_with_one_process_is_refused():
    """With one process nothing would replace a recycled one: refused, not silently ignored."""
    with pytest.raises(fastcore.ConfigError, match="max_requests needs processes > 1"):
        fastcore.ServerConfig(max_requests=100)
    assert fastcore.ServerConfig(max_requests=100, processes=2).max_requests == 100

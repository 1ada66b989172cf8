"""Hung handlers (`timeout`, fastcore/watchdog.py): a handler that never returns (until the test
sets its Event at the end) has its stack logged once and is counted, on both engines, inline and
with handler threads, for a native handler and a WSGI app on the compiled fast path; the other
requests go on being answered; with --processes the child is recycled and replaced. An ASGI app
that blocks its event loop is reported the same way, with the loop's stack. Without `timeout` no
watchdog runs."""
import socket
import threading
import time

import pytest

from fastcore import Response

from conftest import get, wait_until
from test_cli_app import app_dir, environment, read_line, serve  # noqa: F401 (fixtures)

TIMEOUT = 5.0


@pytest.fixture
def release():
    """The Event hung handlers wait on; set at the end of the test so every handler returns."""
    event = threading.Event()
    yield event
    event.set()


def make_hanging_handler(release, entered):
    def hang_forever(request):
        if request.path == "/hang":
            entered.set()
            release.wait(30)
            return Response(b"released\n")
        return Response(b"fine\n")
    return hang_forever


def send_without_waiting(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


def hung_reports(error_log):
    return [record for record in error_log.records if "more than timeout" in record.getMessage()]


@pytest.mark.parametrize("handler_threads", [0, 2])
def test_a_hung_native_handler_is_logged_once_and_counted(server, error_log, release, handler_threads):
    entered = threading.Event()
    srv = server(make_hanging_handler(release, entered), timeout=0.3, handler_threads=handler_threads)
    with send_without_waiting(srv.port, "/hang") as hung:
        assert entered.wait(TIMEOUT)
        assert get(srv.port, "/other")[2] == b"fine\n"          # the server goes on answering
        assert wait_until(lambda: hung_reports(error_log), TIMEOUT)
        time.sleep(0.5)                                         # more looks: still reported once
        reports = hung_reports(error_log)
        assert len(reports) == 1
        text = reports[0].getMessage()
        assert "more than timeout (0.3 s)" in text
        assert "in hang_forever" in text and "release.wait(30)" in text, text
        assert srv.stats()["handlers_over_timeout"] == 1
        release.set()
        assert hung.recv(65536).startswith(b"HTTP/1.1 200")
    error_log.records.clear()


def test_a_hung_wsgi_app_on_the_compiled_fast_path_is_reported(wsgi_server, wsgi_problems, error_log, release):
    entered = threading.Event()

    def hanging_app(environ, start_response):
        entered.set()
        release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"released"]

    srv = wsgi_server(hanging_app, validate=False, timeout=0.2)
    with send_without_waiting(srv.port, "/") as hung:
        assert entered.wait(TIMEOUT)
        assert wait_until(lambda: hung_reports(error_log), TIMEOUT)
        assert "in hanging_app" in hung_reports(error_log)[0].getMessage()
        assert srv.stats()["handlers_over_timeout"] == 1
        release.set()
        assert hung.recv(65536).startswith(b"HTTP/1.1 200")
    error_log.records.clear()
    assert len(wsgi_problems.take("fastcore.error", "more than timeout")) == 1


def test_an_asgi_app_blocking_its_event_loop_is_reported_once_with_the_blocking_stack(asgi_server, error_log,
                                                                                      release):
    """An ASGI app's requests are tasks: what hangs is the loop, when the app blocks it."""
    entered = threading.Event()

    async def blocking_app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/block":
            entered.set()
            release.wait(30)                            # a synchronous wait inside async code
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fine\n"})

    srv = asgi_server(blocking_app, timeout=0.3)
    assert get(srv.port, "/quick")[2] == b"fine\n"
    with send_without_waiting(srv.port, "/block") as blocked:
        assert entered.wait(TIMEOUT)
        assert wait_until(lambda: hung_reports(error_log), TIMEOUT)
        time.sleep(0.5)                                 # more looks: still one report for this episode
        reports = hung_reports(error_log)
        assert len(reports) == 1
        text = reports[0].getMessage()
        assert "the ASGI event loop has run no callback" in text and "more than timeout (0.3 s)" in text
        assert "in blocking_app" in text and "release.wait(30)" in text, text
        assert srv.stats()["handlers_over_timeout"] == 1
        release.set()
        assert blocked.recv(65536).startswith(b"HTTP/1.1 200")
    assert get(srv.port, "/quick")[2] == b"fine\n"
    time.sleep(0.5)                                     # a loop that runs again is not reported
    assert len(hung_reports(error_log)) == 1
    error_log.records.clear()


def test_quick_handlers_are_not_reported_and_no_watchdog_runs_without_timeout(server, error_log):
    srv = server(lambda request: Response(b"ok"), timeout=0.2)
    for _ in range(20):
        assert get(srv.port, "/")[0] == 200
    time.sleep(0.3)
    assert not hung_reports(error_log) and srv.stats()["handlers_over_timeout"] == 0
    assert any(thread.name.startswith("fastcore-watchdog") for thread in threading.enumerate())
    off = server(lambda request: Response(b"ok"))
    assert off.stats()["handlers_over_timeout"] == 0
    assert not any(thread.name == f"fastcore-watchdog:{off.port}" for thread in threading.enumerate())


HUNG_APP = '''
import os
import time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        release = os.path.join(os.path.dirname(__file__), "release")
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''


@pytest.mark.hang_timeout(60)
def test_with_processes_the_hung_child_is_recycled_and_replaced(serve, app_dir):
    (app_dir / "hungapp.py").write_text(HUNG_APP)
    served = serve("hungapp:app", "--port", "0", "--processes", "2", "--handler-threads", "2",
                   "--timeout", "0.5", "--shutdown-timeout", "1")
    lines = []
    try:
        with socket.create_connection((served.host, served.port), timeout=20) as hung:
            hung.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
            # The child reports the handler and stops gracefully: the hung request is cut at the
            # stop's deadline (this connection closes, with a 503 or nothing), and the child exits.
            try:
                cut = hung.recv(65536)
            except ConnectionResetError:
                cut = b""
            assert not cut.startswith(b"HTTP/1.1 200"), cut
        # The parent replaces it (its log on stderr, read as it comes).
        while sum("started worker process" in line for line in lines) < 3:
            lines.append(read_line(served.child.stderr, 20))
        for _ in range(10):
            assert served.get("/")[0] == 200
    finally:
        (app_dir / "release").write_text("")
    returncode, _, rest = served.stop()
    stderr = "".join(lines) + rest
    assert "more than timeout (0.5 s)" in stderr and "in app" in stderr, stderr
    assert "has a handler running past timeout (0.5 s); recycling it" in stderr
    assert "exited (exit status 0" in stderr and "replacing it" in stderr, stderr
    assert stderr.count("started worker process") == 3, stderr     # two, then the replacement

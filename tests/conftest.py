"""Shared fixtures and helpers for the fastcore test suite.

Every test is bounded in time without signal.alarm:
  * the autouse `hang_guard` fixture arms faulthandler.dump_traceback_later(..., exit=True), so a
    test that hangs (a server thread stuck, a client waiting forever) dumps every thread's stack and
    kills the run instead of stalling CI. The default is 60 s per test; a test can ask for another
    bound with @pytest.mark.hang_timeout(seconds);
  * every socket gets a timeout, every thread is joined with a timeout and asserted dead.

No test sleeps to wait for the server to be ready: after Server.start() returns it is accepting.
What the server reaches on its own clock (a timer firing, a counter settling) is polled, bounded
(wait_until). A few tests sleep briefly to show that something does not happen (a second close(),
a second access-log line, a graceful stop still waiting for its handler).
"""
import faulthandler
import gc
import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pytest

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

import fastcore  # noqa: E402

if os.environ.get("FASTCORE_TEST_INSTALLED"):
    # .ci/run also tests the built wheel: the package must then come from the environment, not
    # from a source tree next to the tests.
    assert "site-packages" in fastcore.__file__, fastcore.__file__

HANG_TIMEOUT_DEFAULT = 60.0

# FASTCORE_TEST_HANDLER_THREADS=N runs every fixture server with N handler threads (the default
# 0 runs handlers inline in the I/O workers): .ci/run runs the suite once each way.
DEFAULT_HANDLER_THREADS = int(os.environ.get("FASTCORE_TEST_HANDLER_THREADS", "0"))

# A duplicate of the real stderr taken in pytest_configure (capture is suspended then), so the
# faulthandler dump of a hung test reaches the terminal / CI log even under fd capture.
_hang_dump_fd = None


def pytest_configure(config):
    global _hang_dump_fd
    config.addinivalue_line(
        "markers", "hang_timeout(seconds): kill the run with a traceback dump if the test runs longer")
    config.addinivalue_line(
        "markers", "compiled_only(reason): run only against the compiled engine (a listed difference)")
    config.addinivalue_line(
        "markers", "native_responses: tests/test_protocol.py: a native Response feature ASGI cannot express")
    try:
        _hang_dump_fd = os.dup(sys.__stderr__.fileno())
    except (AttributeError, OSError, ValueError):
        _hang_dump_fd = None


def pytest_unconfigure(config):
    global _hang_dump_fd
    if _hang_dump_fd is not None:
        os.close(_hang_dump_fd)
        _hang_dump_fd = None


@pytest.fixture(autouse=True)
def hang_guard(request):
    """Dump all stacks and exit if this test (setup + call + teardown) outlives its bound."""
    marker = request.node.get_closest_marker("hang_timeout")
    seconds = float(marker.args[0]) if marker else HANG_TIMEOUT_DEFAULT
    target = _hang_dump_fd if _hang_dump_fd is not None else sys.__stderr__
    faulthandler.dump_traceback_later(seconds, exit=True, file=target)
    yield
    faulthandler.cancel_dump_traceback_later()


# -- servers -------------------------------------------------------------------------------------

# FASTCORE_TEST_ENGINES=compiled: the sanitizer stages of .ci/run, where only the compiled core is
# instrumented and the pure engine's half of the tests would check nothing of it.
ENGINES = tuple(os.environ.get("FASTCORE_TEST_ENGINES", "compiled,pure").split(","))


def pure_server_class():
    import fastcore.pure
    return fastcore.pure.Server


@pytest.fixture(params=ENGINES)
def engine(request):
    """Every test that starts its servers through the `server` fixture runs twice: against the
    compiled core and against fastcore.pure, so the two engines cannot drift apart unnoticed. A
    test of something only one engine does carries @pytest.mark.compiled_only(reason)."""
    marker = request.node.get_closest_marker("compiled_only")
    if request.param == "pure" and marker is not None:
        pytest.skip(f"compiled engine only: {marker.args[0]}")
    return request.param


def start_servers(server_class, started):
    """The factory behind the `server` and `pure_server` fixtures:
    start(handler=None, threads=2, static=None, **options) -> a started `server_class` on
    127.0.0.1, appended to `started` (the fixture stops them with stop_servers).

    `static` maps a path to a body, or to a dict of add_static keyword arguments
    ({"body": ..., "content_type": ..., "status": ...}); `websockets` a path to a dict of
    add_websocket keyword arguments ({"on_message": ..., "on_open": ..., "on_close": ...})."""

    def start(handler=None, threads=2, static=None, websockets=None, **options):
        options = {"host": "127.0.0.1", "port": 0, "handler_threads": DEFAULT_HANDLER_THREADS, **options}
        srv = server_class(handler, threads=threads, **options)
        for path, spec in (static or {}).items():
            if isinstance(spec, dict):
                srv.add_static(path, **spec)
            else:
                srv.add_static(path, spec)
        for path, callbacks in (websockets or {}).items():
            srv.add_websocket(path, **callbacks)
        srv.start()
        started.append(srv)
        assert srv.running
        assert srv.port > 0 or options.get("uds")
        return srv

    return start


def stop_servers(started):
    """Stop what a test started (stopping one the test already stopped is harmless), newest
    first, then check the debug build's leak counters: each server's own, so a leak names its
    server, then the whole process's."""
    for srv in reversed(started):
        core, name = srv._core, f"{type(srv).__name__} at {srv.url} with handler {srv.handler!r}"
        srv.stop()
        counters = core.debug_counters() if core is not None and hasattr(core, "debug_counters") else None
        if counters is not None and (counters.get("asgi_cycles") or counters.get("ws_channels")):
            # An ASGI cycle is a Python object: one caught in a reference cycle (an app's exception
            # whose traceback holds its frame, say) lives until the collector runs.
            gc.collect()
            counters = core.debug_counters()
        if counters is not None:
            assert_counters_clean(counters, name)
    assert_no_leaks()


@pytest.fixture
def server(engine):
    """Factory: server(handler=None, threads=2, static=None, **options) -> a started fastcore.Server
    (or fastcore.pure.Server, see `engine`); see start_servers. Stopped at teardown."""
    started = []
    yield start_servers(pure_server_class() if engine == "pure" else fastcore.Server, started)
    stop_servers(started)


@pytest.fixture
def pure_server():
    """Factory: like `server`, but always fastcore.pure.Server (tests of that engine alone)."""
    started = []
    yield start_servers(pure_server_class(), started)
    stop_servers(started)


def asgi_server_class(engine):
    if engine == "pure":
        from fastcore.pure import ASGIServer
        return ASGIServer
    return fastcore.ASGIServer


def start_asgi_servers(server_class, started, lifespan="auto"):
    """The factory behind `asgi_server`: start(app, threads=2, static=None, **options) -> a started
    `server_class` (an ASGIServer) on 127.0.0.1, appended to `started` (stop them with stop_servers)."""

    def start(app, threads=2, static=None, **options):
        options = {"host": "127.0.0.1", "port": 0, "lifespan": lifespan, **options}
        srv = server_class(app, threads=threads, **options)
        for path, body in (static or {}).items():
            srv.add_static(path, body)
        srv.start()
        started.append(srv)
        return srv

    return start


def configure_django(urls):
    """Django settings for the tests' small projects (WSGI and ASGI): configured once per process,
    with `urls` (a module holding urlpatterns) as the URLconf, also when another test module
    configured Django first."""
    import django
    from django.conf import settings
    if not settings.configured:
        settings.configure(
            DEBUG=False, SECRET_KEY="fastcore-test-" + "x" * 40, ROOT_URLCONF=urls, ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=[], DATABASES={}, USE_TZ=True,
            MIDDLEWARE=["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"],
            LOGGING_CONFIG=None,
        )
        django.setup()
    settings.ROOT_URLCONF = urls


@pytest.fixture
def asgi_server(request, engine, error_log):
    """Factory: asgi_server(app, threads=2, static=None, **options) -> a started fastcore.ASGIServer
    (or fastcore.pure.ASGIServer, see `engine`) on 127.0.0.1. At teardown the servers are stopped,
    their loop threads must be gone, the leak counters clean, and nothing may have been logged on
    "fastcore.error" unless the test took it (error_log.records.clear() after checking it). A test
    module's ASGI_LIFESPAN sets the default lifespan mode (its small apps may ignore lifespan)."""
    started = []
    yield start_asgi_servers(asgi_server_class(engine), started, getattr(request.module, "ASGI_LIFESPAN", "auto"))
    stop_servers(started)
    for srv in started:
        assert srv._loop_runner is None, "the loop thread was not stopped"
    left = [thread.name for thread in threading.enumerate() if thread.name.startswith("fastcore-asgi-loop")]
    assert not left, f"loop threads still running: {left}"
    unexpected = [record for record in error_log.records if record.levelno >= logging.WARNING]
    assert not unexpected, "unexpected log lines:\n" + error_log.text()


@pytest.fixture
def access_lines():
    """The "fastcore.access" lines written while the test runs, one per entry (the compiled core's
    own lines come several to a record, joined by newlines: pyext/access.pxi)."""
    lines = []
    lock = threading.Lock()

    class Collect(logging.Handler):
        def emit(self, record):
            with lock:
                lines.extend(record.getMessage().split("\n"))

    logger = logging.getLogger("fastcore.access")
    handler, previous = Collect(), logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(previous)


def assert_no_leaks():
    """In a debug build (FASTCORE_DEBUG=1), every connection, buffer and held response body must
    have been freed once the servers are stopped. A release build does not count: nothing to check."""
    counters = fastcore._core.debug_counters()
    if counters is not None:
        assert_counters_clean(counters, "all servers of this process")


def assert_counters_clean(counters, owner):
    """Nothing the core allocated or registered is left, and no event was illegal in its phase."""
    left = {name: count for name, count in counters.items() if count}
    assert not left, f"debug counters of {owner} not back to zero: {left}"


def echo_handler(request):
    """Describe the request as JSON: method, path, query, version, headers and body.

    `lookups` shows the case-insensitive header API for a few fixed spellings."""
    headers = request.headers
    lookups = {}
    for name in ("x-test-header", "X-TEST-HEADER", "X-Test-Header", "x-repeated", "X-Missing"):
        lookups[name] = {
            "getitem": headers[name] if name in headers else None,
            "get": headers.get(name, "<default>"),
            "in": name in headers,
            "getall": headers.getall(name),
        }
    described = {
        "method": request.method,
        "path": request.path,
        "query_string": request.query_string,
        "http_version": request.http_version,
        "keep_alive": request.keep_alive,
        "headers": [list(pair) for pair in headers.items()],
        "header_count": len(headers),
        "lookups": lookups,
        "body": request.body.decode("latin-1"),
        "body_type": type(request.body).__name__,
    }
    return fastcore.Response(json.dumps(described), content_type="application/json")


# -- raw HTTP over sockets -----------------------------------------------------------------------

class ConnectionClosed(Exception):
    """The peer closed the connection before a complete response arrived."""


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    header_list: list            # [(name, value)] as received
    body: bytes
    raw: bytes = field(repr=False, default=b"")

    @property
    def headers(self):
        """Header names lowercased; the last value wins for repeated names."""
        return {name.lower(): value for name, value in self.header_list}

    def getall(self, name):
        return [value for key, value in self.header_list if key.lower() == name.lower()]


def _parse_head(head):
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].decode("latin-1").partition(" ")
    code, _, reason = rest.partition(" ")
    assert version.startswith("HTTP/"), f"bad status line {lines[0]!r}"
    header_list = []
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        assert sep, f"bad response header line {line!r}"
        header_list.append((name, value.strip(" \t")))
    return version, int(code), reason, header_list


def _body_length(status, header_list, method):
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return 0
    lengths = [value for name, value in header_list if name.lower() == "content-length"]
    if not lengths:
        return None                          # delimited by close
    assert len(lengths) == 1, f"several Content-Length fields: {lengths}"
    return int(lengths[0])


def try_parse_response(buffer, method="GET", eof=False):
    """Parse one response from the start of `buffer`. Returns (RawResponse, bytes consumed), or
    None if more bytes are needed."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    version, status, reason, header_list = _parse_head(buffer[:end])
    start = end + 4
    length = _body_length(status, header_list, method)
    if length is None:
        if not eof:
            return None
        length = len(buffer) - start
    if len(buffer) - start < length:
        return None
    stop = start + length
    return RawResponse(version, status, reason, header_list, buffer[start:stop], buffer[:stop]), stop


def parse_response(data, method="GET"):
    """Parse exactly one complete response from bytes (e.g. raw_request's result)."""
    parsed = try_parse_response(data, method, eof=True)
    assert parsed is not None, f"incomplete response: {data[:300]!r}"
    return parsed[0]


class ResponseReader:
    """Reads responses one after another from a socket (keep-alive, pipelining)."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionClosed(f"closed with {len(self.buffer)} unparsed bytes: {self.buffer[:200]!r}")
        self.buffer += data

    def read_response(self, method="GET"):
        """The next response; raises ConnectionClosed, socket.timeout or ConnectionResetError."""
        while True:
            parsed = try_parse_response(self.buffer, method)
            if parsed is not None:
                response, used = parsed
                self.buffer = self.buffer[used:]
                return response
            self._fill()

    def closed_by_peer(self):
        """True when the peer closed (EOF or reset) with nothing more sent; raises socket.timeout
        if the connection stays open past the socket's timeout."""
        assert self.buffer == b"", f"unexpected bytes after the response: {self.buffer[:200]!r}"
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        assert data == b"", f"unexpected bytes after the response: {data[:200]!r}"
        return True


def connect(port, timeout=5.0):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def raw_request(port, data, timeout=5.0, method=None):
    """Send raw bytes on a fresh connection; return what came back, read until the peer closes or
    one complete response has arrived."""
    if method is None:
        method = data.split(b" ", 1)[0].decode("latin-1", "replace")
    with connect(port, timeout) as sock:
        sock.sendall(data)
        buffer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return buffer
            if not chunk:
                return buffer
            buffer += chunk
            try:
                if try_parse_response(buffer, method) is not None:
                    return buffer
            except (AssertionError, ValueError):
                continue                     # not parseable yet / not HTTP: keep reading to close


def exchange_and_check_close(port, data, timeout=5.0):
    """Send `data` on a fresh connection, read one response, and report whether the server then
    closed the connection. Returns (RawResponse, closed: bool)."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        reader = ResponseReader(sock)
        response = reader.read_response()
        try:
            closed = reader.closed_by_peer()
        except socket.timeout:
            closed = False
        return response, closed


def get(port, path="/", timeout=5.0, headers=None):
    """A GET through http.client on a fresh connection: (status, HTTPMessage, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


def assert_standard_fields(response):
    """Every response carries Date, Server and Content-Length (API contract)."""
    headers = response.headers
    assert "date" in headers, response.header_list
    assert "server" in headers, response.header_list
    assert "content-length" in headers, response.header_list
    assert int(headers["content-length"]) == len(response.body) or response.body == b""


# -- WSGI ----------------------------------------------------------------------------------------

class WSGIProblems:
    """What a WSGI test must not produce unless it says it expects it: records of level WARNING or
    above on the "fastcore" loggers (fastcore.error: app exceptions, validator AssertionErrors;
    fastcore.wsgi: wsgi.errors output), unraisable exceptions (the validator's "iterator garbage
    collected without being closed"), and wsgiref.validate.WSGIWarning (turned into exceptions
    inside the app, so they surface as logged errors)."""

    def __init__(self):
        import logging
        import threading
        self.records = []
        self.unraisable = []
        self._lock = threading.Lock()
        problems = self

        class _Collect(logging.Handler):
            def emit(self, record):
                with problems._lock:
                    problems.records.append(record)

        self.handler = _Collect(level=logging.WARNING)

    def take(self, logger, contains="", min_count=1):
        """Remove and return the records of `logger` whose message or traceback contains
        `contains`; at least `min_count` of them must be there."""
        import logging
        formatter = logging.Formatter()
        taken, kept = [], []
        with self._lock:
            for record in self.records:
                text = record.getMessage()
                if record.exc_info:
                    text += "\n" + formatter.formatException(record.exc_info)
                (taken if record.name == logger and contains in text else kept).append(record)
            self.records[:] = kept
        assert len(taken) >= min_count, \
            f"expected {min_count}+ records on {logger} containing {contains!r}; others: {self.describe()}"
        return taken

    def describe(self):
        import logging
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [formatter.format(record) for record in self.records] + [repr(u) for u in self.unraisable]

    def assert_none(self):
        assert not self.records and not self.unraisable, "unexpected problems:\n" + "\n".join(self.describe())


@pytest.fixture
def wsgi_problems():
    """A WSGIProblems collector, active for the test; at teardown nothing unexpected may remain."""
    import gc
    import logging
    import warnings
    from wsgiref.validate import WSGIWarning

    problems = WSGIProblems()
    logger = logging.getLogger("fastcore")
    logger.addHandler(problems.handler)
    previous_hook = sys.unraisablehook

    def hook(unraisable):
        with problems._lock:
            problems.unraisable.append((unraisable.exc_type, str(unraisable.exc_value), unraisable.object))

    sys.unraisablehook = hook
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        try:
            yield problems
            gc.collect()
        finally:
            sys.unraisablehook = previous_hook
            logger.removeHandler(problems.handler)
    problems.assert_none()


@pytest.fixture
def wsgi_server(wsgi_problems, engine):
    """Factory: wsgi_server(app, validate=True, threads=2, **options) -> a started
    fastcore.WSGIServer (or fastcore.pure.WSGIServer, see `engine`) on 127.0.0.1, running
    `wsgiref.validate.validator(app)` unless validate=False. Both engines matter here: the compiled
    one answers through pyext/wsgi.pxi, the pure one through fastcore/wsgi_adapter.py's Python twins.
    Servers are stopped at teardown, before wsgi_problems checks that nothing was logged (tests
    that provoke errors take their records with wsgi_problems.take(...))."""
    from wsgiref.validate import validator
    started = []
    if engine == "pure":
        from fastcore.pure.wsgi import WSGIServer as server_class
    else:
        server_class = fastcore.WSGIServer

    def start(app, validate=True, threads=2, **options):
        srv = server_class(validator(app) if validate else app, host="127.0.0.1", port=0,
                           threads=threads, **options)
        srv.start()
        started.append(srv)
        return srv

    yield start
    stop_servers(started)


def validate_in_process(app, environ=None, body=b""):
    """Run `app` once under wsgiref.validate.validator without a server (for apps whose server-side
    behaviour the validator's wrapping would hide, e.g. len() or wsgi.file_wrapper's sendfile).
    Returns (status, headers, body bytes)."""
    import io
    import wsgiref.util
    from wsgiref.validate import validator
    env = {"REQUEST_METHOD": "GET", "QUERY_STRING": "", "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
           "wsgi.file_wrapper": fastcore.FileWrapper}
    env.update(environ or {})
    env.setdefault("SCRIPT_NAME", "")
    env.setdefault("PATH_INFO", "/")
    wsgiref.util.setup_testing_defaults(env)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers
        return lambda data: None

    result = validator(app)(env, start_response)
    try:
        data = b"".join(result)
    finally:
        result.close()
    return seen["status"], seen["headers"], data


class HTTPReader:
    """Reads responses one after another from a socket (keep-alive, pipelining), decoding chunked
    bodies; a response whose body the peer cut short comes back with complete=False."""

    def __init__(self, sock, timeout=5.0):
        self.sock = sock
        self.buffer = b""
        sock.settimeout(timeout)

    def _fill(self):
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.buffer += data
        return bool(data)

    def _take(self, count):
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def read(self, method="GET"):
        """(status, headers dict with lowercased names, body, complete)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionClosed(f"closed before the head: {self.buffer[:200]!r}")
        end = self.buffer.index(b"\r\n\r\n")
        _, status, _, header_list = _parse_head(self._take(end + 4)[:end])
        headers = {name.lower(): value for name, value in header_list}
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return status, headers, b"", True
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    if not self._fill():
                        return status, headers, body, False
                size = int(self.buffer[:self.buffer.index(b"\r\n")].split(b";")[0], 16)
                while len(self.buffer) < self.buffer.index(b"\r\n") + 2 + size + 2:
                    if not self._fill():
                        line_end = self.buffer.index(b"\r\n") + 2
                        return status, headers, body + self.buffer[line_end:line_end + size], False
                self._take(self.buffer.index(b"\r\n") + 2)
                body += self._take(size)
                assert self._take(2) == b"\r\n", "bad chunk end"
                if size == 0:                        # "0\r\n\r\n": fastcore sends no trailers
                    return status, headers, body, True
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buffer) < length:
                if not self._fill():
                    return status, headers, self._take(length), False
            return status, headers, self._take(length), True
        while self._fill():
            pass
        return status, headers, self._take(len(self.buffer)), True


def read_chunked_response(sock, timeout=5.0, method="GET"):
    """One response from `sock` (see HTTPReader.read); bytes after it are discarded."""
    return HTTPReader(sock, timeout).read(method)


# -- waiting on the server's own clock, and closing -----------------------------------------------

def wait_until(predicate, seconds):
    """Poll a condition the server reaches on its own (a timer firing, a counter settling),
    bounded in time. Returns whether it became true."""
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def read_until_closed(sock):
    """Everything the peer sends until it closes (EOF or reset)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def child_env():
    """The environment for a child Python process that must import this checkout's fastcore
    (or, under FASTCORE_TEST_INSTALLED, the installed one: PROJECT_ROOT then holds no package)."""
    return dict(os.environ, PYTHONPATH=PROJECT_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def python_wsgi_calls(monkeypatch):
    """The paths of requests that went through the Python WSGIHandler.__call__ instead of the
    compiled fast path (pyext/wsgi.pxi): the list fills as they happen."""
    calls = []
    original_call = fastcore.WSGIHandler.__call__

    def counted_call(self, request):
        calls.append(request.path)
        return original_call(self, request)

    monkeypatch.setattr(fastcore.WSGIHandler, "__call__", counted_call)
    return calls


class LogCollector(logging.Handler):
    """Keeps the records a logger emits (`records`), sets `arrived` at each one."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []
        self.arrived = threading.Event()

    def emit(self, record):
        self.records.append(record)
        self.arrived.set()

    def text(self):
        return "\n".join(logging.Formatter().format(record) for record in self.records)


@pytest.fixture
def error_log():
    """Records sent to the "fastcore.error" logger during the test (a LogCollector)."""
    logger = logging.getLogger("fastcore.error")
    collector = LogCollector()
    logger.addHandler(collector)
    yield collector
    logger.removeHandler(collector)


# -- nginx in front (tests/test_proxy.py, tests/test_deploy_balanced.py) ------------------------

NGINX = shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nginx():
    """start(upstream, *more_upstreams, upstream_options="") -> the port of an nginx (foreground, one
    process, files in a temp dir) that proxies to `upstream` ("127.0.0.1:PORT" or "unix:/path"; with
    more, it balances them, each `server` line carrying upstream_options) the way README's Deploying
    section says: keep-alive upstream, X-Forwarded-For appended, X-Forwarded-Proto set (to https, as
    a TLS-terminating nginx would), Host passed on and X-Forwarded-Host set from it."""
    if NGINX is None:
        pytest.skip("nginx is not installed")
    directory = tempfile.mkdtemp(prefix="fastcore-nginx-")
    processes = []

    def start(upstream, *more_upstreams, upstream_options=""):
        port = free_port()
        servers = " ".join(f"server {address}{upstream_options};" for address in (upstream,) + more_upstreams)
        config = os.path.join(directory, f"nginx-{port}.conf")
        with open(config, "w") as file:
            file.write(f"""
daemon off;
master_process off;
worker_processes 1;
error_log {directory}/error.log warn;
pid {directory}/nginx-{port}.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream app {{ {servers} keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}
}}
""")
        process = subprocess.Popen([NGINX, "-c", config, "-p", directory], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        processes.append(process)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not start: {process.stderr.read().decode()}")
                time.sleep(0.02)

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        process.stderr.close()
    shutil.rmtree(directory, ignore_errors=True)

"""The access log: one line per response on the "fastcore.access" logger, off unless asked for.

Format (gunicorn's `%(h)s - - [%(t)s] "%(r)s" %(s)s %(b)s %(D)sus`):

    127.0.0.1 - - [27/Nov/2025:03:16:00 +0000] "GET /path?q=1 HTTP/1.1" 200 13 154us

remote address, the time the request arrived (local time, Common Log Format), the request line,
the status, the body bytes handed to the server ("-" for none), and the time from the call of the
handler to the end of the response body, in microseconds.

A line is written when the body is done: at once for a body of known length, when the server
closes a streamed body (its end, an error, the client leaving). It goes through `logging`, so
where it ends up is the logging configuration's business; the command line sends it to stdout
through a QueueHandler, so the worker threads never wait for the terminal. The format is applied
lazily: the worker thread only builds a LogRecord.

`access_logged(handler)` adds the log to a native handler, `asgi_access_logged(app)` to an ASGI app; Server applies it when
config.access_log is true, unless the handler's `logs_access` attribute is true: the WSGI adapter
(fastcore.wsgi_adapter) writes the lines itself, and a handler already wrapped here is not wrapped twice.
This module imports nothing of fastcore but the compiled core (fastcore.server imports it).
"""
import io
import logging
import os
import stat
import threading
import time

from ._core import FileWrapper, Response

log = logging.getLogger("fastcore.access")

FORMAT = '%s - - [%s] "%s %s HTTP/%s" %s %s %dus'
CORE_FORMAT = '%s - - [%s] "%s" %s %s %dus'         # the pure engine's own responses (pyext/access.pxi)
RAW_LINE_MAX = 256                                  # bytes of an unparsed request line that are logged
# How often the lines of the responses the compiled core writes itself are taken and logged.
CORE_LINES_INTERVAL = 0.2
CORE_LINES_PER_RECORD = 256
CORE_LINES_BUSY = 1000          # a flush that found this many lines is followed by the next at once


def raw_request_line(data):
    """An unparsed request's first line, safe to log: up to its first CR or LF, bytes outside
    printable ASCII (and '"', '\\') as '?'; "-" when empty (pyext/access.pxi does the same)."""
    line = data.split(b"\r", 1)[0].split(b"\n", 1)[0][:RAW_LINE_MAX]
    text = "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else "?" for c in line)
    return text or "-"


class CoreAccessLines:
    """The access lines of the responses the compiled core writes itself (static routes, its 404,
    protocol errors: pyext/access.pxi), taken from its workers every CORE_LINES_INTERVAL seconds by
    a thread of their own and written on the "fastcore.access" logger; stop() takes the last ones."""

    def __init__(self, core, name):
        self._core = core
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while True:
            if self.flush() < CORE_LINES_BUSY and self._stop.wait(CORE_LINES_INTERVAL):
                return                                  # (a busy server's lines are taken at once)
            if self._stop.is_set():
                return

    def flush(self):
        """Log what the workers wrote since the last flush: up to CORE_LINES_PER_RECORD lines per
        record, joined by newlines. One record per line costs the logging module microseconds each:
        at a static route's rate (100k responses/s and more) that is more than a core, and lines
        would be dropped (pyext/access.pxi bounds what the workers hold)."""
        lines = self._core.take_access_lines().decode("latin-1").splitlines()
        for start in range(0, len(lines), CORE_LINES_PER_RECORD):
            log.info("%s", "\n".join(lines[start:start + CORE_LINES_PER_RECORD]))
        return len(lines)

    def stop(self):
        """After the workers have returned: the thread ends and the last lines are logged."""
        self._stop.set()
        self._thread.join(5)
        self.flush()

_clf_cache = (None, "")


def clf_time(seconds):
    """`seconds` since the epoch as Common Log Format local time, cached per second."""
    global _clf_cache
    whole = int(seconds)
    cached_second, text = _clf_cache
    if whole != cached_second:
        text = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(whole))
        _clf_cache = (whole, text)
    return text


def write(request, status, sent, started_wall, started):
    """One access line. `started_wall` is time.time() and `started` time.perf_counter() at the
    start of the request."""
    log.info(FORMAT, request.remote_addr or "-", clf_time(started_wall), request.method, request.target,
             request.http_version, status, sent if sent else "-",
             int((time.perf_counter() - started) * 1_000_000))


class _ScopeLine:
    """One ASGI exchange's access line: what its app has sent so far (status, body bytes) and
    whether the line was written."""

    __slots__ = ("scope", "wall", "started", "status", "sent", "written")

    def __init__(self, scope, status):
        self.scope = scope
        self.wall, self.started = time.time(), time.perf_counter()
        self.status, self.sent, self.written = status, 0, False

    def write(self):
        self.written = True
        scope = self.scope
        client = scope.get("client")
        query = scope.get("query_string") or b""
        target = scope["raw_path"] + (b"?" + query if query else b"")
        log.info(FORMAT, client[0] if client else "-", clf_time(self.wall), scope.get("method", "GET"),
                 target.decode("latin-1"), scope.get("http_version", "1.1"), self.status, self.sent or "-",
                 int((time.perf_counter() - self.started) * 1_000_000))


def asgi_access_logged(app):
    """An ASGI app with the access log: one line per HTTP response, when its last body message is
    sent (a streamed body: at its end), or when the app's call ends without one (the server then
    answered 500, or cut the connection: the line says 500, or the status the app had started).
    A WebSocket's line is its handshake's answer (_websocket_line)."""

    async def logged(scope, receive, send):
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            return await app(scope, receive, send)
        line = _ScopeLine(scope, 500)
        try:
            await app(scope, receive, _http_line(line, send) if kind == "http" else _websocket_line(line, send))
        finally:
            if not line.written:
                line.write()

    logged.logs_access = True
    return logged


def _http_line(line, send):
    async def send_logged(message):
        kind = message["type"]
        if kind == "http.response.start":
            line.status = message["status"]
        elif kind == "http.response.body":
            line.sent += len(message.get("body", b""))
        elif kind == "http.response.pathsend":
            line.sent += os.stat(message["path"]).st_size
        await send(message)
        if not line.written and (kind == "http.response.pathsend"
                                 or kind == "http.response.body" and not message.get("more_body", False)):
            line.write()
    return send_logged


def _websocket_line(line, send):
    """A WebSocket's line is written when its handshake is answered, as uvicorn logs "[accepted]"
    (nginx writes its 101 at the end; a long-lived connection would show up hours late): 101 when
    the app accepts; 403 when it closes first; the status of its denial response (the
    websocket.http.response extension) once that is sent; 500 when its call ends before any of
    those (the server then answers 500)."""
    async def send_logged(message):
        await send(message)
        if line.written:
            return
        kind = message["type"]
        if kind == "websocket.accept" or kind == "websocket.close":
            line.status = 101 if kind == "websocket.accept" else 403
            line.write()
        elif kind == "websocket.http.response.start":
            line.status = message["status"]
        elif kind == "websocket.http.response.body":
            line.sent += len(message.get("body", b""))
            if not message.get("more_body", False):
                line.write()
    return send_logged


class FileClosedHook:
    """Stands in for the file inside a FileWrapper so that the server's close() of the wrapper
    (after sendfile) also calls `on_close`. Everything else goes to the file."""

    __slots__ = ("_file", "_on_close")

    def __init__(self, file, on_close):
        self._file = file
        self._on_close = on_close

    def fileno(self):
        return self._file.fileno()

    def tell(self):
        return self._file.tell()

    def read(self, *args):
        return self._file.read(*args)

    def close(self):
        try:
            close = getattr(self._file, "close", None)
            if close is not None:
                close()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()


class _LoggedStream:
    """A streamed native response body whose close() writes the access line."""

    __slots__ = ("_body", "_iterator", "_request", "_status", "_sent", "_wall", "_started", "_done")

    def __init__(self, body, request, status, wall, started):
        self._body = body
        self._iterator = iter(body)
        self._request = request
        self._status = status
        self._sent = 0
        self._wall = wall
        self._started = started
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        part = next(self._iterator)
        self._sent += len(part)
        return part

    def close(self):
        if self._done:
            return
        self._done = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            write(self._request, self._status, self._sent, self._wall, self._started)


def access_logged(handler):
    """Wrap a native handler (request -> Response) so that every response is access-logged.
    A handler exception is logged as a 500 and re-raised (the server answers it)."""

    def logged(request):
        wall = time.time()
        started = time.perf_counter()
        try:
            result = handler(request)
        except BaseException as error:
            write(request, getattr(error, "status", 500), 0, wall, started)
            raise
        head = request.method == "HEAD"
        if isinstance(result, Response):
            body, status = result.body, result.status
        else:
            body, status = result, 200
        if isinstance(body, (bytes, bytearray, memoryview, str, list, tuple)):
            if isinstance(body, str):
                sent = len(body.encode("utf-8"))
            elif isinstance(body, (list, tuple)):
                sent = sum(len(part.encode("utf-8") if isinstance(part, str) else part) for part in body)
            else:
                sent = len(body)
            write(request, status, 0 if head else sent, wall, started)
            return result
        size = file_span_length(body) if type(body) is FileWrapper else None
        if size is not None:                            # goes out with sendfile(2): no iteration to count
            def file_done():
                write(request, status, 0 if head else size, wall, started)
            wrapped = FileWrapper(FileClosedHook(body.filelike, file_done), body.block_size)
        else:
            wrapped = _LoggedStream(body, request, status, wall, started)
        if isinstance(result, Response):
            return Response(wrapped, result.status, result.headers, result.content_type, result.reason)
        return Response(wrapped)

    logged.__wrapped__ = handler
    logged.logs_access = True
    return logged


def file_span_length(wrapper):
    """The bytes the server will sendfile(2) for a FileWrapper (its file's position to its end),
    or None when it wraps no regular file (then it is iterated)."""
    file = wrapper.filelike
    try:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            return None
        return max(0, status.st_size - (file.tell() if hasattr(file, "tell") else 0))
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None

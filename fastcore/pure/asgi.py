"""fastcore.pure.asgi: ASGI on the pure engine: the bridge from the I/O workers to the event loop,
and each request's cycle (scope, receive, send).

Theory of operation (the handler-thread model of bridge.py, with the event loop as the consumer;
pyext/asgi.pxi is the compiled twin). A worker with a request for Python appends the connection to
the ASGIBridge's deque and, when the deque was empty, writes the bridge's eventfd (Core.asgi_fd),
which the loop watches (add_reader). From then until it comes back, the connection belongs to the
loop, exactly as it would belong to a handler thread: out of its worker's epoll set, marked
`with_handler_thread`, `conn.worker` the bridge's own HandlerContext (its counters and Date line).

  * drain() (Core.asgi_drain, the add_reader callback) takes every waiting connection and starts
    a Cycle for each as a task created from that callback, never from inside another request's
    task, so a request's contextvars never leak into the next one's.
  * receive(): a body read whole before dispatch comes in one message. A larger one (over
    body_buffer_size) is read in parts with the blocking BodyReader of request.py, in the loop's
    default executor (one read at a time, so memory stays bounded by one read; its first read sends
    the deferred 100 Continue). After the body: wait until the response is complete or the client
    is gone (the loop watches the socket for EOF meanwhile), then http.disconnect.
  * send(): http.response.start is checked (fastcore.asgi.check_start: never a split response) and
    kept; the head is written with the first body message, when the framing is known
    (fastcore.asgi.frame). A complete response goes into the connection's output and the
    connection goes back to its worker's inbox, which sends it and serves what is pipelined
    behind it. A streamed body is sent by the loop itself, non-blocking: send() returns while less
    than STREAM_WINDOW bytes wait, else it waits for the socket to take them (backpressure, bounded
    by write_timeout); the final part hands the connection back with what is left to send.
    http.response.pathsend hands the file to the worker, which sends it with sendfile.
  * The app's exceptions: before the response started, a 500 (logged); after, the connection is
    closed without completing the body (logged). ClientDisconnected (send() after the client left)
    is not logged. A cycle cancelled by a stop's deadline (Core.asgi_cancel) closes its connection
    (a 503 if nothing was sent), counted in requests_cut_at_stop.

The task may outlive its response (a background task runs after the final body): once the
connection is handed back, the cycle never touches it again; receive() then says http.disconnect
and send() refuses with RuntimeError.
"""
import asyncio
import collections
import os
import socket
import threading
import time

from ..asgi import (CHUNKED_END, FRAME_CHUNKED, FRAME_CLOSE, FRAME_LENGTH, FRAME_NONE, body_bytes, check_start, chunk,
                    client_address, frame, scope_paths)
from ..errors import ClientDisconnected
from ..proxy import apply_to_scope, header_values, resolve
from ..websocket import VALID, handshake_status, subprotocols, upgrade_attempt
from . import response
from .asgi_websocket import WebSocketCycle, refuse_handshake, websocket_scope
from .batch import cut_at_deadline, stop_deadline_passed
from .bridge import inbox_push
from .protocol import ANSWERED, CLOSE_AFTER_RESPONSE, CLOSE_LINGERING, close_after, transition
from .request import BodyReader
from .wakeup import Wakeup

STREAM_WINDOW = response.STREAM_HIGH_WATER      # unsent bytes of a streamed body before send() waits
_EXTENSIONS = {"http.response.pathsend": {}}
_DISCONNECT = {"type": "http.disconnect"}


class WebSocketOptions:
    """The ws_* options of the ServerConfig, as a WebSocket cycle reads them."""

    __slots__ = ("max_size", "max_queue", "ping_interval", "ping_timeout", "per_message_deflate")

    def __init__(self, config):
        self.max_size = config.ws_max_size
        self.max_queue = max(1, config.ws_max_queue)
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.per_message_deflate = config.ws_per_message_deflate


class ASGIBridge:
    """The deque of connections waiting for the loop, its eventfd, and the cycles in flight."""

    def __init__(self, asgi, write_timeout, config):
        self.asgi = asgi                    # fastcore.asgi.ASGIApp
        self.websocket_options = WebSocketOptions(config)
        self.websockets = set()             # accepted WebSocket cycles not yet ended (going_away)
        self.going_away = False             # the server stops: WebSockets close with 1001
        self.write_timeout = write_timeout or None      # a streamed body's wait for the socket (None: no limit)
        self.lock = threading.Lock()
        self.waiting = collections.deque()
        self.wakeup = Wakeup()
        self.context = None                 # a HandlerContext, set by Core once it can make one
        self.cycles = set()                 # cycles whose task has not finished

    def push(self, conn):
        """From a worker: hand `conn` (in HANDLER, out of the epoll set) to the loop."""
        conn.with_handler_thread = True
        with self.lock:
            was_empty = not self.waiting
            self.waiting.append(conn)
        if was_empty:
            self.wakeup.wake()

    def drain(self):
        """On the loop (add_reader callback): start a cycle for every waiting connection. The
        eventfd is read before the deque is taken, so a push after the take wakes us again."""
        self.wakeup.take()
        with self.lock:
            taken = list(self.waiting)
            self.waiting.clear()
        context = self.context
        context.now = time.monotonic()
        context.date.refresh()
        loop = self.asgi.loop
        for conn in taken:
            conn.worker = context
            if stop_deadline_passed(context):
                cut_at_deadline(context, conn)          # no cycle starts after the stop's deadline
                transition(conn, ANSWERED)
                conn.worker = conn.home
                inbox_push(conn)
                continue
            cycle = self.new_cycle(conn)
            if cycle is None:
                continue                                # a refused WebSocket handshake
            self.cycles.add(cycle)
            cycle.task = loop.create_task(cycle.run())

    def new_cycle(self, conn):
        """An HTTP Cycle, a WebSocketCycle for a valid upgrade attempt, or None when the attempt
        was refused (400, 426: the app never sees it)."""
        message = conn.parser.message
        scope = build_scope(self.asgi, conn, message)
        headers = scope["headers"]
        if not upgrade_attempt(scope["method"], scope["http_version"], headers):
            return Cycle(self, conn, scope)
        status = handshake_status(headers, message.chunked or message.content_length > 0)
        if status != VALID:
            refuse_handshake(self, conn, status)
            return None
        return WebSocketCycle(self, conn, websocket_scope(scope, subprotocols(headers)), Cycle)

    def stop_websockets(self):
        """From the stopping thread: close every open WebSocket with 1001 (going away), on the loop."""
        try:
            self.asgi.loop.call_soon_threadsafe(self._going_away)
        except RuntimeError:
            pass                                        # the loop is closed: nothing runs there

    def _going_away(self):
        self.going_away = True
        for cycle in list(self.websockets):
            cycle.going_away()

    def cancel(self):
        """On the loop: cancel every cycle still running (the stop's deadline)."""
        for cycle in list(self.cycles):
            cycle.task.cancel()

    def close(self):
        self.wakeup.close()


def build_scope(asgi, conn, message):
    head = message.head
    raw_path = head[message.path_start:message.path_end] or b"/"
    query_start = message.path_end
    if query_start < message.target_end and head[query_start] == 63:           # '?'
        query = head[query_start + 1:message.target_end]
    else:
        query = b""
    path, raw_path = scope_paths(raw_path, asgi.root_path)
    headers = []
    for line in head.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        headers.append((name.lower(), value.strip(b" \t")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1" if message.version_minor == 1 else "1.0",
        "method": head[:message.method_end].decode("ascii"),
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": asgi.root_path,
        "headers": headers,
        "client": client_address(conn.peer),
        "server": asgi.server,
        "extensions": _EXTENSIONS,
    }
    if asgi.state is not None:
        scope["state"] = dict(asgi.state)
    proxies = conn.worker.proxies
    if proxies is not None:
        values = header_values(head)
        if values is not None:
            proxied = resolve(proxies, scope["client"][0] if scope["client"] else "", *values)
            if proxied is not None:
                apply_to_scope(scope, proxied)
    return scope


def read_part(reader):
    """In the executor: the next decoded part of a streamed body (b"" at its end); blocks on the
    socket (body_timeout) when none is buffered. Raises RequestBodyError."""
    reader._fill()
    ready = reader._ready()
    return reader._take(ready) if ready else b""


class Cycle:
    """One request's ASGI cycle on the pure engine."""

    def __init__(self, bridge, conn, scope=None):
        self.bridge = bridge
        self.conn = conn
        self.home = conn.home
        message = self.message = conn.parser.message
        self.head_only = message.is_head
        self.reader = BodyReader(conn, message) if conn.body_streamed else None
        self.scope = scope if scope is not None else build_scope(bridge.asgi, conn, message)
        self.task = None
        self.body_done = False              # receive() has given the whole body
        self.reading = None                 # the executor read in flight (a streamed body)
        self.read_result = None             # what it gave (bytes or the exception), not yet received
        self.start = None                   # the checked http.response.start
        self.framing = FRAME_NONE
        self.remaining = -1                 # FRAME_LENGTH: bytes the declared length still owes
        self.head_written = False
        self.complete = False               # the final body message came
        self.handed_back = False            # the connection is its worker's again
        self.hand_back_pending = False      # complete while a body read ran: hand back when it returns
        self.gone = False                   # the client went away
        self.watching = False               # the loop watches the socket for the client's EOF
        self.ended = asyncio.Event()        # complete or gone: receive() after the body returns

    # -- the task ----------------------------------------------------------------------------------

    async def run(self):
        asgi = self.bridge.asgi
        try:
            await asgi.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.fail(cut=True)
        except BaseException as error:
            if not (isinstance(error, ClientDisconnected) or (self.gone and isinstance(error, OSError))):
                asgi.log_failure(self.scope, error)
            self.fail()
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            if not self.complete:
                if not self.gone:
                    what = "starting" if self.start is None else "completing"
                    asgi.log_failure(self.scope, RuntimeError(f"the ASGI app returned without {what} its response"))
                self.fail()
        finally:
            self.bridge.cycles.discard(self)

    def fail(self, cut=False):
        """The app raised, returned early or was cancelled: a 500 (503 when cut by the stop's
        deadline) if nothing was sent, else close without completing the body."""
        if self.handed_back or self.hand_back_pending:
            return
        conn = self.conn
        context = self.bridge.context
        if cut:
            context.requests_cut_at_stop += 1
        if self.gone:
            close_after(conn, CLOSE_LINGERING)
        elif self.start is None:
            context.date.refresh()
            if cut:
                close_after(conn, CLOSE_LINGERING)
            response.append_error_response(conn, 503 if cut else 500, self.head_only)
        else:
            close_after(conn, CLOSE_LINGERING)          # the body stays incomplete: the client sees it
        self.complete = True
        self.hand_back()

    def hand_back(self):
        """Give the connection back to its worker (which sends what is in its output and serves
        what is pipelined behind); the cycle never touches it again."""
        if self.handed_back:
            return
        if self.reading is not None:
            self.hand_back_pending = True               # an executor thread is reading its socket
            return
        self.handed_back = True
        self.stop_watching()
        self.ended.set()
        conn = self.conn
        if self.reader is not None:
            conn.end_streamed_body(self.reader)         # a body not read to the end: close after
        if self.gone:
            conn.peer_closed = True
        conn.finish_request()
        transition(conn, ANSWERED)
        conn.worker = self.home
        inbox_push(conn)

    # -- receive -----------------------------------------------------------------------------------

    async def receive(self):
        if self.handed_back or self.gone:
            return _DISCONNECT
        if not self.body_done:
            return await self.next_body_part()
        if not self.complete:
            self.watch()
            await self.ended.wait()
        return _DISCONNECT

    async def next_body_part(self):
        reader = self.reader
        if reader is None:
            self.body_done = True
            return {"type": "http.request", "body": self.message.body(), "more_body": False}
        if self.read_result is None:
            if self.message.buffered:
                self.read_result = reader._take(reader._ready())
            else:
                if self.reading is None:
                    self.reading = asyncio.get_running_loop().run_in_executor(None, read_part, reader)
                    self.reading.add_done_callback(self._read_done)
                await asyncio.wait([self.reading])      # a cancelled receive() leaves the read running
        result, self.read_result = self.read_result, None
        if isinstance(result, BaseException):
            return self.body_failed(result)
        if reader.finished:
            self.body_done = True
        return {"type": "http.request", "body": result, "more_body": not self.body_done}

    def _read_done(self, future):
        self.reading = None
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        self.read_result = error if error is not None else future.result()
        if self.hand_back_pending:
            self.hand_back_pending = False
            self.hand_back()

    def body_failed(self, error):
        """Reading the body failed (the client left, timed out, or sent a malformed chunk): its
        status is the answer if nothing was sent yet; the app hears http.disconnect."""
        status = getattr(error, "status", 400)
        self.body_done = True
        conn = self.conn
        if not self.handed_back:
            close_after(conn, CLOSE_LINGERING)
            if conn.peer_closed:
                self.gone = True                        # the client closed before the whole body
            elif not self.head_written:
                self.bridge.context.date.refresh()
                response.append_error_response(conn, status, self.head_only)
            self.complete = True
            self.hand_back()
        return _DISCONNECT

    def watch(self):
        """While receive() waits after the body: notice the client's EOF or reset."""
        if self.watching or self.handed_back:
            return
        self.watching = True
        self.bridge.asgi.loop.add_reader(self.conn.fd, self._peek)

    def stop_watching(self):
        if self.watching:
            self.watching = False
            self.bridge.asgi.loop.remove_reader(self.conn.fd)

    def _peek(self):
        try:
            data = self.conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.stop_watching()                # the client sent more (pipelined): it is there
            return
        self.client_gone()

    def client_gone(self):
        self.gone = True
        self.conn.peer_closed = True
        self.stop_watching()
        self.ended.set()

    # -- send --------------------------------------------------------------------------------------

    async def send(self, message):
        kind = message.get("type")
        if self.complete:
            raise RuntimeError(f"ASGI message {kind!r} sent after the response was complete")
        if self.gone:
            raise ClientDisconnected("the client closed the connection")
        if kind == "http.response.start":
            if self.start is not None:
                raise RuntimeError("http.response.start sent twice")
            self.start = check_start(message)
        elif kind == "http.response.body":
            if self.start is None:
                raise RuntimeError("http.response.body sent before http.response.start")
            more = bool(message.get("more_body", False))
            self.write_body(body_bytes(message), more)
            if more:
                await self.push_output()
            else:
                self.complete = True
                self.hand_back()
        elif kind == "http.response.pathsend":
            if self.start is None:
                raise RuntimeError("http.response.pathsend sent before http.response.start")
            self.send_file(message.get("path"))
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} in an HTTP cycle")

    def write_head(self, whole_length):
        """Serialize the head once the framing is known (`whole_length`: the body given whole, else -1)."""
        start = self.start
        conn = self.conn
        context = self.bridge.context
        framing, length = frame(start, self.head_only, self.message.version_minor, whole_length)
        if framing == FRAME_LENGTH and whole_length >= 0 and length != whole_length:
            raise RuntimeError(f"the response body is {whole_length} bytes but its Content-Length says {length}")
        formats = context.formats
        context.date.refresh()
        parts = [formats.status_line(start.status), start.lines]
        if not start.own_server:
            parts.append(formats.server_field)
        if not start.own_date:
            parts.append(context.date.line)
        if length >= 0:
            parts.append(b"Content-Length: %d\r\n" % length)
        elif framing == FRAME_CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if framing == FRAME_CLOSE or start.close or context.stop_requested:
            close_after(conn, CLOSE_AFTER_RESPONSE)
        if self.reader is not None and not self.reader.finished:
            # Unread body bytes cannot be told from the next request without reading them all:
            # the response says the connection closes (as for a native handler, connection.py).
            close_after(conn, CLOSE_LINGERING)
        parts.append(response.connection_field(conn))
        parts.append(b"\r\n")
        context.count_response(start.status)
        conn.write(b"".join(parts))
        self.head_written = True
        self.framing = framing
        self.remaining = length if framing == FRAME_LENGTH else -1

    def write_body(self, body, more):
        if not self.head_written:
            self.write_head(-1 if more else len(body))
        framing = self.framing
        conn = self.conn
        if framing == FRAME_LENGTH:
            if len(body) > self.remaining:
                raise RuntimeError("the response body is longer than its Content-Length")
            if body:
                conn.write(body)
            self.remaining -= len(body)
            if not more and self.remaining:
                raise RuntimeError(f"the response body ended {self.remaining} bytes short of its Content-Length")
        elif framing == FRAME_CHUNKED:
            if body:
                conn.write(chunk(body))
            if not more:
                conn.write(CHUNKED_END)
        elif framing == FRAME_CLOSE and body:
            conn.write(body)

    async def push_output(self):
        """Send what the socket takes now; wait while more than STREAM_WINDOW bytes are left."""
        conn = self.conn
        while conn.out:
            if conn.send_available():
                return
            if conn.peer_closed:
                self.client_gone()
                raise ClientDisconnected("the client closed the connection")
            if conn.out_size <= STREAM_WINDOW:
                return
            await self.writable()

    async def writable(self):
        loop = self.bridge.asgi.loop
        ready = loop.create_future()
        fd = self.conn.fd
        loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, self.bridge.write_timeout)
        except asyncio.TimeoutError:
            self.client_gone()              # it stopped taking bytes: closed as the workers would
            raise ClientDisconnected("the client took no response bytes within write_timeout") from None
        finally:
            loop.remove_writer(fd)

    def send_file(self, path):
        """http.response.pathsend: the whole file, with sendfile by the worker."""
        if self.head_written:
            raise RuntimeError("http.response.pathsend after a response body was sent")
        if not isinstance(path, str):
            raise RuntimeError(f"http.response.pathsend's path is a str, not {type(path).__name__}")
        handle = open(path, "rb")
        try:
            size = os.fstat(handle.fileno()).st_size
            self.write_head(size)
        except BaseException:
            handle.close()
            raise
        conn = self.conn
        if self.framing == FRAME_LENGTH and size:
            conn.stream_owner = handle          # closed by the worker once sent (Conn.send_file)
            conn.sendfile_fd, conn.sendfile_offset, conn.sendfile_remaining = handle.fileno(), 0, size
        else:
            handle.close()
        self.complete = True
        self.hand_back()

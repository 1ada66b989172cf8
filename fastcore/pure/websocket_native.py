"""fastcore.pure.websocket_native: native WebSockets on the pure engine (Server.add_websocket): the
twin of pyext/websocket_native.pxi, with callbacks instead of an ASGI app.

Theory of operation. Connection.serve() finds a complete GET whose path was registered with
add_websocket and which is an upgrade attempt (fastcore.websocket.upgrade_attempt): handshake()
answers it right there in the I/O worker, without calling Python code of the app: 400/426 for a
malformed one (then the usual lingering close), else the 101 (permessage-deflate per
ws_per_message_deflate, no subprotocol) and a WebSocket object on `conn.websocket`. serve() then
stops (SERVE_WEBSOCKET) and begin() takes the connection out of HTTP: the state machine sees
TO_HANDLER (phase HANDLER: no timer; protocol.py) and from then on its worker's loop gives its
epoll events to on_event() here, which manages the fd's interest itself, as asgi_websocket.py's
loop does for an ASGI WebSocket. Only the worker thread touches the connection.

In the worker: received bytes go to a MessageReader (websocket.py: framing, UTF-8, deflate, size
limits); pings are answered at once, messages become events; our frames go into the connection's
output and out with send_available(), EPOLLOUT taking the rest. Per-worker timers (a heap:
`ws_timers`) run server pings (ws_ping_interval / ws_ping_timeout: 1011) and the 5 s our close
waits for the client's answer (then 1006).

Callbacks. Each WebSocket has its own FIFO of events (open, message, closed), filled by the worker
and emptied by run_callbacks(), which calls on_open / on_message / on_close in order. At most one
thread runs a connection's callbacks at a time (`scheduled`): the WebSocket is handed, once, to
where native handlers run: inline mode (handler_threads = 0), the worker's `ws_ready` list, run
at the end of its loop turn next to its handler batch (the compiled engine's batch); handler
threads, the bridge (Bridge.push_task), taken by a handler thread as a connection would be. A
turn runs at most python_batch callbacks of one connection, then the WebSocket goes to the back.
At most ws_max_queue messages wait per connection: while that many wait, the worker stops reading
the socket; run_callbacks() asks it to read again when one has been taken.

ws.send() and ws.close() may be called from any thread: they only queue (under the WebSocket's
lock) and post a notice to the worker (`ws_notices` under its inbox lock, and its wake-up when the
list was empty); the worker pumps the queue into the connection's output. send() returns False
once more than 64 KiB wait unsent (queued here plus the connection's output): the message is
queued all the same; the caller should back off. Both raise ClientDisconnected once the
connection is closing or closed (close() only for its checks: a second close does nothing).

Endings (end()): the client's close (answered with its code; on_close gets it, 1005 if none), our
close answered (on_close gets the client's answer, 1006 without one in 5 s), a protocol error (the
close goes out with its code, on_close gets that code: 1002, 1007, 1009), a ping timeout (1011),
EOF or reset (1006). A callback that raises is logged on fastcore.error with the path and the
connection closes with 1011 (messages still waiting are dropped, on_close still runs). A stopping
server sends 1001 to every open WebSocket (going_away) and the worker waits, as for any request,
until they end or the stop's deadline, which ends them with 1006 (abandon). end() posts the
closed event (exactly once), and hands the connection back to HTTP's state machine with
CLOSE_LINGERING, as asgi_websocket.hand_back does: the rest of the output (the close frame) goes
out, then the lingering close.
"""
import collections
import heapq
import itertools
import os
import select
import threading

from ..errors import ClientDisconnected
from ..websocket import (CLOSE_ABNORMAL, CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, VALID, accept_value,
                         check_close, handshake_key, handshake_status, upgrade_attempt)
from . import response
from .protocol import ANSWERED, CLOSE_LINGERING, TO_HANDLER, close_after, transition
from .request import Request
from .websocket import (BINARY, CLOSE, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, PING, TEXT, MessageReader,
                        ProtocolError, close_payload, compress, frame_head, negotiate_deflate)

SEND_HIGH_WATER = 65536         # unsent bytes past which send() says False
CLOSE_TIMEOUT = 5.0             # how long our close waits for the client's
READ_SIZE = 65536

OPEN, CLOSING, ENDED = range(3)
EVENT_OPEN, EVENT_MESSAGE, EVENT_CLOSED = range(3)
TIMER_PING, TIMER_PONG, TIMER_CLOSE = range(3)

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_sequence = itertools.count()   # ties in the timer heap (WebSockets do not compare)


def request_headers(message):
    """The head's fields as (lower-case name, value) bytes pairs, as fastcore.websocket reads them."""
    pairs = []
    for line in message.head.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        pairs.append((name.strip().lower(), value.strip(b" \t")))
    return pairs


def upgrade_requested(message):
    """A complete GET on a registered path: is it a WebSocket upgrade attempt?"""
    return upgrade_attempt(b"GET", "1.1" if message.version_minor == 1 else "1.0", request_headers(message))


def handshake(conn, message, route):
    """A complete upgrade attempt on a registered path (Connection.serve): the 101 and a WebSocket
    on conn.websocket (True), or the refusal written with a lingering close (False)."""
    worker = conn.worker
    headers = request_headers(message)
    has_body = message.chunked or message.content_length > 0
    status = handshake_status(headers, has_body)
    if status != VALID:
        close_after(conn, CLOSE_LINGERING)
    if status == 426:
        worker.count_response(426)
        body = b"Upgrade Required\n"
        conn.write(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n%s%s"
                   b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                   % (worker.formats.server_field, worker.date.line, len(body), body))
        if worker.access_log:
            conn.log_core_response(426, len(body))
        return False
    if status != VALID:
        response.append_error_response(conn, status, False)
        conn.log_error_response(status, False)
        return False
    lines = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Accept: ", accept_value(handshake_key(headers)), b"\r\n"]
    deflate = None
    if worker.limits.ws_per_message_deflate:
        agreed = negotiate_deflate(headers)
        if agreed is not None:
            deflate, value = agreed
            lines.append(b"Sec-WebSocket-Extensions: " + value + b"\r\n")
    lines += [worker.formats.server_field, worker.date.line, b"\r\n"]
    worker.count_response(101)
    if worker.access_log:
        conn.log_core_response(101, 0)
    conn.write(b"".join(lines))
    request = Request(message, conn.peer, False)
    request._proxies = worker.proxies
    request._body = b""
    conn.websocket = WebSocket(conn, route, request, deflate)
    return True


class WebSocket:
    """A native WebSocket connection (Server.add_websocket) on the pure engine: given to on_open,
    on_message and on_close. send() and close() may be called from any thread."""

    __slots__ = ("request", "state", "closed", "_route", "_conn", "_worker", "_lock", "_phase", "_outbox",
                 "_outbox_size", "_conn_unsent", "_close_request", "_noticed", "_events", "_scheduled",
                 "_waiting_messages", "_failed", "_reader", "_deflate", "_reading", "_paused", "_pong_due",
                 "_ping_timer", "_close_timer", "__weakref__")

    def __init__(self, conn, route, request, deflate):
        self.request = request              # the handshake's Request (empty body)
        self.state = {}                     # the app's own, per connection
        self.closed = False                 # close() was called, or the connection ended
        self._route = route
        self._conn = conn                   # the worker's only; None once handed back to HTTP
        self._worker = conn.home
        self._lock = threading.Lock()       # guards what other threads touch: below, to _noticed
        self._phase = OPEN
        self._outbox = collections.deque()  # (opcode, payload) queued by send() / close()
        self._outbox_size = 0
        self._conn_unsent = 0               # the connection's unsent output, as the worker last saw it
        self._close_request = None          # (code, reason) from close(), for the worker
        self._noticed = False               # on the worker's ws_notices
        self._events = collections.deque()  # (kind, a, b) for the callbacks, in order
        self._scheduled = False             # handed to where callbacks run (one runner at a time)
        self._waiting_messages = 0          # message events not yet taken (ws_max_queue)
        self._failed = False                # a callback raised: its messages are dropped
        self._reader = MessageReader(conn.worker.limits.ws_max_size, deflate)
        self._deflate = deflate
        self._reading = True                # the worker reads the socket (False: the queue is full)
        self._paused = False                # reading stopped for ws_max_queue (under the lock)
        self._pong_due = False              # a ping is out; any frame answers it
        self._ping_timer = None             # the heap entries in force (others are stale)
        self._close_timer = None
        self._events.append((EVENT_OPEN, None, None))

    # -- the app's side (any thread) ------------------------------------------------------------------

    def send(self, message):
        """Queue a message (str: text, bytes-like: binary). True, or False when more than 64 KiB
        of this connection's output waits unsent. ClientDisconnected once it is closing or closed."""
        if isinstance(message, str):
            opcode, payload = OP_TEXT, message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode, payload = OP_BINARY, bytes(message)
        else:
            raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
        with self._lock:
            if self.closed or self._phase != OPEN:
                raise ClientDisconnected("the WebSocket is closed")
            self._outbox.append((opcode, payload))
            self._outbox_size += len(payload)
            unsent = self._outbox_size + self._conn_unsent
            notify = not self._noticed
            self._noticed = True
        if notify:
            notify_worker(self._worker, self)
        return unsent <= SEND_HIGH_WATER

    def close(self, code=1000, reason=""):
        """Start the close handshake with `code` and `reason`; on_close follows with the client's
        answer. Closing a closed WebSocket does nothing."""
        code, reason = check_close({"type": "websocket.close", "code": code, "reason": reason})
        with self._lock:
            if self.closed or self._phase != OPEN:
                return
            self.closed = True
            self._close_request = (code, reason)
            notify = not self._noticed
            self._noticed = True
        if notify:
            notify_worker(self._worker, self)

    def __repr__(self):
        return f"<fastcore.pure.WebSocket {self._route.path!r}{' closed' if self.closed else ''}>"

    # -- callbacks (where native handlers run) --------------------------------------------------------

    def _post(self, kind, a=None, b=None):
        """Worker: an event for the callbacks; hand the WebSocket to a runner unless one has it."""
        with self._lock:
            self._events.append((kind, a, b))
            if kind == EVENT_MESSAGE:
                self._waiting_messages += 1
            dispatch = not self._scheduled
            self._scheduled = True
        if dispatch:
            dispatch_callbacks(self._worker, self)

    def run_callbacks(self, limit):
        """Call the callbacks for up to `limit` events, in order. True when events are left (the
        caller hands the WebSocket on again), False when it is no longer scheduled."""
        route = self._route
        for _ in range(limit):
            with self._lock:
                if not self._events:
                    self._scheduled = False
                    return False
                kind, a, b = self._events.popleft()
                resume = False
                if kind == EVENT_MESSAGE:
                    self._waiting_messages -= 1
                    if self._paused:             # the worker stopped reading: room again
                        self._paused = False
                        resume = not self._noticed
                        self._noticed = True
            if resume:
                notify_worker(self._worker, self)   # room in the queue: read again
            if kind == EVENT_MESSAGE and self._failed:
                continue
            try:
                if kind == EVENT_OPEN:
                    if route.on_open is not None:
                        route.on_open(self)
                elif kind == EVENT_MESSAGE:
                    route.on_message(self, a)
                elif route.on_close is not None:
                    route.on_close(self, a, b)
            except Exception:
                response.error_log.exception("WebSocket callback failed on %s", route.path)
                if kind != EVENT_CLOSED:
                    self._fail()
        with self._lock:
            if self._events:
                return True
            self._scheduled = False
            return False

    def _fail(self):
        """A callback raised: close with 1011, drop the messages still waiting."""
        with self._lock:
            self._failed = True
            if self._phase != OPEN:
                return
            self.closed = True
            self._close_request = (CLOSE_INTERNAL_ERROR, "")
            notify = not self._noticed
            self._noticed = True
        if notify:
            notify_worker(self._worker, self)

    # -- the worker's side ------------------------------------------------------------------------------

    def begin(self):
        """Worker: the 101 is in the output; the connection leaves HTTP for this WebSocket."""
        conn = self._conn
        transition(conn, TO_HANDLER)         # no HTTP timer; events come here (worker.py)
        with self._lock:                     # the open event waits in _events: schedule it
            self._scheduled = True
        dispatch_callbacks(self._worker, self)
        worker = self._worker
        worker.ws_open.add(self)
        leftover = conn.parser.inbuf         # frames the client sent right behind its request
        if leftover:
            self._reader.feed(bytes(leftover))
            leftover.clear()
        limits = worker.limits
        if limits.ws_ping_interval > 0:
            self._ping_timer = add_timer(worker, limits.ws_ping_interval, self, TIMER_PING)
        self._flush()
        if self._phase == OPEN and worker.stopping:
            self._start_close(CLOSE_GOING_AWAY, "")
        if self._phase != ENDED:
            self._process()

    def on_event(self, events):
        """Worker: the socket's epoll events."""
        if events & _OUT:
            self._flush()
        if self._phase != ENDED and events & (_IN | select.EPOLLHUP | select.EPOLLERR) and self._reading:
            self._read()

    def _read(self):
        conn = self._conn
        try:
            data = conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end(CLOSE_ABNORMAL, "", peer_gone=True)
            return
        conn.bytes_in += len(data)
        conn.worker.bytes_received += len(data)
        self._pong_due = False               # any frame answers our ping
        self._reader.feed(data)
        self._process()

    def _process(self):
        """Worker: take what the received bytes hold while the queue has room."""
        reader = self._reader
        max_queue = max(1, self._worker.limits.ws_max_queue)
        while self._phase != ENDED:
            if self._phase == OPEN:
                with self._lock:             # checked and set with run_callbacks' decrement
                    full = self._paused = self._waiting_messages >= max_queue
                if full:                     # the callbacks are behind: stop reading the socket
                    self._set_reading(False)
                    return
            try:
                event = reader.next()
            except ProtocolError as error:
                if self._phase == OPEN:
                    self._write_frame(OP_CLOSE, close_payload(error.code))
                self._end(error.code, "")
                return
            if event is None:
                return
            kind, value = event
            if kind == TEXT or kind == BINARY:
                if self._phase == OPEN:
                    self._post(EVENT_MESSAGE, value)
            elif kind == PING:
                if self._phase == OPEN:
                    self._write_frame(OP_PONG, value)
                    self._flush()
            elif kind == CLOSE:
                code, reason = value
                if self._phase == OPEN:      # answer with the client's code (none: none)
                    self._write_frame(OP_CLOSE, close_payload(None if code == 1005 else code))
                self._end(code, reason)
                return

    def pump(self):
        """Worker (a notice): send what send() queued, start a close() asked for, read again when
        the callbacks made room in the queue."""
        with self._lock:
            self._noticed = False
            queued = self._outbox
            self._outbox = collections.deque()
            self._outbox_size = 0
            close_request = self._close_request
            self._close_request = None
        if self._phase != OPEN:
            return
        for opcode, payload in queued:
            if self._deflate is not None and len(payload) >= 128:     # as the ASGI cycle (websocket.py)
                self._write_frame(opcode, compress(payload, self._deflate), True)
            else:
                self._write_frame(opcode, payload)
        if close_request is not None:
            self._start_close(*close_request)
        elif queued:
            self._flush()
        if self._phase == OPEN and not self._reading:
            with self._lock:
                paused = self._paused
            if not paused:                   # run_callbacks made room in the queue
                self._set_reading(True)
                self._process()

    def _write_frame(self, opcode, payload, rsv1=False):
        conn = self._conn
        conn.write(frame_head(opcode, len(payload), rsv1))
        if payload:
            conn.write(payload)

    def _flush(self):
        """Worker: send what the socket takes now; watch for writability while output is left."""
        conn = self._conn
        conn.send_available()
        if conn.peer_closed:
            self._end(CLOSE_ABNORMAL, "", peer_gone=True)
            return
        with self._lock:
            self._conn_unsent = conn.out_size
        self._set_interest()

    def _set_reading(self, reading):
        self._reading = reading
        self._set_interest()

    def _set_interest(self):
        conn = self._conn
        wanted = (_IN if self._reading else 0) | (_OUT if conn.out else 0)
        if wanted == conn.interest:
            return
        epoll = self._worker.epoll
        try:
            if not wanted:
                epoll.unregister(conn.fd)
            elif conn.interest:
                epoll.modify(conn.fd, wanted)
            else:
                epoll.register(conn.fd, wanted)
        except OSError:
            return
        conn.interest = wanted

    def on_timer(self, kind):
        """Worker: a ping is due, a ping went unanswered, or our close was not answered."""
        if kind == TIMER_PING:
            self._ping_timer = None
            if self._phase != OPEN:
                return
            limits = self._worker.limits
            self._write_frame(OP_PING, os.urandom(4))
            if limits.ws_ping_timeout > 0 and not self._pong_due:
                self._pong_due = True
                add_timer(self._worker, limits.ws_ping_timeout, self, TIMER_PONG)
            self._flush()
            if self._phase == OPEN:
                self._ping_timer = add_timer(self._worker, limits.ws_ping_interval, self, TIMER_PING)
        elif kind == TIMER_PONG:
            if self._pong_due and self._phase == OPEN:
                self._write_frame(OP_CLOSE, close_payload(CLOSE_INTERNAL_ERROR))
                self._end(CLOSE_INTERNAL_ERROR, "")
        elif self._phase == CLOSING:
            self._end(CLOSE_ABNORMAL, "")

    def _start_close(self, code, reason):
        """Worker: our close frame; the connection ends at the client's answer, or CLOSE_TIMEOUT later."""
        if self._phase != OPEN:
            return
        with self._lock:
            self._phase = CLOSING
            self.closed = True
        self._write_frame(OP_CLOSE, close_payload(code, reason))
        self._close_timer = add_timer(self._worker, CLOSE_TIMEOUT, self, TIMER_CLOSE)
        self._flush()
        if self._phase == CLOSING and not self._reading:
            self._set_reading(True)          # the answer must be read even with a full queue

    def going_away(self):
        """Worker: the server stops."""
        self._start_close(CLOSE_GOING_AWAY, "")

    def _end(self, code, reason, peer_gone=False):
        """Worker: the connection is over: the closed event (once), and the socket back to HTTP's
        state machine for the rest of the output and a lingering close."""
        if self._phase == ENDED:
            return
        with self._lock:
            self._phase = ENDED
            self.closed = True
            self._outbox.clear()
        self._worker.ws_open.discard(self)
        self._post(EVENT_CLOSED, code, reason)
        conn = self._conn
        self._conn = None
        conn.websocket = None
        if peer_gone:
            conn.peer_closed = True
            conn.out.clear()
            conn.out_size = 0
        close_after(conn, CLOSE_LINGERING)
        conn.parser.inbuf.clear()            # what was read of the connection is not HTTP
        conn.finish_request()
        transition(conn, ANSWERED)
        conn.flush()

    def abandon(self):
        """Worker, the stop's deadline: end now (1006), the output dropped; the caller closes the socket."""
        if self._phase == ENDED:
            return
        conn = self._conn
        with self._lock:
            self._phase = ENDED
            self.closed = True
            self._outbox.clear()
        self._worker.ws_open.discard(self)
        self._conn = None
        conn.websocket = None
        self._post(EVENT_CLOSED, CLOSE_ABNORMAL, "")


# -- the worker's lists ----------------------------------------------------------------------------------

def notify_worker(worker, ws):
    """Any thread: the worker is to pump `ws` (its wake-up, when the notice list was empty)."""
    with worker.inbox_lock:
        was_empty = not worker.ws_notices
        worker.ws_notices.append(ws)
    if was_empty:
        worker.wakeup.wake()


def drain_notices(worker):
    """Worker: pump every WebSocket that has a notice."""
    with worker.inbox_lock:
        if not worker.ws_notices:
            return
        noticed = list(worker.ws_notices)
        worker.ws_notices.clear()
    for ws in noticed:
        if ws._conn is not None:
            ws.pump()
        else:
            with ws._lock:
                ws._noticed = False


def dispatch_callbacks(worker, ws):
    """Hand `ws` to where its callbacks run: the worker's own list (inline) or a handler thread."""
    if worker.handler_threads > 0:
        worker.bridge.push_task(ws)
    else:
        worker.ws_ready.append(ws)


def run_inline_callbacks(worker):
    """Inline mode, at the end of a loop turn: each ready WebSocket's callbacks (at most
    python_batch each; the rest next turn), then what they sent."""
    ready = worker.ws_ready
    for _ in range(len(ready)):
        ws = ready.popleft()
        if ws.run_callbacks(worker.python_batch):
            ready.append(ws)
    drain_notices(worker)


def run_on_handler_thread(core, ws):
    """A handler thread took `ws` from the bridge."""
    if ws.run_callbacks(core.python_batch):
        core.bridge.push_task(ws)


def add_timer(worker, delay, ws, kind):
    entry = [worker.now + delay, next(_sequence), ws, kind]
    heapq.heappush(worker.ws_timers, entry)
    return entry


def timers_wait(worker):
    """Seconds until the first WebSocket timer, or -1 when none."""
    timers = worker.ws_timers
    return max(0.0, timers[0][0] - worker.now) if timers else -1


def expire_timers(worker):
    timers = worker.ws_timers
    while timers and timers[0][0] <= worker.now:
        _, _, ws, kind = heapq.heappop(timers)
        if ws._conn is not None:
            ws.on_timer(kind)


def going_away(worker):
    """Worker: the stop began: 1001 to every open WebSocket."""
    for ws in list(worker.ws_open):
        ws.going_away()

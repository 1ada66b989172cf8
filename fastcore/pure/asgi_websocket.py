"""fastcore.pure.asgi_websocket: a WebSocket's ASGI cycle on the pure engine (the twin of
pyext/asgi_websocket.pxi).

Theory of operation. A request reaches the loop as any ASGI request does (asgi.py: the bridge);
ASGIBridge.drain() sends an upgrade attempt (fastcore.websocket.upgrade_attempt) here instead of
to an HTTP Cycle. refuse_handshake() answers a malformed one (400, 426) without calling the app;
a valid one gets a WebSocketCycle, whose app sees a "websocket" scope.

From then until it is handed back, the connection belongs to the loop (as an HTTP cycle's does:
out of its worker's epoll set, no worker timer). After the app's websocket.accept the loop does
all of the connection's I/O itself, non-blocking: add_reader feeds received bytes to a
MessageReader (websocket.py), whose messages wait in `messages` for receive() (at most
ws_max_queue: while it is full the reader is removed, so the socket is not read and the client's
sends block in TCP); pings are answered at once; server frames go into the connection's output
and out with send_available(), add_writer taking the rest; send() waits while SEND_HIGH_WATER
bytes or more are unsent (backpressure). Server pings run on loop timers (ws_ping_interval, with
ws_ping_timeout for any frame to come back).

Endings. The connection ends (end()) on: the client's close (answered, echoing its code), our own
close answered by the client (or CLOSE_TIMEOUT without an answer: 1006), a protocol error (the
close with its code goes out), a ping timeout (1011), EOF or a reset (1006), the app's end, the
stop (1001, sent at once by going_away()), or a stop's deadline (cancelled: cut). end() records
the disconnect the app's receive() gets, exactly once (after the messages that came before it),
stops watching the socket, and hands the connection back to its worker with CLOSE_LINGERING: the
worker sends what is left of the output (the close frame), half-closes, and closes at the client's
FIN (or its LINGER timer), so the close frame is not destroyed by an RST. The task waits for the
end before it finishes, so asgi_in_flight() counts open WebSockets and a graceful stop waits for
them.

Before accept: websocket.close is a 403; the denial extension's websocket.http.response.* messages
go to an HTTP Cycle (asgi.py) built on the same connection; the app raising or returning without
answering is a 500 (logged).
"""
import asyncio
import collections
import os
import socket

from ..errors import ClientDisconnected
from ..websocket import (CLOSE_ABNORMAL, CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, accept_value,
                         check_accept, check_close, check_send, handshake_key)
from . import response
from .bridge import inbox_push
from .protocol import ANSWERED, CLOSE_LINGERING, close_after, transition
from .websocket import (BINARY, CLOSE, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, PING, TEXT, MessageReader,
                        ProtocolError, close_payload, compress, frame_head, negotiate_deflate)

SEND_HIGH_WATER = 65536         # unsent output bytes from which send() waits
CLOSE_TIMEOUT = 5.0             # how long our close waits for the client's
READ_SIZE = 65536

CONNECTING, OPEN, CLOSING, ENDED = range(4)

_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_CONNECT = {"type": "websocket.connect"}
_DENIAL_TYPES = {"websocket.http.response.start": "http.response.start",
                 "websocket.http.response.body": "http.response.body"}


def websocket_scope(scope, offered):
    """An http scope built by asgi.build_scope, turned into the websocket scope of the contract."""
    del scope["method"]
    scope["type"] = "websocket"
    scope["http_version"] = "1.1"
    scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
    scope["subprotocols"] = offered
    scope["extensions"] = {"websocket.http.response": {}}
    return scope


def hand_back(conn, home):
    """Give the connection back to its worker, to send what is left and close (lingering)."""
    close_after(conn, CLOSE_LINGERING)
    conn.parser.inbuf.clear()               # what the loop read of the connection is not HTTP
    conn.finish_request()
    transition(conn, ANSWERED)
    conn.worker = home
    inbox_push(conn)


def refuse_handshake(bridge, conn, status):
    """A malformed upgrade attempt: 400, or 426 naming the version we speak; then close."""
    context = bridge.context
    context.date.refresh()
    close_after(conn, CLOSE_LINGERING)
    if status == 426:
        context.count_response(426)
        body = b"Upgrade Required\n"
        conn.write(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n%s%s"
                   b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                   % (context.formats.server_field, context.date.line, len(body), body))
    else:
        response.append_error_response(conn, status, False)
    hand_back(conn, conn.home)


class WebSocketCycle:
    """One WebSocket's ASGI cycle."""

    def __init__(self, bridge, conn, scope, denial_cycle_class):
        self.bridge = bridge
        self.conn = conn
        self.home = conn.home
        self.scope = scope
        self.options = bridge.websocket_options
        self.loop = bridge.asgi.loop
        self.make_denial = denial_cycle_class
        self.headers = scope["headers"]
        self.task = None
        self.state = CONNECTING
        self.connect_given = False
        self.denial = None                  # the HTTP Cycle of a denial response
        self.reader = None                  # MessageReader once accepted
        self.deflate = None                 # DeflateParams once agreed
        self.messages = collections.deque()
        self.arrived = None                 # a future receive() waits on
        self.drained = None                 # a future send() waits on (backpressure)
        self.disconnect = None              # (code, reason) once the connection ended
        self.disconnect_given = False
        self.reading = False
        self.writing = False
        self.ping_handle = None
        self.pong_deadline = None
        self.close_deadline = None
        self.ended = asyncio.Event()

    # -- the task ----------------------------------------------------------------------------------

    async def run(self):
        asgi = self.bridge.asgi
        try:
            try:
                await asgi.app(self.scope, self.receive, self.send)
            except asyncio.CancelledError:
                self.cut()
            except BaseException as error:
                if not isinstance(error, ClientDisconnected):
                    asgi.log_failure(self.scope, error)
                self.app_failed()
                if isinstance(error, (KeyboardInterrupt, SystemExit)):
                    raise
            else:
                self.app_returned()
            if self.state != ENDED:
                await self.ended.wait()     # our close waits for the client's (CLOSE_TIMEOUT at most)
        except asyncio.CancelledError:
            self.cut()
        finally:
            self.bridge.cycles.discard(self)
            self.bridge.websockets.discard(self)

    def app_failed(self):
        if self.state == CONNECTING:
            if self.denial is not None:
                self.denial.fail()
                self.state = ENDED
            else:
                self.refuse(500)
        elif self.state == OPEN:
            self.start_close(CLOSE_INTERNAL_ERROR, "")

    def app_returned(self):
        if self.state == CONNECTING:
            if self.denial is not None:
                if not self.denial.complete:
                    self.bridge.asgi.log_failure(self.scope, RuntimeError(
                        "the ASGI app returned without completing its denial response"))
                    self.denial.fail()
                self.state = ENDED
            else:
                self.bridge.asgi.log_failure(self.scope, RuntimeError(
                    "the ASGI app returned without accepting or closing the WebSocket"))
                self.refuse(500)
        elif self.state == OPEN:
            self.start_close(CLOSE_NORMAL, "")

    def cut(self):
        """Cancelled (a stop's deadline): end now, whatever the handshake's state."""
        if self.state == CONNECTING and self.denial is None:
            self.refuse(503)
        elif self.state == CONNECTING:
            self.denial.fail(cut=True)
            self.state = ENDED
        elif self.state != ENDED:
            self.end(CLOSE_ABNORMAL, "")

    def refuse(self, status):
        """Before accept: an error status instead of the 101, then close."""
        self.state = ENDED
        self.disconnect = (CLOSE_ABNORMAL, "")
        context = self.bridge.context
        context.date.refresh()
        close_after(self.conn, CLOSE_LINGERING)
        if status == 403:
            context.count_response(403)
            self.conn.write(b"HTTP/1.1 403 Forbidden\r\n%s%sContent-Length: 0\r\nConnection: close\r\n\r\n"
                            % (context.formats.server_field, context.date.line))
        else:
            response.append_error_response(self.conn, status, False)
        self.ended.set()
        hand_back(self.conn, self.home)

    # -- receive -----------------------------------------------------------------------------------

    async def receive(self):
        if not self.connect_given:
            self.connect_given = True
            return _CONNECT
        if self.disconnect_given:
            raise ClientDisconnected("the WebSocket is closed: websocket.disconnect was given")
        while not self.messages and self.disconnect is None:
            self.arrived = self.loop.create_future()
            try:
                await self.arrived
            finally:
                self.arrived = None
        if self.messages:
            message = self.messages.popleft()
            if not self.reading and self.state in (OPEN, CLOSING) and len(self.messages) < self.options.max_queue:
                self.resume_reading()
            return message
        self.disconnect_given = True
        code, reason = self.disconnect
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    def wake_receiver(self):
        arrived = self.arrived
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    # -- send --------------------------------------------------------------------------------------

    async def send(self, message):
        kind = message.get("type")
        state = self.state
        if state == CONNECTING:
            if self.denial is not None or kind in _DENIAL_TYPES:
                await self.send_denial(kind, message)
            elif kind == "websocket.accept":
                self.accept(message)
            elif kind == "websocket.close":
                check_close(message)
                self.refuse(403)
            else:
                raise RuntimeError(f"ASGI message {kind!r} sent before websocket.accept")
            return
        if kind == "websocket.send":
            data = check_send(message)
            if state != OPEN:
                raise ClientDisconnected("the WebSocket is closing or closed")
            if isinstance(data, str):
                self.write_message(OP_TEXT, data.encode("utf-8"))
            else:
                self.write_message(OP_BINARY, data)
            await self.backpressure()
        elif kind == "websocket.close":
            code, reason = check_close(message)
            if state != OPEN:
                raise ClientDisconnected("the WebSocket is closing or closed")
            self.start_close(code, reason)
        elif kind == "websocket.accept" or kind in _DENIAL_TYPES:
            if state == ENDED and self.denial is not None:
                raise RuntimeError(f"ASGI message {kind!r} sent after the denial response was complete")
            raise RuntimeError(f"ASGI message {kind!r} sent after websocket.accept")
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} in a WebSocket cycle")

    async def send_denial(self, kind, message):
        """The denial extension: an HTTP response instead of the 101, then close."""
        if kind not in _DENIAL_TYPES:
            raise RuntimeError(f"ASGI message {kind!r} sent during a denial response")
        if self.denial is None:
            if kind != "websocket.http.response.start":
                raise RuntimeError(f"{kind!r} sent before websocket.http.response.start")
            close_after(self.conn, CLOSE_LINGERING)         # the connection ends with the response
            self.denial = self.make_denial(self.bridge, self.conn, self.scope)
        translated = dict(message)
        translated["type"] = _DENIAL_TYPES[kind]
        await self.denial.send(translated)
        if self.denial.complete:
            self.state = ENDED
            self.disconnect = (CLOSE_ABNORMAL, "")
            self.ended.set()

    def accept(self, message):
        subprotocol, extra = check_accept(message, self.scope["subprotocols"])
        conn = self.conn
        context = self.bridge.context
        options = self.options
        key = handshake_key(self.headers)
        lines = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: ", accept_value(key), b"\r\n"]
        if subprotocol is not None:
            lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n")
        if options.per_message_deflate:
            agreed = negotiate_deflate(self.headers)
            if agreed is not None:
                self.deflate, value = agreed
                lines.append(b"Sec-WebSocket-Extensions: " + value + b"\r\n")
        for name, value in extra:
            lines.append(name + b": " + value + b"\r\n")
        context.date.refresh()
        lines.append(context.formats.server_field)
        lines.append(context.date.line)
        lines.append(b"\r\n")
        context.count_response(101)
        conn.write(b"".join(lines))
        self.state = OPEN
        self.reader = MessageReader(options.max_size, self.deflate)
        leftover = conn.parser.inbuf        # frames the client sent right behind its request
        if leftover:
            self.reader.feed(bytes(leftover))
            leftover.clear()
        self.bridge.websockets.add(self)
        self.flush()
        if self.state != OPEN:
            return
        self.resume_reading()
        if options.ping_interval > 0:
            self.ping_handle = self.loop.call_later(options.ping_interval, self.send_ping)
        if self.bridge.going_away:
            self.start_close(CLOSE_GOING_AWAY, "")
        elif self.reader.buffer:
            self.process()

    # -- output ------------------------------------------------------------------------------------

    def write_frame(self, opcode, payload, rsv1=False):
        conn = self.conn
        conn.write(frame_head(opcode, len(payload), rsv1))
        if payload:
            conn.write(payload)

    def write_message(self, opcode, data):
        if self.deflate is not None:
            self.write_frame(opcode, compress(data, self.deflate), True)
        else:
            self.write_frame(opcode, data)
        self.flush()

    def flush(self):
        """Send what the socket takes now; watch for writability while output is left."""
        conn = self.conn
        conn.send_available()
        if conn.peer_closed:
            self.end(CLOSE_ABNORMAL, "", peer_gone=True)
            return
        if conn.out:
            if not self.writing:
                self.writing = True
                self.loop.add_writer(conn.fd, self.on_writable)
        elif self.writing:
            self.writing = False
            self.loop.remove_writer(conn.fd)
        if conn.out_size < SEND_HIGH_WATER:
            drained = self.drained
            if drained is not None and not drained.done():
                drained.set_result(None)

    def on_writable(self):
        if self.state != ENDED:
            self.flush()

    async def backpressure(self):
        """send(): return while less than SEND_HIGH_WATER bytes are unsent, else wait for the
        client to take them."""
        while self.conn.out_size >= SEND_HIGH_WATER:
            if self.state == ENDED:
                raise ClientDisconnected("the client went away")
            self.drained = self.loop.create_future()
            try:
                await self.drained
            finally:
                self.drained = None
        if self.state == ENDED and self.disconnect[0] == CLOSE_ABNORMAL:
            raise ClientDisconnected("the client went away")

    # -- input -------------------------------------------------------------------------------------

    def resume_reading(self):
        if not self.reading:
            self.reading = True
            self.loop.add_reader(self.conn.fd, self.on_readable)
            if self.reader.buffer:
                self.loop.call_soon(self.process)

    def pause_reading(self):
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.conn.fd)

    def on_readable(self):
        if self.state == ENDED:
            return
        try:
            data = self.conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.end(CLOSE_ABNORMAL, "", peer_gone=True)
            return
        self.bridge.context.bytes_received += len(data)
        if self.pong_deadline is not None:          # any frame answers our ping
            self.pong_deadline.cancel()
            self.pong_deadline = None
        self.reader.feed(data)
        self.process()

    def process(self):
        """Take what the received bytes hold, while the queue has room."""
        reader = self.reader
        max_queue = self.options.max_queue
        messages = self.messages
        while self.state in (OPEN, CLOSING):
            if self.state == OPEN and len(messages) >= max_queue:
                self.pause_reading()                # the app is behind: stop reading the socket
                return
            try:
                event = reader.next()
            except ProtocolError as error:
                self.protocol_error(error.code)
                return
            if event is None:
                return
            kind, value = event
            if kind == TEXT or kind == BINARY:
                if self.state == OPEN:
                    messages.append({"type": "websocket.receive", "text": value} if kind == TEXT
                                    else {"type": "websocket.receive", "bytes": value})
                    self.wake_receiver()
            elif kind == PING:
                if self.state == OPEN:
                    self.write_frame(OP_PONG, value)
                    self.flush()
            elif kind == CLOSE:
                code, reason = value
                if self.state == OPEN:              # answer with the client's code (none: none)
                    self.write_frame(OP_CLOSE, close_payload(None if code == 1005 else code))
                self.end(code, reason)
                return
            # PONG: nothing to do (any frame already cleared the ping's deadline)

    def protocol_error(self, code):
        if self.state == OPEN:
            self.write_frame(OP_CLOSE, close_payload(code))
        self.end(code, "")

    # -- pings, closing, the end -------------------------------------------------------------------

    def send_ping(self):
        self.ping_handle = None
        if self.state != OPEN:
            return
        options = self.options
        self.write_frame(OP_PING, os.urandom(4))
        if options.ping_timeout > 0 and self.pong_deadline is None:
            self.pong_deadline = self.loop.call_later(options.ping_timeout, self.ping_timed_out)
        self.flush()
        if self.state == OPEN:
            self.ping_handle = self.loop.call_later(options.ping_interval, self.send_ping)

    def ping_timed_out(self):
        self.pong_deadline = None
        if self.state == OPEN:
            self.write_frame(OP_CLOSE, close_payload(CLOSE_INTERNAL_ERROR))
            self.end(CLOSE_INTERNAL_ERROR, "")

    def start_close(self, code, reason):
        """Our close frame; the connection ends at the client's answer, or CLOSE_TIMEOUT later."""
        if self.state != OPEN:
            return
        self.state = CLOSING
        self.write_frame(OP_CLOSE, close_payload(code, reason))
        self.close_deadline = self.loop.call_later(CLOSE_TIMEOUT, self.end, CLOSE_ABNORMAL, "")
        self.flush()
        if self.state == CLOSING and not self.reading:
            self.resume_reading()                   # the answer must be read even with a full queue

    def going_away(self):
        """The server stops (ASGIBridge.going_away, on the loop)."""
        self.start_close(CLOSE_GOING_AWAY, "")

    def end(self, code, reason, peer_gone=False):
        """The connection is over: record the disconnect, stop watching, hand the socket back."""
        if self.state == ENDED:
            return
        self.state = ENDED
        self.disconnect = (code, reason)
        for handle in (self.ping_handle, self.pong_deadline, self.close_deadline):
            if handle is not None:
                handle.cancel()
        self.ping_handle = self.pong_deadline = self.close_deadline = None
        conn = self.conn
        self.pause_reading()
        if self.writing:
            self.writing = False
            self.loop.remove_writer(conn.fd)
        self.bridge.websockets.discard(self)
        self.wake_receiver()
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        if peer_gone:
            conn.peer_closed = True
            conn.out.clear()
            conn.out_size = 0
        self.ended.set()
        hand_back(conn, self.home)

"""WebSockets (issue 15, /work/notes/WS_CONTRACT.md) over real sockets, on both engines (the
`asgi_server` fixture): the handshake and its refusals, accept / 403 / denial / 500, messages both
ways, the close handshake and its codes, protocol errors, pings, permessage-deflate, backpressure
both ways, the stop, and the app's mistakes. The client is the `websockets` package, or a raw
socket (with the masked-frame builder below) for what a well-behaved client never sends."""
import asyncio
import base64
import contextvars
import os
import socket
import struct
import threading
import time
import zlib

import pytest

import fastcore.errors
from conftest import wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

TIMEOUT = 5.0
ASGI_LIFESPAN = "off"
KEY = base64.b64encode(b"0123456789abcdef")

pytestmark = pytest.mark.hang_timeout(60)


# -- the apps --------------------------------------------------------------------------------------

class Seen:
    """What the app saw, for the test thread to wait on."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def add(self, *event):
        with self.lock:
            self.events.append(event)

    def wait_for(self, kind, timeout=TIMEOUT):
        assert wait_until(lambda: any(event[0] == kind for event in self.events), timeout), self.events
        return [event for event in self.events if event[0] == kind]


def echo_app(seen, accept=None):
    """Accepts (with `accept`'s fields), echoes every message, records the scope and the disconnect,
    then checks that receive() and send() after the disconnect raise ClientDisconnected."""

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        seen.add("scope", scope)
        assert (await receive()) == {"type": "websocket.connect"}
        await send({"type": "websocket.accept", **(accept or {})})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen.add("disconnect", message["code"], message["reason"])
                break
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
        for call in (receive, lambda: send({"type": "websocket.send", "text": "late"})):
            try:
                await call()
            except fastcore.errors.ClientDisconnected:
                seen.add("refused after disconnect")
    return app


def url(srv, path="/"):
    return f"ws://127.0.0.1:{srv.port}{path}"


# -- a raw client ------------------------------------------------------------------------------------

def frame(opcode, payload=b"", fin=True, rsv1=False, rsv2=False, masked=True):
    """A client frame (masked unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


class RawClient:
    """A socket that did the handshake by hand; reads server frames."""

    def __init__(self, port, extra=b"", key=KEY, timeout=TIMEOUT, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET /raw HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n" + extra + b"\r\n")
        self.buffer = b""
        head = self.read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.head = head

    def read_until(self, marker):
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def read_exact(self, count):
        while len(self.buffer) < count:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_frame(self):
        """(opcode, payload, rsv1) of the next server frame; server frames are never masked."""
        first, second = self.read_exact(2)
        assert not second & 0x80, "a server frame was masked"
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.read_exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.read_exact(8))[0]
        return first & 0x0F, self.read_exact(length), bool(first & 0x40)

    def read_close(self):
        """The close frame's code (None when empty), skipping data and pings before it."""
        while True:
            opcode, payload, _ = self.read_frame()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if payload else None

    def closed_by_server(self):
        """True when the server closed TCP (EOF or reset) with nothing more sent."""
        try:
            return self.sock.recv(65536) == b"" and not self.buffer
        except ConnectionResetError:
            return True

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()


def raw_answer(port, request):
    """A whole HTTP exchange on a raw socket: (status, head, body) until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


# -- handshake ---------------------------------------------------------------------------------------

def test_handshake_gives_the_scope_and_the_chosen_subprotocol(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen, {"subprotocol": "b", "headers": [(b"x-extra", b"1")]}))
    with ws_connect(url(srv, "/chat/r%C3%A9?x=1"), subprotocols=["a", "b"], open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol == "b"
        assert ws.response.status_code == 101
        assert ws.response.headers["x-extra"] == "1"
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"
    (_, scope), = seen.wait_for("scope")
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat/ré" and scope["raw_path"] == b"/chat/r%C3%A9"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ("127.0.0.1", srv.port)
    assert "method" not in scope
    assert (b"upgrade", b"websocket") in scope["headers"]
    assert seen.wait_for("disconnect") == [("disconnect", 1000, "")]


UPGRADE = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"


@pytest.mark.parametrize("request_bytes, status", [
    (UPGRADE + b"Connection: keep-alive\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n", 400),
    (UPGRADE + b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n", 426),
    (UPGRADE + b"Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n", 426),
    (UPGRADE + b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    (UPGRADE + b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n", 400),
    (UPGRADE + b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY
     + b"\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n", 400),
    (UPGRADE + b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY
     + b"\r\nContent-Length: 3\r\n\r\nabc", 400),
], ids=["no-connection-upgrade", "no-version", "version-8", "no-key", "short-key", "two-keys", "body"])
def test_malformed_handshakes_are_refused_before_the_app(asgi_server, request_bytes, status):
    seen = Seen()
    srv = asgi_server(echo_app(seen))
    got, head, _ = raw_answer(srv.port, request_bytes)
    assert got == status
    if status == 426:
        assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
        assert b"\r\nSec-WebSocket-Version: 13" in head
    assert not seen.events


def test_not_an_upgrade_is_plain_http(asgi_server):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["type"].encode()})
    srv = asgi_server(app)
    # HTTP/1.0, or POST, with Upgrade: websocket: not an attempt.
    for line in (b"GET / HTTP/1.0\r\n", b"POST / HTTP/1.1\r\nContent-Length: 0\r\n"):
        status, _, body = raw_answer(srv.port, line + b"Host: t\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n"
                                     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n")
        assert (status, body) == (200, b"http")


async def _close_before_accept(scope, receive, send):
    await receive()
    await send({"type": "websocket.close"})


async def _deny(scope, receive, send):
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"token")]})
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def _raise_before_accept(scope, receive, send):
    await receive()
    raise ValueError("boom before accept")


async def _return_before_accept(scope, receive, send):
    await receive()


async def _wrong_subprotocol(scope, receive, send):
    await receive()
    try:
        await send({"type": "websocket.accept", "subprotocol": "never-offered"})
    except RuntimeError:
        await send({"type": "websocket.close"})


@pytest.mark.parametrize("app, status, body, logged", [
    (_close_before_accept, 403, b"", False),
    (_wrong_subprotocol, 403, b"", False),
    (_deny, 401, b"no entry", False),
    (_raise_before_accept, 500, None, "boom before accept"),
    (_return_before_accept, 500, None, "returned without accepting"),
], ids=["close-403", "subprotocol-not-offered", "denial-response", "raise-500", "return-500"])
def test_answers_before_accept(asgi_server, error_log, app, status, body, logged):
    srv = asgi_server(app)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url(srv), subprotocols=["a"], open_timeout=TIMEOUT)
    response = refused.value.response
    assert response.status_code == status
    if body is not None:
        assert response.body == body
    if status == 401:
        assert response.headers["x-why"] == "token"
    if logged:
        assert wait_until(lambda: logged in error_log.text(), TIMEOUT), error_log.text()
        error_log.records.clear()


@pytest.mark.parametrize("app, line", [
    (None, '"GET /chat?room=1 HTTP/1.1" 101 -'),
    (_close_before_accept, '"GET /chat?room=1 HTTP/1.1" 403 -'),
    (_deny, '"GET /chat?room=1 HTTP/1.1" 401 8'),
], ids=["accepted", "closed-before-accept", "denial-response"])
def test_the_access_log_has_a_line_for_each_handshake(asgi_server, access_lines, app, line):
    seen = Seen()
    srv = asgi_server(app or echo_app(seen), access_log=True)
    if app is None:
        with ws_connect(url(srv, "/chat?room=1"), open_timeout=TIMEOUT) as ws:
            assert wait_until(lambda: access_lines, TIMEOUT)    # at the accept, not at the end
            ws.send("hi")
            assert ws.recv(TIMEOUT) == "hi"
    else:
        with pytest.raises(InvalidStatus):
            ws_connect(url(srv, "/chat?room=1"), open_timeout=TIMEOUT)
        assert wait_until(lambda: access_lines, TIMEOUT)
    assert len(access_lines) == 1 and line in access_lines[0], access_lines
    assert access_lines[0].startswith("127.0.0.1 - - [")


# -- messages ----------------------------------------------------------------------------------------

def test_echo_text_and_bytes_small_and_large(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen))
    big_text = "é" * (1 << 19)                      # 1 MiB of UTF-8
    big_bytes = os.urandom(1 << 20)
    with ws_connect(url(srv), max_size=None, open_timeout=TIMEOUT) as ws:
        for message in ("", "hello", b"\x00\x01", big_text, big_bytes):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
    assert seen.wait_for("disconnect") == [("disconnect", 1000, "")]


def test_fragmented_message_with_a_ping_inside(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen))
    client = RawClient(srv.port)
    assert client.status == 101
    text = "fragmented ✓".encode()
    client.send(frame(0x1, text[:3], fin=False) + frame(0x9, b"p1") + frame(0x0, text[3:7], fin=False)
                + frame(0x0, text[7:]))
    assert client.read_frame() == (0xA, b"p1", False)          # the pong comes first, same payload
    assert client.read_frame() == (0x1, text, False)
    client.send(frame(0xA, b"unsolicited") + frame(0x2, b"after"))  # a pong nobody asked for: ignored
    assert client.read_frame() == (0x2, b"after", False)
    client.send(frame(0x8))                                     # an empty close: answered empty
    assert client.read_close() is None
    assert client.closed_by_server()
    client.close()
    assert seen.wait_for("disconnect") == [("disconnect", 1005, "")]


def test_client_close_is_echoed_and_the_app_hears_it_once(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen))
    with ws_connect(url(srv), open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.close(4000, "bye")
        assert ws.close_code == 4000                            # what the server answered
    assert seen.wait_for("disconnect") == [("disconnect", 4000, "bye")]
    assert len(seen.wait_for("refused after disconnect")) == 2  # receive() and send() after it


def test_abrupt_disconnect_is_1006(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen))
    client = RawClient(srv.port)
    client.send(frame(0x1, b"x"))
    assert client.read_frame() == (0x1, b"x", False)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()                                              # RST, no close frame
    assert seen.wait_for("disconnect") == [("disconnect", 1006, "")]
    assert len(seen.wait_for("refused after disconnect")) == 2


@pytest.mark.parametrize("sent, code", [
    (frame(0x1, b"\xff\xfe"), 1007),
    (frame(0x1, b"ok", fin=False) + frame(0x0, b"\xc3"), 1007),        # a sequence left open
    (frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1007),             # close reason not UTF-8
    (frame(0x2, b"x" * 2000), 1009),
    (frame(0x1, b"x", masked=False), 1002),
    (frame(0x3, b"x"), 1002),                                          # reserved opcode
    (frame(0x1, b"x", rsv2=True), 1002),
    (frame(0x1, b"x", rsv1=True), 1002),                               # RSV1 without deflate
    (frame(0x0, b"x"), 1002),                                          # continuation without a start
    (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),            # new message inside one
    (frame(0x9, b"x", fin=False), 1002),                               # fragmented control frame
    (frame(0x9, b"x" * 126), 1002),                                    # control frame over 125
    (frame(0x8, b"\x03"), 1002),                                       # close payload of 1 byte
    (frame(0x8, struct.pack("!H", 1005)), 1002),                       # a code that may not be sent
    (frame(0x8, struct.pack("!H", 2000)), 1002),
], ids=["utf8", "utf8-open", "close-reason-utf8", "too-big", "unmasked", "opcode", "rsv2", "rsv1",
        "orphan-continuation", "nested-start", "fragmented-ping", "long-ping", "close-1-byte",
        "close-1005", "close-2000"])
def test_protocol_errors_close_with_their_code(asgi_server, sent, code):
    seen = Seen()
    srv = asgi_server(echo_app(seen), ws_max_size=1024)
    client = RawClient(srv.port)
    client.send(sent)
    assert client.read_close() == code
    assert client.closed_by_server()
    client.close()
    assert seen.wait_for("disconnect") == [("disconnect", code, "")]


# -- deflate -----------------------------------------------------------------------------------------

def test_deflate_is_negotiated_and_round_trips(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen))
    text = "compress me " * 20000                               # 240 kB that deflate shrinks a lot
    with ws_connect(url(srv), open_timeout=TIMEOUT) as ws:      # websockets offers deflate by default
        extensions = ws.response.headers["Sec-WebSocket-Extensions"]
        assert extensions.startswith("permessage-deflate") and "server_no_context_takeover" in extensions
        for _ in range(3):                                      # the client keeps its context across messages
            ws.send(text)
            assert ws.recv(timeout=TIMEOUT) == text
    stats = srv.stats()
    assert stats["bytes_received"] < len(text) and stats["bytes_sent"] < len(text)


def test_deflate_refused_when_off_or_unknown(asgi_server):
    srv = asgi_server(echo_app(Seen()), ws_per_message_deflate=False)
    with ws_connect(url(srv), open_timeout=TIMEOUT) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
    srv2 = asgi_server(echo_app(Seen()))
    client = RawClient(srv2.port, extra=b"Sec-WebSocket-Extensions: permessage-deflate; unknown_param, "
                                        b"permessage-deflate; client_max_window_bits\r\n")
    assert b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=12" \
        in client.head
    client.close()


def test_deflate_bomb_is_refused_with_1009(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen), ws_max_size=1 << 20)
    client = RawClient(srv.port, extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert b"permessage-deflate" in client.head
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\0" * (16 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 20_000
    client.send(frame(0x2, bomb[:-4], rsv1=True))
    assert client.read_close() == 1009
    client.close()
    assert seen.wait_for("disconnect") == [("disconnect", 1009, "")]


# -- backpressure ------------------------------------------------------------------------------------

def test_send_waits_for_a_client_that_does_not_read(asgi_server):
    seen = Seen()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < (64 << 20):
                await asyncio.wait_for(send({"type": "websocket.send", "bytes": chunk}), 0.5)
                sent += len(chunk)
        except asyncio.TimeoutError:
            seen.add("blocked", sent)
        await receive()

    srv = asgi_server(app, ws_ping_interval=0)
    client = RawClient(srv.port, rcvbuf=65536)
    (_, sent), = seen.wait_for("blocked", 20)
    assert sent < (16 << 20), f"the app's send() completed {sent} bytes for a client that reads nothing"
    client.close()


def test_a_full_queue_stops_the_reading(asgi_server):
    release = threading.Event()
    seen = Seen()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.to_thread(release.wait, TIMEOUT * 2)      # never receives until released
        count = 0
        while (await receive())["type"] == "websocket.receive":
            count += 1
        seen.add("received", count)

    srv = asgi_server(app, ws_max_queue=2, ws_ping_interval=0)
    client = RawClient(srv.port)
    client.sock.setblocking(False)
    message = frame(0x2, b"y" * 65536)
    sent = 0
    deadline = time.monotonic() + TIMEOUT
    blocked = False
    while time.monotonic() < deadline and sent < (256 << 20):
        try:
            sent += client.sock.send(message)
        except BlockingIOError:
            import select
            if not select.select([], [client.sock], [], 0.5)[1]:
                blocked = True                                  # the server stopped taking bytes
                break
    release.set()
    assert blocked, f"the server read {sent} bytes for an app that receives nothing"
    assert sent < (64 << 20)
    client.close()
    seen.wait_for("received")


def test_server_ping_timeout_closes_with_1011(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen), ws_ping_interval=0.2, ws_ping_timeout=0.2)
    client = RawClient(srv.port)                                # reads, never answers pings
    opcode, payload, _ = client.read_frame()
    assert opcode == 0x9
    assert client.read_close() == 1011
    assert client.closed_by_server()
    client.close()
    assert seen.wait_for("disconnect") == [("disconnect", 1011, "")]


def test_pongs_keep_the_connection(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen), ws_ping_interval=0.05, ws_ping_timeout=0.15)
    client = RawClient(srv.port)
    for _ in range(5):                                          # five pings, each answered: still open
        opcode, payload, _ = client.read_frame()
        assert opcode == 0x9
        client.send(frame(0xA, payload))
    client.send(frame(0x1, b"still here"))
    while (frame_read := client.read_frame())[0] == 0x9:
        client.send(frame(0xA, frame_read[1]))
    assert frame_read == (0x1, b"still here", False)
    client.close()
    assert seen.wait_for("disconnect") == [("disconnect", 1006, "")]


# -- the app's side ------------------------------------------------------------------------------------

def test_app_close_with_code_and_reason(asgi_server):
    seen = Seen()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except fastcore.errors.ClientDisconnected:
            seen.add("send refused")
        message = await receive()
        seen.add("disconnect", message["code"], message["reason"])

    srv = asgi_server(app)
    with ws_connect(url(srv), open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "done")
    assert seen.wait_for("disconnect") == [("disconnect", 4001, "done")]
    assert seen.wait_for("send refused")


@pytest.mark.parametrize("ending, code", [("return", 1000), ("raise", 1011)])
def test_app_ending_after_accept(asgi_server, error_log, ending, code):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        if ending == "raise":
            raise ValueError("boom after accept")

    srv = asgi_server(app)
    client = RawClient(srv.port)
    assert client.read_close() == code
    client.send(frame(0x8, struct.pack("!H", code)))
    assert client.closed_by_server()
    client.close()
    if ending == "raise":
        assert wait_until(lambda: "boom after accept" in error_log.text(), TIMEOUT)
        error_log.records.clear()


def test_app_send_mistakes_are_runtime_errors(asgi_server):
    seen = Seen()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        for bad in ({"type": "websocket.send"}, {"type": "websocket.send", "text": "a", "bytes": b"b"},
                    {"type": "websocket.send", "text": b"not str"}, {"type": "websocket.accept"},
                    {"type": "websocket.close", "code": 1005}, {"type": "websocket.close", "reason": "x" * 124}):
            try:
                await send(bad)
            except RuntimeError:
                seen.add("refused")
        await send({"type": "websocket.close"})

    srv = asgi_server(app)
    client = RawClient(srv.port)
    assert client.read_close() == 1000
    client.close()
    assert len(seen.wait_for("refused")) == 6


def test_stop_closes_open_websockets_with_1001(asgi_server):
    seen = Seen()
    srv = asgi_server(echo_app(seen))
    with ws_connect(url(srv), open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("up")
        assert ws.recv(timeout=TIMEOUT) == "up"
        started = time.monotonic()
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 1001
        stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert time.monotonic() - started < 3.0
    assert seen.wait_for("disconnect") == [("disconnect", 1001, "")]


def test_contextvars_do_not_leak_between_connections(asgi_server):
    variable = contextvars.ContextVar("ws_test_variable", default="unset")

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        before = variable.get()
        variable.set(scope["path"])
        await send({"type": "websocket.send", "text": before})
        await send({"type": "websocket.close"})

    srv = asgi_server(app)
    for path in ("/one", "/two", "/three"):
        with ws_connect(url(srv, path), open_timeout=TIMEOUT) as ws:
            assert ws.recv(timeout=TIMEOUT) == "unset"

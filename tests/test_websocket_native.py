"""The native WebSocket API (Server.add_websocket, /work/notes/WS_CONTRACT.md's last section) over
real sockets, on both engines (the `server` fixture): the order and codes of on_open / on_message /
on_close (client close, abrupt 1006, protocol error 1002, oversize 1009, stop 1001, a raising
callback 1011), echo of text and bytes (1 MiB, permessage-deflate), send() backpressure and after
close, ws.request and ws.state, plain HTTP beside the route, send() from another thread, handler
threads. The client is the `websockets` package, or test_websocket.py's raw client."""
import socket
import struct
import threading

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

import fastcore.errors
from conftest import get, wait_until
from test_websocket import KEY, RawClient, frame, raw_answer

TIMEOUT = 5.0

pytestmark = pytest.mark.hang_timeout(60)


class App:
    """Callbacks that record what they saw (and whether two ever ran at once for one connection)
    for the test thread to wait on; on_message echoes unless told otherwise."""

    def __init__(self, on_message=None, on_open=None):
        self.events = []
        self.lock = threading.Lock()
        self.overlaps = 0
        self.message_hook = on_message
        self.open_hook = on_open

    def add(self, *event):
        with self.lock:
            self.events.append(event)

    def enter(self, ws):
        with self.lock:
            if ws.state.get("busy"):
                self.overlaps += 1
            ws.state["busy"] = True

    def leave(self, ws):
        ws.state["busy"] = False

    def on_open(self, ws):
        self.enter(ws)
        try:
            self.add("open", ws)
            if self.open_hook is not None:
                self.open_hook(ws)
        finally:
            self.leave(ws)

    def on_message(self, ws, message):
        self.enter(ws)
        try:
            self.add("message", message)
            if self.message_hook is not None:
                self.message_hook(ws, message)
            else:
                ws.send(message)
        finally:
            self.leave(ws)

    def on_close(self, ws, code, reason):
        self.enter(ws)
        try:
            self.add("close", code, reason)
            try:
                ws.send("late")
            except fastcore.errors.ClientDisconnected:
                self.add("send refused after close")
        finally:
            self.leave(ws)

    def callbacks(self):
        return {"on_message": self.on_message, "on_open": self.on_open, "on_close": self.on_close}

    def wait_for(self, kind, count=1):
        assert wait_until(lambda: sum(event[0] == kind for event in self.events) >= count, TIMEOUT), self.events
        return [event for event in self.events if event[0] == kind]

    def kinds(self):
        return [event[0] for event in self.events]


def url(srv, path="/ws"):
    return f"ws://127.0.0.1:{srv.port}{path}"


def start(server, app, path="/ws", **options):
    return server(lambda request: fastcore.Response(b"handler " + request.path.encode()),
                  websockets={path: app.callbacks()}, **options)


# -- order, codes, echo --------------------------------------------------------------------------------

@pytest.mark.parametrize("handler_threads", [0, 2])
def test_echo_in_order_then_the_client_close(server, handler_threads):
    app = App()
    srv = start(server, app, handler_threads=handler_threads)
    big = bytes(range(256)) * 4096                              # 1 MiB
    sent = ["hello", b"\x00\x01", big, "é" * 300_000]
    with ws_connect(url(srv), open_timeout=TIMEOUT, max_size=None) as client:
        assert "permessage-deflate" in client.response.headers["Sec-WebSocket-Extensions"]
        for message in sent:
            client.send(message)
        assert [client.recv(timeout=TIMEOUT) for _ in sent] == sent
        client.close(4000, "bye")
    app.wait_for("send refused after close")
    assert app.kinds() == ["open"] + ["message"] * len(sent) + ["close", "send refused after close"]
    assert [event[1] for event in app.events[1:1 + len(sent)]] == sent
    assert app.wait_for("close") == [("close", 4000, "bye")]
    assert app.overlaps == 0


def test_many_messages_keep_their_order_with_handler_threads(server):
    app = App()
    srv = start(server, app, handler_threads=3, ws_max_queue=4)
    with ws_connect(url(srv), open_timeout=TIMEOUT) as client:
        for number in range(200):
            client.send(str(number))
        assert [client.recv(timeout=TIMEOUT) for _ in range(200)] == [str(n) for n in range(200)]
    app.wait_for("close")
    assert app.overlaps == 0


def test_abrupt_disconnect_is_1006(server):
    app = App()
    srv = start(server, app, path="/raw")
    client = RawClient(srv.port)
    assert client.status == 101
    client.send(frame(0x1, b"x"))
    assert client.read_frame() == (0x1, b"x", False)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()                                              # RST, no close frame
    assert app.wait_for("close") == [("close", 1006, "")]


@pytest.mark.parametrize("sent, code", [
    (frame(0x1, b"x", masked=False), 1002),
    (frame(0x2, b"x" * 2000), 1009),
    (frame(0x1, b"\xff\xfe"), 1007),
], ids=["unmasked-1002", "too-big-1009", "utf8-1007"])
def test_protocol_errors_close_with_their_code(server, sent, code):
    app = App()
    srv = start(server, app, path="/raw", ws_max_size=1024)
    client = RawClient(srv.port)
    client.send(sent)
    assert client.read_close() == code
    assert client.closed_by_server()
    client.close()
    assert app.wait_for("close") == [("close", code, "")]
    assert app.kinds()[:2] == ["open", "close"]


def test_stop_closes_with_1001(server):
    app = App()
    srv = start(server, app)
    with ws_connect(url(srv), open_timeout=TIMEOUT) as client:
        client.send("x")
        assert client.recv(timeout=TIMEOUT) == "x"
        stopper = threading.Thread(target=srv.stop, args=(TIMEOUT,))
        stopper.start()
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 1001
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert app.wait_for("close") == [("close", 1001, "")]


def test_the_stop_deadline_with_a_silent_client_still_runs_on_close_with_handler_threads(server):
    # The client never answers our 1001: the stop's deadline ends the WebSocket (1006), after the
    # handler threads may have left; on_close must still run, and nothing may leak.
    app = App()
    srv = start(server, app, path="/raw", handler_threads=2)
    client = RawClient(srv.port)
    try:
        assert client.status == 101
        app.wait_for("open")
        stopper = threading.Thread(target=srv.stop, args=(0.5,))
        stopper.start()
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
        assert [event[0] for event in app.wait_for("close")] == ["close"]
    finally:
        client.sock.close()


def test_app_close_with_code_and_reason(server):
    app = App(on_message=lambda ws, message: ws.close(4002, "done"))
    srv = start(server, app)
    with ws_connect(url(srv), open_timeout=TIMEOUT) as client:
        client.send("please close")
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=TIMEOUT)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4002, "done")
    assert app.wait_for("close") == [("close", 4002, "done")]


def test_a_raising_callback_is_logged_and_closes_with_1011(server, error_log):
    def fail(ws, message):
        raise ValueError("boom in on_message")

    app = App(on_message=fail)
    srv = start(server, app, path="/fails")
    with ws_connect(url(srv, "/fails"), open_timeout=TIMEOUT) as client:
        client.send("x")
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 1011
    assert app.wait_for("close") == [("close", 1011, "")]
    assert wait_until(lambda: "boom in on_message" in error_log.text(), TIMEOUT)
    assert "/fails" in error_log.text()


# -- send ----------------------------------------------------------------------------------------------

def test_send_says_false_past_64_kib_unsent_and_raises_after_close(server):
    results = []

    def flood(ws, message):
        chunk = b"z" * 16384
        for _ in range(4096):                                   # at most 64 MiB; stops at the first False
            if not ws.send(chunk):
                results.append(False)
                break
        ws.close()
        try:
            ws.send(b"after close")
        except fastcore.errors.ClientDisconnected:
            results.append("refused")

    app = App(on_message=flood)
    srv = start(server, app, path="/raw")
    client = RawClient(srv.port, rcvbuf=4096)
    client.send(frame(0x1, b"go"))                              # and never read
    assert wait_until(lambda: len(results) == 2, TIMEOUT), results
    assert results == [False, "refused"]
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert app.wait_for("close") == [("close", 1006, "")]


def test_send_from_another_thread(server):
    opened = threading.Event()
    sockets = []

    def remember(ws):
        sockets.append(ws)
        opened.set()

    app = App(on_open=remember)
    srv = start(server, app)
    with ws_connect(url(srv), open_timeout=TIMEOUT) as client:
        assert opened.wait(TIMEOUT)
        sender = threading.Thread(target=lambda: [sockets[0].send(f"push {n}") for n in range(3)])
        sender.start()
        sender.join(TIMEOUT)
        assert [client.recv(timeout=TIMEOUT) for _ in range(3)] == ["push 0", "push 1", "push 2"]
    app.wait_for("close")
    with pytest.raises(fastcore.errors.ClientDisconnected):
        sockets[0].send("too late")
    assert sockets[0].closed


# -- request, state, plain HTTP ------------------------------------------------------------------------

def test_request_and_state_per_connection(server):
    def on_open(ws):
        request = ws.request
        ws.state["name"] = request.query_string
        ws.state["seen"] = (request.path, request.headers.get("x-test"), request.body, request.remote_addr)
        ws.state["count"] = 0

    def on_message(ws, message):
        ws.state["count"] += 1
        ws.send(f"{ws.state['name']} {ws.state['count']}")

    app = App(on_message=on_message, on_open=on_open)
    srv = start(server, app)
    with ws_connect(url(srv, "/ws?a=1"), open_timeout=TIMEOUT, additional_headers={"X-Test": "one"}) as first, \
            ws_connect(url(srv, "/ws?b=2"), open_timeout=TIMEOUT) as second:
        for client in (first, second, first):
            client.send("x")
        assert [first.recv(timeout=TIMEOUT), first.recv(timeout=TIMEOUT)] == ["a=1 1", "a=1 2"]
        assert second.recv(timeout=TIMEOUT) == "b=2 1"
    opened = [event[1] for event in app.wait_for("open", 2)]
    seen = sorted(ws.state["seen"][1] or "" for ws in opened)
    assert seen == ["", "one"]
    for ws in opened:
        assert ws.state["seen"][0] == "/ws" and ws.state["seen"][2] == b"" and ws.state["seen"][3] == "127.0.0.1"


def test_plain_http_on_the_path_and_other_paths_go_to_the_handler(server):
    app = App()
    srv = start(server, app)
    status, _, body = get(srv.port, "/ws")
    assert (status, body) == (200, b"handler /ws")
    status, _, body = get(srv.port, "/other")
    assert (status, body) == (200, b"handler /other")
    with pytest.raises(InvalidStatus) as refused:           # an upgrade elsewhere is a plain request
        ws_connect(url(srv, "/other"), open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 200
    assert app.events == []


def test_the_access_log_has_a_line_for_each_handshake(server, access_lines):
    # The worker answers a native route's handshake itself: its 101 (or refusal) is a core line,
    # with the refusal's body bytes.
    app = App()
    srv = start(server, app, access_log=True)
    with ws_connect(url(srv, "/ws?x=1"), open_timeout=TIMEOUT) as client:
        client.send("hi")
        assert client.recv(timeout=TIMEOUT) == "hi"
    upgrade = b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    status, _, old_version = raw_answer(srv.port, upgrade + b"Sec-WebSocket-Version: 12\r\nSec-WebSocket-Key: "
                                        + KEY + b"\r\n\r\n")
    assert (status, old_version) == (426, b"Upgrade Required\n")
    status, _, no_key = raw_answer(srv.port, upgrade + b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert status == 400
    assert wait_until(lambda: len(access_lines) >= 3, TIMEOUT), access_lines
    expected = {'"GET /ws?x=1 HTTP/1.1" 101 -', f'"GET /ws HTTP/1.1" 426 {len(old_version)}',
                f'"GET /ws HTTP/1.1" 400 {len(no_key)}'}
    assert {line.split("] ", 1)[1].rsplit(" ", 1)[0] for line in access_lines} == expected, access_lines

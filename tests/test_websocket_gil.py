"""Pings, pongs and closes of WebSockets take no GIL, counted (the compiled engine's claim).

The I/O workers count every GIL acquisition they make (stats()["worker_gil_batches"]). A native
WebSocket route's callbacks run in those batches, so a batch is due for on_open, each message and
on_close; a client's pings (answered with pongs) and the close handshake itself must add none. An
ASGI server's workers never take the GIL at all, WebSockets included. tests/test_nogil_source.py
checks the same functions on the generated C.
"""
import base64
import os
import socket
import struct
import threading

import pytest

import fastcore

TIMEOUT = 10
KEY = base64.b64encode(b"0123456789abcdef")


def masked(opcode, payload=b""):
    mask = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload)))


class Client:
    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n")
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head

    def recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        return data

    def frame(self):
        """The next server frame: (opcode, payload) (server frames are unmasked, short here)."""
        while len(self.buffer) < 2 or len(self.buffer) < 2 + (self.buffer[1] & 0x7F):
            self.buffer += self.recv()
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        payload, self.buffer = self.buffer[2:2 + length], self.buffer[2 + length:]
        return opcode, payload


def ping_pong_and_close(client, count=100):
    for i in range(count):
        client.sock.sendall(masked(0x9, b"p%d" % i))
        assert client.frame() == (0xA, b"p%d" % i)
    client.sock.sendall(masked(0x8, struct.pack("!H", 1000)))
    assert client.frame() == (0x8, struct.pack("!H", 1000))


def test_native_pings_pongs_and_the_close_take_no_gil_batch(server, engine):
    if engine != "compiled":
        pytest.skip("the counter is the compiled engine's (its workers' GIL acquisitions)")
    opened, closed = threading.Event(), threading.Event()
    srv = server(handler=None, websockets={"/ws": {"on_message": lambda ws, message: None,
                                                   "on_open": lambda ws: opened.set(),
                                                   "on_close": lambda ws, code, reason: closed.set()}},
                 handler_threads=0)
    client = Client(srv.port, b"/ws")
    assert opened.wait(TIMEOUT)
    before = srv.stats()["worker_gil_batches"]
    for i in range(100):
        client.sock.sendall(masked(0x9, b"p%d" % i))
        assert client.frame() == (0xA, b"p%d" % i)
    assert srv.stats()["worker_gil_batches"] == before          # 100 pings answered: no batch
    client.sock.sendall(masked(0x8, struct.pack("!H", 1000)))
    assert client.frame() == (0x8, struct.pack("!H", 1000))
    assert closed.wait(TIMEOUT)
    assert srv.stats()["worker_gil_batches"] <= before + 1      # on_close's batch, nothing for the close
    client.sock.close()


def test_asgi_websockets_take_no_gil_on_the_workers(asgi_server, engine):
    if engine != "compiled":
        pytest.skip("the counter is the compiled engine's (its workers' GIL acquisitions)")

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    srv = asgi_server(app)
    client = Client(srv.port, b"/ws")
    ping_pong_and_close(client)
    client.sock.close()
    assert srv.stats()["worker_gil_batches"] == 0

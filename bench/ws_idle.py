"""Open N WebSocket connections to a server, do one echo round trip on each, then hold them all idle.

    python bench/ws_idle.py --port 8080 [--path /ws] [-n 1000] [--deflate] [--concurrency 128] [--timeout 60]

bench/ws_run.py runs this in its own process (pinned to the client CPU) to measure a server's memory
per idle WebSocket connection, with and without permessage-deflate. The handshake and frames are
written by hand (standard library only): what is measured is the server, not a client library.

Each connection: the upgrade request (with `Sec-WebSocket-Extensions: permessage-deflate;
client_max_window_bits` when --deflate), the 101, then one 64-byte text message (compressed, RSV1,
when deflate was agreed, so the server has used its inflater and compressor once) and its echo. Then
it stays open: a reader answers the server's pings with pongs and notices a close or EOF.

Protocol on stdout / stdin, as bench/idle_clients.py's:
  -> "READY open=<n> failed=<n> deflate=<n agreed> seconds=<s> [error=<first error>]"
  <- "count"   -> "OPEN <n>"   connections still open
  <- "quit" (or end of input)  reset every connection (SO_LINGER 0: no TIME_WAIT left) and exit
"""
import argparse
import asyncio
import base64
import os
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import raise_fd_limit  # noqa: E402  (bench/servers.py: standard library only at import)

LINGER_RST = struct.pack("ii", 1, 0)
MESSAGE = b"idle connection says hello, " * 2 + b"12345678"        # 64 bytes of text
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


def client_frame(opcode, payload, rsv1=False):
    """A masked client frame (RFC 6455 5.2)."""
    mask = os.urandom(4)
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return head + mask + masked


def deflate_message(payload):
    """permessage-deflate (RFC 7692 7.2.1): raw deflate, sync flush, without the 00 00 FF FF tail."""
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(b"\x00\x00\xff\xff") else data


async def read_frame(reader):
    """(opcode, payload) of one server frame (unmasked)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    if second & 0x80:
        await reader.readexactly(4)
    return first & 0x0F, await reader.readexactly(length)


class Connection:
    def __init__(self, reader, writer, deflate):
        self.reader, self.writer, self.deflate, self.open = reader, writer, deflate, True

    async def hold(self):
        """Answer pings until the server closes (or the connection breaks)."""
        try:
            while True:
                opcode, payload = await read_frame(self.reader)
                if opcode == OP_PING:
                    self.writer.write(client_frame(OP_PONG, payload))
                elif opcode == OP_CLOSE:
                    break
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        self.open = False


async def open_one(host, port, path, want_deflate, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    extension = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if want_deflate else ""
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = head.split(b"\r\n", 1)[0]
    if b" 101" not in status:
        writer.transport.abort()
        raise ValueError(f"handshake answered {status.decode('latin-1')!r}")
    deflate = b"permessage-deflate" in head.lower()
    if deflate:
        writer.write(client_frame(OP_TEXT, deflate_message(MESSAGE), rsv1=True))
    else:
        writer.write(client_frame(OP_TEXT, MESSAGE))
    opcode, _ = await asyncio.wait_for(read_frame(reader), timeout)
    if opcode != OP_TEXT:
        writer.transport.abort()
        raise ValueError(f"echo came back as opcode {opcode}")
    return Connection(reader, writer, deflate)


async def main_async(args):
    gate = asyncio.Semaphore(args.concurrency)
    errors = []

    async def guarded():
        async with gate:
            try:
                return await open_one("127.0.0.1", args.port, args.path, args.deflate, args.timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
                errors.append(f"{type(error).__name__}: {error}")
                return None

    started = time.monotonic()
    connections = [c for c in await asyncio.gather(*(guarded() for _ in range(args.connections))) if c]
    seconds = time.monotonic() - started
    holders = [asyncio.ensure_future(connection.hold()) for connection in connections]
    error = f" error={errors[0]}" if errors else ""
    agreed = sum(connection.deflate for connection in connections)
    print(f"READY open={len(connections)} failed={len(errors)} deflate={agreed} seconds={seconds:.2f}{error}",
          flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if command == "count":
            await asyncio.sleep(0)
            print(f"OPEN {sum(connection.open for connection in connections)}", flush=True)
        elif not line or command == "quit":
            break
    for connection in connections:
        sock = connection.writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        except OSError:
            pass
        connection.writer.transport.abort()
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("-n", "--connections", type=int, default=1000)
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--concurrency", type=int, default=128, help="connections being opened at once")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for one connection's handshake and echo")
    args = parser.parse_args(argv)
    limit = raise_fd_limit(args.connections + 100)
    if limit < args.connections + 100:
        print(f"READY open=0 failed={args.connections} deflate=0 seconds=0 error=RLIMIT_NOFILE is {limit}",
              flush=True)
        return 1
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

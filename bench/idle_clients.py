"""Open N keep-alive connections to a server, do one `GET /` on each, then hold them all idle.

    python bench/idle_clients.py --port 8080 [-n 10000] [--concurrency 256] [--timeout 120]

bench/run.py runs this in its own process (pinned to the wrk CPU) to measure a server's memory per
idle keep-alive connection. One process, non-blocking sockets and one epoll: at most
--concurrency connections are being opened (connect, request, response) at a time, so the server's
listen backlog never overflows, and each connection stays open once its response has arrived.

Protocol on stdout / stdin, one line each:
  -> "READY open=<n> failed=<n> seconds=<s> [error=<first error>]"  when every connection is done
  <- "count"   -> "OPEN <n>"   connections still open (a server that closed one is noticed here)
  <- "quit" (or end of input)  close everything with an RST (SO_LINGER 0, so no TIME_WAIT is left
                               behind to hold 10,000 ports for a minute) and exit
"""
import argparse
import errno
import os
import resource
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import raise_fd_limit  # noqa: E402  (bench/servers.py: standard library only at import)

LINGER_RST = struct.pack("ii", 1, 0)


def response_complete(data):
    """True once `data` holds one whole response (Content-Length or chunked framing)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = data[:end].lower()
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            return len(data) >= end + 4 + int(value.strip())
    if b"chunked" in head:
        return data.endswith(b"0\r\n\r\n")
    return True                                     # no body framing: the head is the response


class Holder:
    def __init__(self, host, port, count, concurrency, timeout):
        self.address = (host, port)
        self.count = count
        self.concurrency = concurrency
        self.timeout = timeout
        self.request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        self.epoll = select.epoll()
        self.pending = {}       # fd -> [socket, phase, received]; phase "connect" or "response"
        self.held = {}          # fd -> socket: done and idle
        self.failed = 0
        self.first_error = None

    def _fail(self, fd, why):
        sock = self.pending.pop(fd)[0]
        self.epoll.unregister(fd)
        sock.close()
        self.failed += 1
        if self.first_error is None:
            self.first_error = why

    def _open_one(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        rc = sock.connect_ex(self.address)
        if rc not in (0, errno.EINPROGRESS):
            sock.close()
            self.failed += 1
            self.first_error = self.first_error or f"connect: {os.strerror(rc)}"
            return
        self.pending[sock.fileno()] = [sock, "connect", b""]
        self.epoll.register(sock.fileno(), select.EPOLLOUT)

    def open_all(self):
        started = time.monotonic()
        deadline = started + self.timeout
        opened = 0
        while (opened < self.count or self.pending) and time.monotonic() < deadline:
            while opened < self.count and len(self.pending) < self.concurrency:
                self._open_one()
                opened += 1
            for fd, events in self.epoll.poll(0.5):
                entry = self.pending.get(fd)
                if entry is None:
                    continue
                sock, phase, received = entry
                if phase == "connect":
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._fail(fd, f"connect: {os.strerror(err)}")
                        continue
                    try:
                        sock.send(self.request)         # 40 bytes: one send on a fresh socket
                    except OSError as error:
                        self._fail(fd, f"send: {error}")
                        continue
                    entry[1] = "response"
                    self.epoll.modify(fd, select.EPOLLIN)
                    continue
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as error:
                    self._fail(fd, f"recv: {error}")
                    continue
                if not chunk:
                    self._fail(fd, "closed by the server before or after its response")
                    continue
                entry[2] = received = received + chunk
                if response_complete(received):
                    if not received.startswith(b"HTTP/1.1 200"):
                        self._fail(fd, f"response: {received[:40]!r}")
                        continue
                    del self.pending[fd]
                    self.held[fd] = sock
                    # keep watching it: a close by the server shows up in count()
                    self.epoll.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
        for fd in list(self.pending):
            self._fail(fd, f"not done within {self.timeout:.0f} s")
        self.failed += self.count - opened
        return time.monotonic() - started

    def count_open(self):
        for fd, events in self.epoll.poll(0):
            sock = self.held.get(fd)
            if sock is None:
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:                                # closed (or reset) by the server
                self.epoll.unregister(fd)
                sock.close()
                del self.held[fd]
        return len(self.held)

    def close_all(self):
        for sock in self.held.values():
            sock.close()
        self.held.clear()
        self.epoll.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("-n", "--connections", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=256, help="connections being opened at once")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to open them all")
    args = parser.parse_args(argv)
    limit = raise_fd_limit(args.connections + 100)
    if limit < args.connections + 20:
        print(f"READY open=0 failed={args.connections} seconds=0 error=RLIMIT_NOFILE is {limit}, "
              f"{args.connections} connections need more", flush=True)
        return 1
    holder = Holder(args.host, args.port, args.connections, args.concurrency, args.timeout)
    seconds = holder.open_all()
    error = f" error={holder.first_error}" if holder.first_error else ""
    print(f"READY open={len(holder.held)} failed={holder.failed} seconds={seconds:.2f}{error}", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "count":
            print(f"OPEN {holder.count_open()}", flush=True)
        elif command == "quit":
            break
    holder.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

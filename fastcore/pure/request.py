"""fastcore.pure.request: what a handler receives: Request, and BodyReader for large bodies.

Theory of operation. A Request is a thin view over one parsed Message (parser.py): the head bytes as
received plus offsets, decoded only when the handler asks (a handler that never looks at the headers
never pays for them), exactly like fastcore.Request in pyext/python.pxi, which it mirrors attribute
for attribute. Headers are fastcore.Headers, the compiled module's plain Python class.

A body up to body_buffer_size is read whole before the handler runs (request.body). A larger one is
handed over after the head: request.stream is then a BodyReader that reads from the socket as the
handler asks. The thread running the handler (its worker, or a handler thread that has the
connection out of the worker's epoll set: bridge.py) is inside the handler anyway, so the reader
waits for the client right there (poll with body_timeout, and no later than the body's
body_min_rate deadline: timers.py), feeds what arrives to the connection's parser and hands out the
decoded bytes: memory stays bounded by one read. Reading is possible only while the handler runs.
"""
import io
import time

from .._core import Headers, RequestBodyError
from ..proxy import header_values, resolve
from .parser import Reject
from .timers import body_rate_deadline


class Request:
    """One HTTP request, as given to a native handler (the pure twin of fastcore.Request)."""

    __slots__ = ("_message", "_body", "_reader", "_keep_alive", "_headers", "_stream", "_peer", "_proxies",
                 "_proxied", "_proxy_checked")

    def __init__(self, message, peer, keep_alive):
        self._message = message
        self._peer = peer                   # (address, port) from accept(), or None
        self._keep_alive = keep_alive
        self._body = None                   # None while a streamed body has not been read whole
        self._reader = None
        self._headers = None
        self._stream = None
        self._proxies = None                # the server's fastcore.proxy.TrustedProxies, None: trust none
        self._proxied = None
        self._proxy_checked = False

    def _proxied_view(self):
        """The Proxied of this request, or None: the head is looked at, and resolve() run, once."""
        if self._proxies is None:
            return None
        if not self._proxy_checked:
            self._proxy_checked = True
            values = header_values(self._message.head)
            if values is not None:
                self._proxied = resolve(self._proxies, self._peer_host(), *values)
        return self._proxied

    def _peer_host(self):
        if not isinstance(self._peer, tuple):
            return ""
        return self._peer[0].partition("%")[0]      # as inet_ntop: an IPv6 zone is not part of it

    @property
    def keep_alive(self):
        return self._keep_alive

    @property
    def method(self):
        message = self._message
        return message.head[:message.method_end].decode("ascii")

    @property
    def target(self):
        """The request-target exactly as sent (path and query)."""
        message = self._message
        return message.head[message.target_start:message.target_end].decode("latin-1")

    @property
    def path(self):
        """The path as sent (still percent-encoded); "/" for an absolute-form target without one."""
        message = self._message
        if message.path_end == message.path_start:
            return "/"
        return message.head[message.path_start:message.path_end].decode("latin-1")

    @property
    def query_string(self):
        """What follows the first '?' of the target, without it; "" when there is none."""
        message = self._message
        query_start = message.path_end
        if query_start >= message.target_end or message.head[query_start] != 63:
            return ""
        return message.head[query_start + 1:message.target_end].decode("latin-1")

    @property
    def http_version(self):
        return "1.1" if self._message.version_minor == 1 else "1.0"

    @property
    def headers(self):
        if self._headers is None:
            lines = self._message.head.split(b"\r\n")
            pairs = []
            for line in lines[1:]:          # lines[0] is the request line; the head ends with an empty line
                if not line:
                    break
                name, _, value = line.partition(b":")
                pairs.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
            self._headers = Headers(pairs)
        return self._headers

    @property
    def body(self):
        """The whole body as bytes. For a body larger than body_buffer_size this reads the rest of it
        from the client now; request.stream reads it piece by piece instead."""
        if self._body is None:
            self._body = self._reader.read()
        return self._body

    @property
    def stream(self):
        """A file-like object over the body (read, readline, readlines, iteration): wsgi.input.
        Bodies larger than body_buffer_size are read from the client as the handler asks."""
        if self._stream is None:
            self._stream = self._reader if self._body is None else io.BytesIO(self._body)
        return self._stream

    @property
    def remote_addr(self):
        """The client's IP address as text ("" when unknown, e.g. on a unix socket); behind a
        trusted proxy (forwarded_allow_ips), the one its headers name."""
        proxied = self._proxied_view()
        if proxied is not None and proxied.client_host is not None:
            return proxied.client_host
        return self._peer_host()

    @property
    def remote_port(self):
        """The client's port (0 when unknown, or when a trusted proxy named the client without one)."""
        proxied = self._proxied_view()
        if proxied is not None and proxied.client_host is not None:
            return proxied.client_port
        return self._peer[1] if isinstance(self._peer, tuple) else 0

    @property
    def scheme(self):
        """"http", or what a trusted proxy says the client used ("https")."""
        proxied = self._proxied_view()
        if proxied is not None and proxied.scheme is not None:
            return proxied.scheme
        return "http"

    @property
    def host(self):
        """The Host field ("" without one), or the host a trusted proxy says the client asked for."""
        proxied = self._proxied_view()
        if proxied is not None and proxied.host is not None:
            return proxied.host
        return self.headers.get("host", "")

    @property
    def proxied(self):
        """What trusted proxy headers said about this request (a fastcore.proxy.Proxied), or None."""
        return self._proxied_view()

    def __repr__(self):
        return f"<Request {self.method} {self.target} HTTP/{self.http_version}>"


class BodyReader:
    """request.stream for a body too large to hold (BodyReader in python.pxi): decoded body bytes
    wait in the message's body_parts; when there are none, the socket is read, inside the handler."""

    __slots__ = ("conn", "message", "failure")

    def __init__(self, conn, message):
        self.conn = conn                    # None once the handler has returned
        self.message = message
        self.failure = None
        # The body's rate clock restarts now (python.pxi: BodyReader.attach says why).
        conn.body_started = time.monotonic()

    @property
    def finished(self):
        """Every body byte handed out."""
        return self.message.complete and not self.message.buffered

    def detach(self):
        self.conn = None

    def _ready(self):
        if self.conn is None:
            return 0
        parts = self.message.body_parts
        return len(parts[0]) if parts else 0

    def _take(self, count):
        message = self.message
        parts = message.body_parts
        first = parts[0]
        if len(first) <= count:
            parts.popleft()
            taken = first
        else:
            taken = first[:count]
            parts[0] = first[count:]
        message.buffered -= len(taken)
        return taken

    def _fill(self):
        """Make at least one body byte ready, unless the body is finished."""
        if self.failure is not None:
            raise self.failure
        conn = self.conn
        if conn is None and not self.finished:
            raise ValueError("a streamed request body can be read only while its handler runs")
        while not self.finished and not self.message.buffered:
            conn.send_deferred_continue()
            # Wait up to body_timeout, and no later than the body's rate deadline (timers.py);
            # bytes already in the kernel are taken first, however late it is.
            timeout = conn.worker.body_timeout
            rate_deadline = body_rate_deadline(conn)
            rate_bound = False
            if rate_deadline is not None:
                until_rate = max(0.0, rate_deadline - time.monotonic())
                if timeout is None or until_rate < timeout:
                    timeout = until_rate
                    rate_bound = True
            received = conn.receive_blocking(timeout)
            if received == 0 and rate_bound:
                conn.worker.body_rate_timeouts += 1
                self.failure = RequestBodyError(408, "the client sent the body slower than body_min_rate")
            elif received == 0:
                conn.worker.body_timeouts += 1
                self.failure = RequestBodyError(408, "the client sent no body bytes within body_timeout")
            elif received < 0:
                self.failure = RequestBodyError(400, "the client closed before sending the whole body")
            else:
                try:
                    conn.parser.feed_body()
                except Reject as error:
                    self.failure = RequestBodyError(error.status, "malformed or oversized chunked body")
            if self.failure is not None:
                raise self.failure

    def read(self, size=-1):
        """Up to `size` bytes (all that is left when size is negative or None); b"" at the end."""
        parts = []
        if size is None or size < 0:
            while True:
                self._fill()
                ready = self._ready()
                if ready == 0:
                    return b"".join(parts)
                parts.append(self._take(ready))
        wanted = size
        while wanted:
            self._fill()
            ready = self._ready()
            if ready == 0:
                break
            part = self._take(min(ready, wanted))
            wanted -= len(part)
            parts.append(part)
        return b"".join(parts)

    def readline(self, size=-1):
        parts = []
        limit = -1 if size is None or size < 0 else size
        while limit != 0:
            self._fill()
            ready = self._ready()
            if ready == 0:
                break
            if 0 < limit < ready:
                ready = limit
            newline = self.message.body_parts[0].find(b"\n", 0, ready)
            count = ready if newline < 0 else newline + 1
            parts.append(self._take(count))
            if limit > 0:
                limit -= count
            if newline >= 0:
                break
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

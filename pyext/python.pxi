# python.pxi: the Python objects a handler sees: Request, Headers, Response, FileWrapper,
# BodyReader (request.stream for a body too large to hold) and RequestBodyError.
#
# Theory of operation. The batch (batch.pxi) builds a Request from a copy of the head and body
# bytes and calls the handler with it; the serializer (serializer.pxi) reads the Response the
# handler returns. Request decodes lazily: a handler that never looks at the headers never pays for
# them. A BodyReader reads the socket itself, on the worker thread (which is inside the handler
# anyway), with the GIL released while it waits; it is usable only while its handler runs.
#
# Proxy headers (fastcore/proxy.py has the rules): a Request of a server that trusts some proxies
# holds their matcher (`_proxies`, from the Core). The first time the client, scheme or host is
# asked for, proxy_header_values() scans the head's field names in C; only when one of the four
# proxy headers is there does Python's fastcore.proxy.resolve() run. The WSGI environ and the ASGI
# scope use the same scan.

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1

import io
import logging
import os
import stat
from http import HTTPStatus

from fastcore.errors import ConfigError, FastcoreError, ServerStateError     # a leaf module: no import cycle
from fastcore.proxy import (apply_to_environ as _proxy_apply_to_environ, apply_to_scope as _proxy_apply_to_scope,
                            resolve as _proxy_resolve, trusted_proxies as _trusted_proxies)     # a leaf too

_error_log = logging.getLogger("fastcore.error")
cdef bytes _EMPTY = b""


class Headers:
    """Request header fields in arrival order, looked up without regard to case.

    h["Content-Type"] and h.get(name, default) give the first value of a field; h.getall(name)
    gives every value; h.items() the (name, value) pairs as received (values decoded latin-1)."""

    __slots__ = ("_items", "_by_name")

    def __init__(self, items):
        self._items = list(items)
        self._by_name = None

    def _index(self):
        if self._by_name is None:
            by_name = {}
            for name, value in self._items:
                by_name.setdefault(name.lower(), []).append(value)
            self._by_name = by_name
        return self._by_name

    def __getitem__(self, name):
        return self._index()[name.lower()][0]

    def get(self, name, default=None):
        values = self._index().get(name.lower())
        return values[0] if values else default

    def getall(self, name):
        return list(self._index().get(name.lower(), ()))

    def __contains__(self, name):
        return isinstance(name, str) and name.lower() in self._index()

    def items(self):
        return list(self._items)

    def keys(self):
        return [name for name, _ in self._items]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return f"Headers({self._items!r})"


cdef uint32_t _last_ipv4_address = 0    # the last IPv4 peer formatted, and its text (GIL held:
cdef str _last_ipv4_text = None         # inet_ntop formats with sprintf, slow for every request)


cdef str peer_host_text(PeerAddress* peer):
    """The client's IP address as text ("" for a unix socket)."""
    global _last_ipv4_address, _last_ipv4_text
    cdef char text[INET6_ADDRSTRLEN + 1]
    if peer.any.sa_family == AF_INET:
        if _last_ipv4_text is not None and peer.v4.sin_addr.s_addr == _last_ipv4_address:
            return _last_ipv4_text
        inet_ntop(AF_INET, &peer.v4.sin_addr, text, sizeof(text))
        _last_ipv4_address = peer.v4.sin_addr.s_addr
        _last_ipv4_text = text.decode("ascii")
        return _last_ipv4_text
    elif peer.any.sa_family == AF_INET6:
        inet_ntop(AF_INET6, &peer.v6.sin6_addr, text, sizeof(text))
    else:
        return ""
    return text.decode("ascii")


cdef inline bint _name_is(const char* name, const char* lower, Py_ssize_t length) noexcept:
    """A header name equals `lower` (lower case letters and '-') regardless of case. Token bytes
    only (the parser checked): c | 0x20 folds a letter's case and leaves '-' as it is."""
    cdef Py_ssize_t i
    for i in range(length):
        if (name[i] | 0x20) != lower[i]:
            return False
    return True


cdef int _proxy_header_index(const char* name, Py_ssize_t length) noexcept:
    """Which of fastcore.proxy.PROXY_HEADERS this field name is (0..3), or -1."""
    if length == 15 and _name_is(name, b"x-forwarded-for", 15):
        return 0
    if length == 17 and _name_is(name, b"x-forwarded-proto", 17):
        return 1
    if length == 16 and _name_is(name, b"x-forwarded-host", 16):
        return 2
    if length == 9 and _name_is(name, b"forwarded", 9):
        return 3
    return -1


cdef object proxy_header_values(const char* data, Py_ssize_t head_length):
    """The values of the proxy headers in a request head (X-Forwarded-For, -Proto, -Host,
    Forwarded: str, repeated fields joined with ","), or None when it has none of them, found by
    comparing field names in C (no Python object made). fastcore.proxy.header_values is the pure
    engine's twin. The parser guarantees CRLF line ends and a colon per line."""
    cdef Py_ssize_t position, line_end, colon, value_start, value_end
    cdef const char* newline = <const char*>memchr(data, 10, head_length)
    cdef int index
    cdef list values = None
    position = newline - data + 1
    while position < head_length:
        newline = <const char*>memchr(data + position, 10, head_length - position)
        line_end = newline - data - 1
        if line_end <= position:
            break
        colon = (<const char*>memchr(data + position, 58, line_end - position)) - data
        index = _proxy_header_index(data + position, colon - position)
        if index >= 0:
            value_start = colon + 1
            value_end = line_end
            while value_start < value_end and (data[value_start] == 32 or data[value_start] == 9):
                value_start += 1
            while value_end > value_start and (data[value_end - 1] == 32 or data[value_end - 1] == 9):
                value_end -= 1
            value = PyUnicode_DecodeLatin1(data + value_start, value_end - value_start, NULL)
            if values is None:
                values = [None, None, None, None]
            values[index] = value if values[index] is None else values[index] + "," + value
        position = line_end + 2
    return tuple(values) if values is not None else None


cdef int peer_port(PeerAddress* peer) noexcept:
    if peer.any.sa_family == AF_INET:
        return ntohs(peer.v4.sin_port)
    if peer.any.sa_family == AF_INET6:
        return ntohs(peer.v6.sin6_port)
    return 0


@cython.auto_pickle(False)
@cython.final
cdef class Request:
    """One HTTP request, as given to a native handler."""
    cdef bytes _head
    cdef bytes _body                  # None while a streamed body has not been read whole
    cdef BodyReader _reader           # streamed bodies only
    cdef readonly bint keep_alive
    cdef Py_ssize_t _method_length, _target_offset, _target_length, _path_offset, _path_length
    cdef int _version_minor
    cdef object _headers
    cdef object _stream
    cdef PeerAddress _peer
    cdef object _proxies              # the server's fastcore.proxy.TrustedProxies, None: trust none
    cdef object _proxied              # what they said (Proxied or None), once _proxy_checked
    cdef bint _proxy_checked

    cdef object proxied_view(self):
        """The Proxied of this request, or None: the header scan and resolve() run once."""
        if self._proxies is None:
            return None
        if not self._proxy_checked:
            self._proxy_checked = True
            values = proxy_header_values(PyBytes_AS_STRING(self._head), PyBytes_GET_SIZE(self._head))
            if values is not None:
                self._proxied = _proxy_resolve(self._proxies, peer_host_text(&self._peer), *values)
        return self._proxied

    @property
    def method(self):
        return self._head[:self._method_length].decode("ascii")

    @property
    def target(self):
        """The request-target exactly as sent (path and query)."""
        return self._head[self._target_offset:self._target_offset + self._target_length].decode("latin-1")

    @property
    def path(self):
        """The path as sent (still percent-encoded); "/" for an absolute-form target without one."""
        if self._path_length == 0:
            return "/"
        return self._head[self._path_offset:self._path_offset + self._path_length].decode("latin-1")

    @property
    def query_string(self):
        """What follows the first '?' of the target, without it; "" when there is none."""
        cdef Py_ssize_t query_start = self._path_offset + self._path_length
        cdef Py_ssize_t target_end = self._target_offset + self._target_length
        if query_start >= target_end or self._head[query_start] != 63:
            return ""
        return self._head[query_start + 1:target_end].decode("latin-1")

    @property
    def http_version(self):
        return "1.1" if self._version_minor == 1 else "1.0"

    @property
    def headers(self):
        if self._headers is None:
            lines = self._head.split(b"\r\n")
            # lines[0] is the request line; the head ends with an empty line (two empty strings).
            pairs = []
            for line in lines[1:]:
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
        proxied = self.proxied_view()
        if proxied is not None and proxied[0] is not None:
            return proxied[0]
        return peer_host_text(&self._peer)

    @property
    def remote_port(self):
        """The client's port (0 when unknown, or when a trusted proxy named the client without one)."""
        proxied = self.proxied_view()
        if proxied is not None and proxied[0] is not None:
            return proxied[1]
        return peer_port(&self._peer)

    @property
    def scheme(self):
        """"http", or what a trusted proxy says the client used ("https")."""
        proxied = self.proxied_view()
        if proxied is not None and proxied[2] is not None:
            return proxied[2]
        return "http"

    @property
    def host(self):
        """The Host field ("" without one), or the host a trusted proxy says the client asked for."""
        proxied = self.proxied_view()
        if proxied is not None and proxied[3] is not None:
            return proxied[3]
        return self.headers.get("host", "")

    @property
    def proxied(self):
        """What trusted proxy headers said about this request (a fastcore.proxy.Proxied: client_host,
        client_port, scheme, host, None where the socket's view stands), or None."""
        return self.proxied_view()

    def __repr__(self):
        return f"<Request {self.method} {self.target} HTTP/{self.http_version}>"


class RequestBodyError(FastcoreError, OSError):
    """Reading a streamed request body failed; `status` is the HTTP answer the server gives
    (400 malformed or cut short, 408 too slow, 413 too large, 431 trailers too large) if the
    handler lets it propagate."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


@cython.auto_pickle(False)
@cython.final
cdef class BodyReader:
    """request.stream for a body too large to hold: reads it from the socket as the handler asks,
    so memory stays bounded by the read buffer. Lives only while the handler runs: the worker thread
    is in the handler, so reading here (the GIL released while waiting) is the worker's own I/O."""
    cdef Worker* worker
    cdef Conn* conn
    cdef bint chunked
    cdef int64_t remaining            # Content-Length bodies: bytes not yet handed out
    cdef bint chunks_complete         # chunked: the last chunk and the trailers are in
    cdef size_t trailer_end           # chunked: where the trailers end, once complete
    cdef readonly bint finished       # every body byte handed out
    cdef object failure

    cdef void attach(self, Worker* worker, Conn* conn):
        """Take over a connection whose head has just been copied out: drop the head from the
        buffer and re-base the chunked decoder so the body starts at offset 0."""
        cdef size_t head_length = conn.request.head_length
        self.worker = worker
        self.conn = conn
        self.chunked = conn.request.chunked
        # The body's rate clock (timers.pxi) restarts now: until a handler took the request, nobody
        # read the socket, and what the client could send meanwhile was bounded by the kernel's
        # buffer, not by its rate. The body bytes already received still count.
        conn.body_started_ms = fc_now_ms()
        buffer_consume(&conn.input, head_length)
        if self.chunked:
            conn.chunked_body.read_offset -= head_length
            conn.chunked_body.decoded_end -= head_length
            conn.chunked_body.body_start = 0
        else:
            self.remaining = conn.request.content_length
            self.finished = self.remaining == 0

    cdef void detach(self):
        self.worker = NULL
        self.conn = NULL

    cdef size_t _ready(self):
        if self.conn == NULL:
            return 0
        if self.chunked:
            return self.conn.chunked_body.decoded_end
        return min(buffer_length(&self.conn.input), <size_t>self.remaining)

    cdef bytes _take(self, size_t count):
        cdef Conn* conn = self.conn
        cdef bytes taken = PyBytes_FromStringAndSize(conn.input.data + conn.input.start, count)
        buffer_consume(&conn.input, count)
        if self.chunked:
            conn.chunked_body.read_offset -= count
            conn.chunked_body.decoded_end -= count
            conn.chunked_body.decoded_before += count
            if self.chunks_complete:
                self.trailer_end -= count
                self._finish_chunks()
        else:
            self.remaining -= count
            self.finished = self.remaining == 0
        return taken

    cdef void _finish_chunks(self):
        if self.chunks_complete and self.conn.chunked_body.decoded_end == 0:
            buffer_consume(&self.conn.input, self.trailer_end)     # the trailer section
            self.trailer_end = 0
            self.finished = True

    cdef int _fill(self) except -1:
        """Make at least one body byte ready, unless the body is finished."""
        cdef int received
        cdef Conn* conn = self._conn_for_reading()
        cdef int timeout_ms
        cdef long long rate_deadline, until_rate
        cdef bint rate_bound
        while not self.finished and self._ready() == 0:
            self._owe_continue(conn)
            # Wait for the next bytes up to body_timeout, and no later than the body's rate deadline
            # (timers.pxi); bytes already in the kernel are taken first, however late it is.
            timeout_ms = <int>self.worker.timers[<int>TIMER_BODY].duration_ms
            if timeout_ms <= 0:
                timeout_ms = -1
            rate_deadline = body_rate_deadline_ms(self.worker.server, conn)
            rate_bound = False
            if rate_deadline >= 0:
                until_rate = max(0, min(rate_deadline - fc_now_ms(), 2147483647))
                if timeout_ms < 0 or until_rate < timeout_ms:
                    timeout_ms = <int>until_rate
                    rate_bound = True
            with nogil:
                received = conn_receive_blocking(self.worker, conn, timeout_ms)
            if received == 0 and rate_bound:
                fc_atomic_add64(&self.worker.server.body_rate_timeouts, 1)
                self.failure = RequestBodyError(408, "the client sent the body slower than body_min_rate")
                raise self.failure
            elif received == 0:
                fc_atomic_add64(&self.worker.server.body_timeouts, 1)
                self.failure = RequestBodyError(408, "the client sent no body bytes within body_timeout")
                raise self.failure
            self._received(received)
        return 0

    cdef int fill_nowait(self) except -1:
        """_fill for the ASGI event loop, which must not block: 1 when a body byte is ready or the
        body is finished, 0 when nothing has arrived yet (wait for the socket to be readable)."""
        cdef int received
        cdef Conn* conn = self._conn_for_reading()
        while not self.finished and self._ready() == 0:
            self._owe_continue(conn)
            received = conn_receive_nowait(self.worker, conn)
            if received == 0:
                return 0
            self._received(received)
        return 1

    cdef Conn* _conn_for_reading(self) except? NULL:
        """The connection to read from (NULL once the body is finished); raises the failure that
        ended the body, or ValueError once the handler has returned."""
        if self.failure is not None:
            raise self.failure
        if self.conn == NULL and not self.finished:
            raise ValueError("a streamed request body can be read only while its handler runs")
        return self.conn

    cdef void _owe_continue(self, Conn* conn) noexcept:
        """The client waits for 100 Continue before it sends a streamed body: sent with the first read."""
        if conn.continue_deferred:
            conn.continue_deferred = False
            buffer_append(&conn.output, b"HTTP/1.1 100 Continue\r\n\r\n", 25)

    cdef int _received(self, int received) except -1:
        """After a read: -1 (the client closed) fails the body; bytes of a chunked body are decoded."""
        cdef Py_ssize_t decoded
        cdef Conn* conn = self.conn
        if received < 0:
            self.failure = RequestBodyError(400, "the client closed before sending the whole body")
        elif self.chunked:
            decoded = chunked_decode(conn.input.data + conn.input.start, buffer_length(&conn.input),
                                     &conn.chunked_body, &self.worker.server.limits)
            if decoded == 0:
                conn_drop_chunk_framing(conn)
            if decoded < 0:
                self.failure = RequestBodyError(<int>-decoded, "malformed or oversized chunked body")
            elif decoded > 0:
                self.chunks_complete = True
                self.trailer_end = <size_t>decoded
                self._finish_chunks()
        if self.failure is not None:
            raise self.failure
        return 0

    def read(self, size=-1):
        """Up to `size` bytes (all that is left when size is negative or None); b"" at the end."""
        cdef size_t ready, wanted
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
        cdef size_t ready, count
        cdef const char* newline
        parts = []
        limit = -1 if size is None or size < 0 else size
        while limit != 0:
            self._fill()
            ready = self._ready()
            if ready == 0:
                break
            if 0 < limit < <Py_ssize_t>ready:
                ready = limit
            newline = <const char*>memchr(self.conn.input.data + self.conn.input.start, 10, ready)
            count = ready if newline == NULL else <size_t>(newline - (self.conn.input.data + self.conn.input.start)) + 1
            parts.append(self._take(count))
            if limit > 0:
                limit -= count
            if newline != NULL:
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


@cython.auto_pickle(False)
cdef class FileWrapper:
    """A response body read from a file-like object (PEP 3333's wsgi.file_wrapper). When it wraps
    a regular file with fileno(), the worker sends it with sendfile(2) without the GIL, from the
    file's current position to its end; otherwise it is iterated in `block_size` reads. Its close()
    closes the file and is always called by the server."""
    cdef readonly object filelike
    cdef readonly Py_ssize_t block_size

    def __init__(self, filelike, Py_ssize_t block_size=8192):
        self.filelike = filelike
        self.block_size = block_size if block_size > 0 else 8192

    def __iter__(self):
        read = self.filelike.read
        while True:
            block = read(self.block_size)
            if not block:
                return
            yield block

    def close(self):
        close_method = getattr(self.filelike, "close", None)
        if close_method is not None:
            close_method()

    cdef tuple regular_file_span(self):
        """(fd, offset, length) to sendfile, or None when this is not a regular file."""
        try:
            fd = self.filelike.fileno()
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return None
            offset = self.filelike.tell() if hasattr(self.filelike, "tell") else 0
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        return (fd, offset, max(0, status.st_size - offset))


@cython.auto_pickle(False)
cdef class Response:
    """What a native handler returns: a status, a body (bytes, or str sent as UTF-8), header fields
    (a dict or a list of (name, value) pairs), an optional Content-Type and an optional reason
    phrase (the standard one otherwise). The server adds Date, Server, framing and Connection
    itself: a Content-Length given here is honoured (a HEAD response carries it, a longer body is
    cut to it, a streamed body is sent with it instead of chunked); Transfer-Encoding is ignored;
    `Connection: close` closes the connection after this response."""
    cdef public int status
    cdef public object body
    cdef public object headers
    cdef public object content_type
    cdef public object reason

    def __init__(self, body=b"", int status=200, headers=None, content_type=None, reason=None):
        self.body = body
        self.status = status
        self.headers = headers
        self.content_type = content_type
        self.reason = reason

    def __repr__(self):
        return f"<Response {self.status}>"


cdef Response response_of(object body, int status, object headers, object reason=None):
    """A Response built without __init__'s argument parsing: what the WSGI fast path and an ASGI
    cycle hand the serializer, once per request."""
    cdef Response response = Response.__new__(Response)
    response.body = body
    response.status = status
    response.headers = headers
    response.reason = reason
    return response

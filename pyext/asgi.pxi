# asgi.pxi: ASGI 3 on the compiled core: the I/O workers hand requests to one event loop.
#
# Theory of operation. A Core built for an ASGI app (Dispatch.asgi, a fastcore.asgi.ASGIApp) runs
# no handler threads: its Python executor is an event loop (a loop thread of ASGIServer in
# fastcore/server.py, or the caller's own loop with fastcore.AsyncServer). The I/O workers are
# unchanged: a request for Python goes onto the bridge (bridge.pxi) and its worker leaves the
# connection alone, exactly as in handler-thread mode; the only difference is the wake-up.
# Instead of a condition variable, the bridge writes an eventfd (Core.asgi_fd) when it goes from
# empty to not, and the loop watches it (loop.add_reader). Its callback, Core.asgi_drain(), takes
# everything waiting in one lock acquisition:
#
#   * parked bodies: released here, under the GIL (as a handler thread does);
#   * a new request: its scope is built from the head bytes (asgi_scope), an ASGICycle takes the
#     connection, and the app's task is created from this callback, so every task starts from the
#     same base context and none inherits another request's contextvars;
#   * a connection coming back for more of a streamed response (STREAM_MORE): the worker has sent
#     what the cycle gave it, and the app's send() that waited for that returns.
#
# While a cycle holds its connection (`holding`), the connection is the loop's: the cycle reads
# a streamed request body from the socket without blocking (its worker ignores the socket
# meanwhile, so the loop's add_reader may watch it), writes the response into the output with the
# ResponseSerializer, and sends what the socket takes at once. It gives the connection back to its
# worker when the response is complete, or when the socket is full (the worker then sends the rest
# and hands it back through the bridge: that is the backpressure of a streamed response); the
# connections given back in one loop iteration reach their workers' inboxes together, one wake-up
# per worker (asgi_flush). Once given back the cycle never touches the connection again unless it
# comes back; if the client goes away meanwhile, the worker closes the connection and parks the
# held stream (ASGIBodyParts), whose release here tells the cycle (send() then raises
# ClientDisconnected). While the app waits in receive() after the body, the loop watches the socket
# itself, so a client that leaves then is an http.disconnect.
#
# The app's mistakes follow fastcore.asgi's rules, shared with the pure engine: before
# http.response.start a 500 (the connection stays), after it a cut connection.
#
# Ownership of Python objects follows serializer.pxi: a streamed ASGI response is a HELD_STREAM
# whose iterator is the cycle's ASGIBodyParts; pull_stream() takes the parts the app has sent
# and stops at STREAM_PAUSED when it has sent them all.
#
# The loop thread works with its own Worker, `asgi_context` (Date line, counters, buffer bins,
# parked bodies), as a handler thread does with its handler context.
#
# One cycle at a time per connection: pipelined requests wait, parsed, in the worker, which hands
# the next one over once the response is out (serve_buffered_requests, as after any handler).

from cpython.unicode cimport PyUnicode_DecodeLatin1 as _decode_latin1
from urllib.parse import unquote as _unquote

from collections import deque as _deque

import fastcore.errors as _errors

cdef object _asyncio = None           # imported with the first ASGI core (not every server needs it)
cdef object _Task = None              # asyncio.Task
cdef dict _ASGI_VERSIONS = {"version": "3.0", "spec_version": "2.4"}
cdef str _HTTP_VERSION_11 = "1.1", _HTTP_VERSION_10 = "1.0", _SCHEME_HTTP = "http"
cdef str _TYPE_HTTP = "http"

cdef enum CycleResponse:
    RESPONSE_NONE = 0                 # no http.response.start yet
    RESPONSE_STARTED = 1              # start received; nothing written (a body fixes the framing)
    RESPONSE_STREAMING = 2            # head and some parts written; more to come
    RESPONSE_DONE = 3                 # complete (or cut): the connection was given back


cdef enum:
    COMMON_FIELD_NAMES = 24

# Field names most requests carry, lower-cased once: asgi_headers() gives these objects instead of
# a new bytes each (an allocation and a copy saved per field of a browser's request).
cdef tuple _COMMON_FIELD_NAMES = (
    b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"connection",
    b"content-type", b"content-length", b"cookie", b"authorization", b"cache-control", b"origin",
    b"referer", b"pragma", b"upgrade-insecure-requests", b"if-none-match", b"if-modified-since",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-real-ip", b"x-request-id", b"sec-fetch-site",
    b"sec-fetch-mode", b"sec-fetch-dest")


cdef object _field_name(const char* name, Py_ssize_t length):
    """A field name as ASGI wants it, lower-cased bytes: a shared object for a common name, else a
    new one, lower-cased while copied (the parser checked token bytes: only A-Z change)."""
    cdef Py_ssize_t i
    cdef bytes common, lowered
    cdef char* out
    cdef char c
    for i in range(COMMON_FIELD_NAMES):
        common = <bytes>_COMMON_FIELD_NAMES[i]
        if PyBytes_GET_SIZE(common) == length and _name_is(name, PyBytes_AS_STRING(common), length):
            return common
    lowered = PyBytes_FromStringAndSize(NULL, length)
    out = PyBytes_AS_STRING(lowered)
    for i in range(length):
        c = name[i]
        out[i] = c + 32 if 65 <= c <= 90 else c
    return lowered


cdef list asgi_headers(const char* data, Py_ssize_t head_length):
    """The head's fields as ASGI wants them: [(lower-cased name, value without surrounding
    whitespace)], as bytes, in order. The parser guarantees CRLF line ends and a colon per line."""
    cdef list headers = []
    cdef Py_ssize_t position, line_end, colon, value_start, value_end
    cdef const char* newline = <const char*>memchr(data, 10, head_length)
    position = newline - data + 1
    while position < head_length:
        newline = <const char*>memchr(data + position, 10, head_length - position)
        line_end = newline - data - 1
        if line_end <= position:
            break
        colon = (<const char*>memchr(data + position, 58, line_end - position)) - data
        value_start = colon + 1
        value_end = line_end
        while value_start < value_end and (data[value_start] == 32 or data[value_start] == 9):
            value_start += 1
        while value_end > value_start and (data[value_end - 1] == 32 or data[value_end - 1] == 9):
            value_end -= 1
        headers.append((_field_name(data + position, colon - position),
                        PyBytes_FromStringAndSize(data + value_start, value_end - value_start)))
        position = line_end + 2
    return headers


cdef dict asgi_scope(object app_info, Conn* conn, object proxies):
    """The http scope of the connection's current request (its head is at the input's start).
    `proxies`: the Core's TrustedProxies (or None), whose headers set client, scheme and Host."""
    cdef const char* data = conn.input.data + conn.input.start
    cdef ParsedRequest* parsed = &conn.request
    cdef Py_ssize_t query_start = parsed.path_offset + parsed.path_length
    cdef Py_ssize_t target_end = parsed.target_offset + parsed.target_length
    cdef bytes raw_path, query
    cdef str path, root_path = app_info.root_path, host
    if parsed.path_length == 0:
        raw_path = b"/"
    else:
        raw_path = PyBytes_FromStringAndSize(data + parsed.path_offset, parsed.path_length)
    if memchr(data + parsed.path_offset, 37, parsed.path_length) != NULL:        # '%'
        path = _unquote(_decode_latin1(raw_path, len(raw_path), NULL))
    else:
        path = _decode_latin1(raw_path, len(raw_path), NULL)
    if query_start < target_end and data[query_start] == 63:                     # '?'
        query = PyBytes_FromStringAndSize(data + query_start + 1, target_end - query_start - 1)
    else:
        query = b""
    if root_path:                       # path and raw_path include it (fastcore.asgi.scope_paths)
        path, raw_path = _scope_paths(raw_path, root_path)
    host = peer_host_text(&conn.peer)
    scope = {
        "type": _TYPE_HTTP,
        "asgi": _ASGI_VERSIONS.copy(),
        "http_version": _HTTP_VERSION_11 if parsed.version_minor == 1 else _HTTP_VERSION_10,
        "method": _method_text(data, parsed.method_length),
        "scheme": _SCHEME_HTTP,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": asgi_headers(data, parsed.head_length),
        "client": (host, peer_port(&conn.peer)) if host else None,
        "server": app_info.server,
        "extensions": {"http.response.pathsend": {}},
    }
    state = app_info.state
    if state is not None:
        scope["state"] = state.copy()
    if proxies is not None:
        values = proxy_header_values(data, parsed.head_length)
        if values is not None:
            proxied = _proxy_resolve(proxies, host, *values)
            if proxied is not None:
                _proxy_apply_to_scope(scope, proxied)
    return scope


@cython.auto_pickle(False)
@cython.final
cdef class _Sent:
    """What ASGICycle.send() returns when it handled the message at once: awaiting it gives None
    without suspending (one shared instance: it holds nothing)."""
    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration


cdef _Sent _SENT = _Sent.__new__(_Sent)


@cython.auto_pickle(False)
@cython.final
cdef class ASGIBodyParts:
    """The body of a streamed ASGI response, as the serializer pulls it (a HELD_STREAM's iterator):
    the parts the app has sent and the worker has not been given yet. close() comes when the
    serializer is done with it: at the end of the body, or when the client went away first."""
    cdef object parts                 # collections.deque of bytes
    cdef bint last_queued             # the app sent its final part
    cdef bint ended                   # every part was pulled
    cdef ASGICycle cycle

    def __iter__(self):
        return self

    def __next__(self):
        if self.parts:
            return self.parts.popleft()
        if self.last_queued:
            self.ended = True
            raise StopIteration
        return _STREAM_PAUSED

    def close(self):
        # While the loop holds the connection, the serializer closes the parts itself (the end, a
        # HEAD, a declared length reached, a cut); otherwise the worker closed the connection.
        if self.cycle is not None and not self.cycle.holding:
            self.cycle.lost_client()
        self.cycle = None


@cython.auto_pickle(False)
@cython.final
@cython.no_gc_clear                   # __dealloc__ counts the cycle out on its core: keep `core` till then
cdef class ASGICycle:
    """One request's ASGI cycle: receive() and send() of the app's call, and the connection while
    the loop holds it (see the top of asgi.pxi). The app's mistakes follow fastcore.asgi's rules,
    as on the pure engine: before http.response.start, a 500 (the connection stays); after it, the
    connection is cut (closed without a complete response), even when nothing was written yet."""
    cdef Core core
    cdef Conn* conn                   # valid only while `holding`
    cdef bint holding
    cdef bint head_only
    cdef bint body_given              # the request body went to the app (or there was none)
    cdef bint disconnected            # the client is gone (or its body failed): send() raises
    cdef int watched_fd               # the socket the loop watches for the client leaving, or -1
    cdef size_t request_length        # of a buffered request, consumed once the response starts
    cdef bytes body                   # a buffered request body (copied out at the start)
    cdef BodyReader reader            # a streamed request body
    cdef CycleResponse response
    cdef object status, headers       # http.response.start, until the body fixes the framing
    cdef long long declared           # its Content-Length, or -1
    cdef long long body_sent          # body bytes the app has sent
    cdef ASGIBodyParts parts
    cdef object waiting               # send() waits here while the worker sends (Future)
    cdef object finished              # set when the response is complete or the client is gone
    cdef object task                  # the asyncio task running the app's call

    def __dealloc__(self):
        if self.core is not None:
            fc_debug_count(self.core.state.debug_counters, FC_LIVE_ASGI_CYCLES, -1)

    # -- receive ------------------------------------------------------------------------------

    async def receive(self):
        if self.reader is not None and not self.body_given:
            return await self._receive_streamed()
        if not self.body_given:
            self.body_given = True
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body nothing comes but the end of this exchange: the response complete, or
        # the client gone (seen by watching its socket while the loop holds it).
        if not self.disconnected and self.response != RESPONSE_DONE:
            if self.finished is None:
                self.finished = self.core.asgi_loop.create_future()
            if self.holding and self.watched_fd < 0:
                self.watched_fd = self.conn.fd
                self.core.asgi_loop.add_reader(self.watched_fd, self._client_readable)
            await _asyncio.shield(self.finished)
        return {"type": "http.disconnect"}

    def _client_readable(self):
        """The socket is readable while the app waits for the end: EOF or an error means the client
        left; bytes (a pipelined request) mean nothing yet, and the watch ends."""
        cdef char probe
        cdef ssize_t n
        if not self.holding or self.watched_fd < 0:
            return
        n = recv(self.watched_fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT)
        if n < 0 and (errno == EAGAIN or errno == EINTR):
            return
        self._unwatch()
        if n <= 0:
            self.conn.peer_closed = True
            self._lost()

    cdef void _unwatch(self) except *:
        if self.watched_fd >= 0:
            self.core.asgi_loop.remove_reader(self.watched_fd)
            self.watched_fd = -1

    async def _receive_streamed(self):
        """The next part of a body too large to hold, read from the socket without blocking: the
        loop watches the socket for it (it is out of the worker's epoll set), within body_timeout."""
        cdef BodyReader reader = self.reader
        cdef size_t ready
        cdef long long timeout_ms = self.core.asgi_context.timers[<int>TIMER_BODY].duration_ms
        loop = self.core.asgi_loop
        while True:
            if not self.holding or self.response != RESPONSE_NONE or reader.conn == NULL:
                self.body_given = True          # the response went out: the rest is not read
                return {"type": "http.disconnect"}
            try:
                if reader.fill_nowait():
                    ready = reader._ready()
                    part = reader._take(min(ready, <size_t>READ_CHUNK * 4)) if ready else b""
                    self.body_given = reader.finished
                    return {"type": "http.request", "body": part, "more_body": not reader.finished}
            except RequestBodyError as error:
                self.body_given = True
                self._body_failed(error.status)
                return {"type": "http.disconnect"}
            readable = loop.create_future()
            fd = self.conn.fd
            loop.add_reader(fd, _resolve, readable)
            try:
                if timeout_ms > 0:
                    await _asyncio.wait_for(readable, timeout_ms / 1000.0)
                else:
                    await readable
            except _asyncio.TimeoutError:
                self.body_given = True
                fc_atomic_add64(&self.core.state.body_timeouts, 1)
                self._body_failed(408)
                return {"type": "http.disconnect"}
            finally:
                loop.remove_reader(fd)

    cdef void _body_failed(self, int status) except *:
        """The request body cannot be read (too slow, malformed, cut short): the client gets
        `status` and a close (if nothing of a response went out yet), and the app sees a disconnect."""
        self.disconnected = True
        if self.holding and self.response == RESPONSE_NONE:
            self._answer_error(status, True)

    # -- send ---------------------------------------------------------------------------------

    def send(self, message):
        """The app's send(): the message is handled now, so the result is an awaitable already
        done (_SENT), except while a streamed response waits for the worker to send what it
        has (backpressure). An error is raised by the call, which `await send(...)` cannot tell
        apart from one raised by the await. Half the cost of a coroutine per call (perf)."""
        kind = message["type"]
        if self.disconnected:
            raise _errors.ClientDisconnected("the client is gone")
        if kind == "http.response.start":
            if self.response != RESPONSE_NONE:
                raise RuntimeError("http.response.start sent twice")
            self.declared = asgi_known_start(self.core.asgi_checked_fields, message)
            if self.declared == -2:
                self.declared = asgi_check_start(self.core.asgi_checked_fields, message)
            self.status = message["status"]
            self.headers = message.get("headers") or ()
            self.response = RESPONSE_STARTED
            return _SENT
        if self.response == RESPONSE_NONE:
            raise RuntimeError(f"{kind} sent before http.response.start")
        if kind == "http.response.body":
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = _body_bytes(message)     # bytearray, memoryview; RuntimeError otherwise
            more = message.get("more_body", False)
            if self.response == RESPONSE_DONE:
                if self.parts is not None and not self.parts.last_queued:
                    # A HEAD, a 204 or 304: the rest of the body is not sent.
                    self.parts.last_queued = not more
                    return _SENT
                raise RuntimeError("http.response.body sent after the response was complete")
            self._check_length(len(body), more)
            if self.response == RESPONSE_STARTED:
                if not more:
                    self._respond(response_of(body, self.status, self.headers))
                    return _SENT
                self.parts = ASGIBodyParts.__new__(ASGIBodyParts)
                self.parts.parts = _deque()
                self.parts.cycle = self
                self.parts.parts.append(body)
                self._respond(response_of(self.parts, self.status, self.headers))
                if self.response == RESPONSE_DONE:
                    return _SENT                # HEAD, 204, 304: no body goes out
            else:
                self.parts.parts.append(body)
                self.parts.last_queued = not more
                if self.holding:
                    self._pull()
            if self.response == RESPONSE_STREAMING and not self.holding:
                self.waiting = self.core.asgi_loop.create_future()
                return self._wait_sent()    # the worker is sending: backpressure
            return _SENT
        if self.response == RESPONSE_DONE:
            raise RuntimeError(f"{kind} sent after the response was complete")
        if kind == "http.response.pathsend":
            if self.response != RESPONSE_STARTED:
                raise RuntimeError("http.response.pathsend after a body was sent")
            self._respond(response_of(FileWrapper(open(message["path"], "rb")), self.status, self.headers))
            return _SENT
        raise RuntimeError(f"unknown ASGI message type {kind!r}")

    async def _wait_sent(self):
        try:
            await self.waiting
        finally:
            self.waiting = None             # (its exception's traceback would hold this cycle)

    cdef void _check_length(self, long long length, bint more) except *:
        """A declared Content-Length is what the body must be: more or less is the app's error."""
        self.body_sent += length
        if self.declared < 0 or self.head_only or self.status == 204 or self.status == 304:
            return
        if self.body_sent > self.declared:
            raise RuntimeError(f"the ASGI app sent more than its Content-Length {self.declared}")
        if not more and self.body_sent < self.declared:
            raise RuntimeError(f"the ASGI app ended its body {self.declared - self.body_sent} bytes "
                               f"short of its Content-Length {self.declared}")

    cdef void _respond(self, Response response) except *:
        """Write the response head (and what of the body there is) into the output."""
        cdef Conn* conn = self.conn
        cdef Worker* context = self.core.asgi_context
        cdef size_t output_before = buffer_length(&conn.output)
        self._unwatch()
        if self.reader is not None:
            end_streamed_body(conn, self.reader)
            output_before -= min(output_before, conn.output_sent_early)
        if fc_atomic_load(&conn.home.stop_requested):
            conn_close_after(conn, CLOSE_AFTER_RESPONSE)    # the server is stopping
        date_refresh(&context.date)         # the app may have awaited long since the drain
        try:
            self.core.serializer.append_response(context, conn, response, self.head_only)
        except BaseException:
            response_rollback(context, conn, output_before)
            self._answer_error(500, True)
            raise
        finish_request(conn, 0 if self.reader is not None else self.request_length)
        if conn_streams_body(conn):
            self.response = RESPONSE_STREAMING
            self._after_pull()
        else:
            self._complete()

    cdef void _pull(self) except *:
        self.core.serializer.pull_stream(self.core.asgi_context, self.conn)
        self._after_pull()

    cdef void _after_pull(self) except *:
        """The serializer took what parts there were and sent what the socket took: the body has
        ended, or waits in the output for the worker (socket full), or everything is out and the
        loop keeps the connection for the next part."""
        if not conn_streams_body(self.conn):
            self._complete()                # the last part, or a failed send (pull_stream cuts)
        elif buffer_length(&self.conn.output):
            self._give_back()

    cdef void _complete(self) except *:
        self.response = RESPONSE_DONE
        self._give_back()
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    cdef void _answer_error(self, int status, bint close) except *:
        """Nothing of a response went out: answer `status` (and close after it when `close`, or
        when the request's body was not read to its end)."""
        cdef Conn* conn = self.conn
        self._unwatch()
        if self.reader is not None:
            end_streamed_body(conn, self.reader)
        if close:
            conn_close_after(conn, CLOSE_LINGERING)
        date_refresh(&self.core.asgi_context.date)
        append_error_response(self.core.asgi_context, conn, status)
        finish_request(conn, 0 if self.reader is not None else self.request_length)
        self._complete()

    cdef void _cut(self) except *:
        """The response cannot be completed: close the connection without it (or without the end
        of its body), so the client sees it is incomplete."""
        cdef Conn* conn = self.conn
        self._unwatch()
        if self.reader is not None:
            end_streamed_body(conn, self.reader)
        conn_close_after(conn, CLOSE_LINGERING)
        if conn.held.kind != HELD_NONE:
            if self.parts is not None:
                self.parts.ended = True     # a cut, not a lost client
            held_body_release(self.core.state.debug_counters, &conn.held)
        if self.response != RESPONSE_STREAMING:
            finish_request(conn, 0 if self.reader is not None else self.request_length)
        self._complete()

    cdef void _give_back(self) except *:
        """Hand the connection to its worker: it sends the output, then serves what is pipelined,
        or hands a streamed response back through the bridge once the output is out."""
        cdef Conn* conn = self.conn
        if not self.holding:
            return
        self._unwatch()
        self.holding = False
        self.conn = NULL
        asgi_give_back(self.core, conn)

    cdef void take_back(self, Conn* conn) except *:
        """The worker sent a streamed response's output and hands the connection back for more."""
        self.conn = conn
        self.holding = True
        if self.response != RESPONSE_STREAMING:      # the app failed or left meanwhile: end it
            self._cut()
            return
        self._pull()
        if self.holding and self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)

    cdef void lost_client(self) except *:
        """The worker closed the connection while it had it (the client went away)."""
        self.disconnected = True
        self.response = RESPONSE_DONE
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(_errors.ClientDisconnected("the client went away"))
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    cdef void _lost(self) except *:
        """The loop saw the client leave while it holds the connection: the app learns it from
        receive() (http.disconnect) and send() (ClientDisconnected); the connection is closed when
        the app's call ends."""
        self.disconnected = True
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    # -- the end of the app's call ----------------------------------------------------------------

    cdef void app_ended(self, object error, object scope) except *:
        """The app's call returned (error None) or raised: finish what it left unfinished. Before
        http.response.start: 500 (503 when a stop's deadline cancelled it); after it: a cut."""
        cdef bint cancelled = error is not None and isinstance(error, _asyncio.CancelledError)
        if error is None and self.response != RESPONSE_DONE and not self.disconnected:
            error = RuntimeError("the ASGI app returned without completing its response")
        if error is not None and not cancelled and not isinstance(error, _errors.ClientDisconnected):
            self.core.asgi.log_failure(scope, error)
        if self.holding and self.disconnected:
            self._cut()                     # the client is gone: close what is left
        elif self.response == RESPONSE_STREAMING:
            if self.holding:
                self._cut()
            else:
                self.response = RESPONSE_DONE   # take_back() cuts it when the worker returns it
        elif self.response == RESPONSE_STARTED and self.holding:
            self._cut()
        elif self.response == RESPONSE_NONE and self.holding:
            if cancelled:
                fc_atomic_add64(&self.core.state.requests_cut_at_stop, 1)
            self._answer_error(503 if cancelled else 500, cancelled)
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


cdef enum:
    CHECKED_FIELDS_MAX = 4096         # (name, value) pairs of response heads remembered as valid


cdef long long asgi_known_start(dict checked, object message) except -3:
    """The fast path of an http.response.start check: its Content-Length (-1 when none) when the
    status is valid and every header is a (name, value) tuple already checked; -2 otherwise."""
    cdef long long declared = -1
    status = message.get("status")
    if type(status) is not int or not 200 <= <long long>status <= 999:
        return -2
    headers = message.get("headers")
    if not headers:
        return -1
    if type(headers) is not list and type(headers) is not tuple:
        return -2
    for item in headers:
        if type(item) is not tuple:
            return -2
        known = checked.get(item)
        if known is None:
            return -2
        if <long long>known >= 0:
            if declared >= 0:
                return -2                   # two Content-Lengths: the full check decides
            declared = known
    return declared


cdef long long asgi_check_start(dict checked, object message) except -3:
    """The full check (fastcore.asgi.check_start: RuntimeError for what cannot be sent); then its
    (name, value) tuples are remembered as valid, each with its Content-Length or -1."""
    start = _check_start(message)
    for item in message.get("headers") or ():
        if len(checked) >= CHECKED_FIELDS_MAX:
            break
        if type(item) is tuple and type(item[0]) is bytes and type(item[1]) is bytes:
            checked[item] = (int(item[1].strip(b" \t")) if item[0].lower() == b"content-length" else -1)
    return start.declared_length


cdef object _check_start = None       # fastcore.asgi's rules, shared with the pure engine
cdef object _body_bytes = None
cdef object _scope_paths = None


cdef void asgi_import_asyncio():
    global _asyncio, _Task, _check_start, _body_bytes, _scope_paths
    if _asyncio is None:
        import asyncio
        from fastcore.asgi import body_bytes, check_start, scope_paths
        _asyncio = asyncio
        _Task = asyncio.Task
        _check_start = check_start
        _body_bytes = body_bytes
        _scope_paths = scope_paths


cdef object asgi_running_loop():
    return _asyncio.get_running_loop()


cdef str _TASK_NAME = "fastcore-asgi"   # every cycle's task (see asgi_new_task)


cdef object asgi_new_task(Core core, object coroutine):
    """The task running one app call. With no task factory on the loop, asyncio.Task is built here
    with a fixed name: on Python 3.11 a task without one formats "Task-<n>" in its constructor (5 %
    of the loop thread's time, pipelined hello world, perf), and loop.create_task passes no name
    to the constructor. A loop with a task factory gets loop.create_task, so the factory applies."""
    if core.asgi_plain_tasks:
        return _Task(coroutine, loop=core.asgi_loop, name=_TASK_NAME)
    return core.asgi_loop.create_task(coroutine)


def _resolve(future):
    if not future.done():
        future.set_result(None)


async def _run_cycle(app, scope, ASGICycle cycle):
    """The task of one request: the app's call, then whatever it left unfinished."""
    try:
        await app(scope, cycle.receive, cycle.send)
    except BaseException as error:
        cycle.app_ended(error, scope)
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
    else:
        cycle.app_ended(None, scope)
    finally:
        cycle.core.asgi_tasks.discard(cycle.task)
        cycle.task = None


cdef void asgi_drain(Core core) except *:
    """Core.asgi_drain: on the loop thread, when the bridge's eventfd is readable."""
    cdef uint64_t value
    cdef Worker* context = core.asgi_context
    cdef Conn* conn
    cdef Conn* following
    cdef WsChannel* ws_ready
    read(core.state.bridge.notify_fd, &value, sizeof(value))       # before taking: see bridge_notify
    core.asgi_plain_tasks = core.asgi_loop.get_task_factory() is None   # (may be set at any time)
    conn = bridge_take_all(context, &ws_ready)
    release_parked_bodies(context)
    context.now_ms = fc_now_ms()
    date_refresh(&context.date)
    while conn != NULL:
        following = conn.next_awaiting_python
        conn.next_awaiting_python = NULL
        conn.input.bin = &context.input_bin         # its buffers are the loop's while it is here
        conn.output.bin = &context.output_bin
        try:
            if stop_deadline_passed(conn.home):
                batch_cut_at_deadline(context, conn)    # no app call starts after the deadline
                asgi_give_back(core, conn)
            elif conn.held.kind == HELD_STREAM:         # back for more of a streamed response
                (<ASGIBodyParts>(<object>conn.held.iterator)).cycle.take_back(conn)
            elif conn.ws_upgrade:
                asgi_start_websocket(core, conn)        # asgi_websocket.pxi
            else:
                asgi_start_cycle(core, conn)
        except BaseException:
            _error_log.exception("the ASGI bridge failed on a request")
        conn = following
    if ws_ready != NULL:
        asgi_websockets_ready(core, ws_ready)       # asgi_websocket.pxi
    release_parked_bodies(context)                  # bytes bodies sent in full meanwhile


cdef void asgi_give_back(Core core, Conn* conn) except *:
    """Hand `conn` back to its worker: it sends the output, then serves what is pipelined behind
    (or, for a streamed response, hands it back through the bridge once the output is out). The
    connection waits in a list that asgi_flush() hands over once the loop has run what is ready
    now, so one loop iteration's responses cost each worker one wake-up, not one each (with one
    wake-up per response, worker and loop ping-pong: 85k req/s pipelined, hello world)."""
    conn_transition(core.asgi_context, conn, EVENT_ANSWERED)
    conn.input.bin = &conn.home.input_bin
    conn.output.bin = &conn.home.output_bin
    conn.next_awaiting_python = NULL
    if core.asgi_given_back_last != NULL:
        core.asgi_given_back_last.next_awaiting_python = conn
    else:
        core.asgi_given_back = conn
        core.asgi_loop.call_soon(core._asgi_flush)
    core.asgi_given_back_last = conn


cdef void asgi_flush(Core core) noexcept:
    """Put every connection given back since the last flush into its worker's inbox, then wake each
    worker whose inbox was empty, once."""
    cdef Conn* conn = core.asgi_given_back
    cdef Conn* following
    cdef Worker* woken[64]
    cdef int woken_count = 0, i
    cdef uint64_t one = 1
    cdef Worker* home
    core.asgi_given_back = NULL
    core.asgi_given_back_last = NULL
    while conn != NULL:
        following = conn.next_awaiting_python
        home = conn.home
        if inbox_append(conn):
            for i in range(woken_count):
                if woken[i] == home:
                    break
            else:
                if woken_count < 64:
                    woken[woken_count] = home
                    woken_count += 1
                else:
                    write(home.wake_fd, &one, sizeof(one))
        conn = following
    for i in range(woken_count):
        write(woken[i].wake_fd, &one, sizeof(one))


cdef void asgi_start_cycle(Core core, Conn* conn) except *:
    """A new request: its scope, its cycle (which takes the connection), its task."""
    cdef ASGICycle cycle = ASGICycle.__new__(ASGICycle)
    cdef ParsedRequest* parsed = &conn.request
    cdef BodyReader reader
    scope = asgi_scope(core.asgi, conn, core.proxies)
    cycle.core = core
    cycle.conn = conn
    cycle.holding = True
    cycle.watched_fd = -1
    cycle.declared = -1
    cycle.head_only = parsed.is_head
    fc_debug_count(core.state.debug_counters, FC_LIVE_ASGI_CYCLES, 1)
    if conn.body_streamed:
        reader = BodyReader.__new__(BodyReader)
        reader.attach(core.asgi_context, conn)      # the head leaves the buffer here
        conn.output_sent_early = 0
        cycle.reader = reader
    else:
        cycle.body = (PyBytes_FromStringAndSize(conn.input.data + conn.input.start + parsed.head_length,
                                                parsed.body_length) if parsed.body_length else _EMPTY)
        cycle.request_length = parsed.request_length
    cycle.task = asgi_new_task(core, _run_cycle(core.asgi.app, scope, cycle))
    core.asgi_tasks.add(cycle.task)             # _run_cycle takes it out (no done callback to schedule)

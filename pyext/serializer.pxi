# serializer.pxi: what a handler returned, written into a connection's output; and the one owner
# of every Python object that C holds past the GIL.
#
# Theory of operation. ResponseSerializer.append_response() turns a handler's result (a Response,
# bytes or str) into a status line, fields, framing and a body in the connection's output buffer,
# under the GIL, in the batch. Most bodies are copied into the output and nothing Python is kept.
# Three kinds of body are sent later, by the worker, without the GIL, and so must stay alive until
# then; the connection holds each in its `held` slot (HeldBody, state.pxi):
#
#   kind         owner (one reference)       iterator (one reference)  sent by
#   HELD_BYTES   the bytes object            -                         sendmsg, from the bytes'
#                                                                      own memory (body_data)
#   HELD_FILE    the FileWrapper             -                         sendfile(2), from its fd
#   HELD_STREAM  the iterable                iter(iterable)            pull_stream(), part by part
#
# Ownership rules:
#   * held_body_acquire() is the only place a reference is taken for C (and counted in debug
#     builds); held_body_release() the only place one is dropped: it calls the owner's close() if
#     it has one (PEP 3333 asks that it always be called), then releases both references. Both
#     run with the GIL.
#   * Without the GIL a held body is never released: held_body_park() moves it from the connection
#     to its worker's parked list (when the body is fully sent, or the connection closes), and
#     release_parked_bodies() releases the parked ones at the start of the worker's next batch, or
#     in Core.release().
#   * A body that will not be sent (HEAD, 204, 304, an empty file or stream) is closed at once and
#     never held.
#
# A response that fails half-way (an invalid field, say) is rolled back by the batch with
# buffer_truncate() to the output's length before it began.

cdef enum:
    CONTENT_TYPE_CACHE_SIZE = 64
    FIELD_CACHE_SIZE = 4096           # response header lines remembered (ETags, cookies vary: bounded)
    STREAM_HIGH_WATER = 65536         # bytes of a streamed body buffered before waiting for the socket

cdef enum:                            # fields a handler set itself (append_response leaves ours out)
    OWN_SERVER_FIELD = 1
    OWN_DATE_FIELD = 2

cdef object _END_OF_STREAM = object()
cdef object _STREAM_PAUSED = object() # an ASGI response's next part is not sent yet (asgi.pxi)


cdef inline bint conn_streams_body(const Conn* conn) noexcept nogil:
    """A streamed response body is in progress: pipelined requests wait for its end."""
    return conn.held.kind == HELD_STREAM


# -- held bodies: acquire and release with the GIL, park without it ----------------------------------

cdef void held_body_acquire(Worker* worker, Conn* conn, HeldKind kind, object owner, object iterator):
    Py_INCREF(owner)
    conn.held.owner = <void*>owner
    if iterator is not None:
        Py_INCREF(iterator)
        conn.held.iterator = <void*>iterator
    conn.held.kind = kind
    fc_debug_count(worker.server.debug_counters, FC_LIVE_PYTHON_BODIES, 1)


cdef void held_body_release(long long* debug_counters, HeldBody* held) noexcept:
    """Close the owner and drop both references (GIL held); the slot is empty afterwards."""
    cdef PyObject* owner = <PyObject*>held.owner
    cdef PyObject* iterator = <PyObject*>held.iterator
    held.kind = HELD_NONE
    held.owner = NULL
    held.iterator = NULL
    if owner != NULL:
        fc_debug_count(debug_counters, FC_LIVE_PYTHON_BODIES, -1)
        _close_iterable(<object>owner)
        Py_DECREF(<object>owner)
    if iterator != NULL:
        Py_DECREF(<object>iterator)


cdef void held_body_park(Worker* worker, Conn* conn) noexcept nogil:
    """Move the connection's held body to the worker's parked list, for release at the next batch
    (no GIL here). Out of memory: the body is leaked rather than released without the GIL."""
    cdef HeldBody* grown
    cdef int capacity
    if conn.held.kind == HELD_NONE:
        return
    if worker.parked_count == worker.parked_capacity:
        capacity = worker.parked_capacity * 2 if worker.parked_capacity else 8
        grown = <HeldBody*>realloc(worker.parked_bodies, capacity * sizeof(HeldBody))
        if grown == NULL:
            memset(&conn.held, 0, sizeof(HeldBody))
            return
        worker.parked_bodies = grown
        worker.parked_capacity = capacity
    worker.parked_bodies[worker.parked_count] = conn.held
    worker.parked_count += 1
    memset(&conn.held, 0, sizeof(HeldBody))


cdef void release_parked_bodies(Worker* worker) noexcept:
    """Release what held_body_park() parked (GIL held): bodies sent to the end, or of connections
    that closed (client gone, timeout, stop)."""
    cdef int i
    for i in range(worker.parked_count):
        held_body_release(worker.server.debug_counters, &worker.parked_bodies[i])
    worker.parked_count = 0


cdef void _close_iterable(object iterable) noexcept:
    """Call iterable.close() if it has one; log its errors."""
    try:
        close_method = getattr(iterable, "close", None)
        if close_method is not None:
            close_method()
    except BaseException:
        try:
            _error_log.exception("closing a response body failed")
        except BaseException:
            pass


# -- values to bytes ----------------------------------------------------------------------------------

cdef long long _declared_length(bytes value) except -2:
    if not value.isdigit() or len(value) > 18:
        raise ValueError(f"invalid Content-Length {value!r}")
    return int(value)


cdef int _check_final_status(int status) except -1:
    """A handler's response is the request's final response. A 1xx is interim (RFC 9110 15.2): sent
    as the answer it would leave the client waiting for the real one and taking the next response
    as this request's. The server's own 100 Continue does not come through here, and fastcore never
    switches protocols, so 101 has no place either: every 1xx is refused like an invalid status."""
    if not 100 <= status <= 999:
        raise ValueError(f"invalid HTTP status {status}")
    if status < 200:
        raise ValueError(f"a handler cannot answer with the interim status {status} (1xx): "
                         f"a response needs a final status, 200 or above")
    return 0


# Bounds on a handler's response head. No real application comes near them: Python's http.client
# (requests, urllib) refuses a response with more than 100 fields, Envoy's defaults stop at 100
# fields and 60 KiB, nginx proxies 4-8 KiB heads by default (proxy_buffer_size) and HAProxy 16 KiB.
# Beyond them the head is an application bug (a header built in a loop, a value that grows), and a
# 500 with a log line says so, instead of shipping megabytes of head that clients and proxies refuse.
cdef enum:
    MAX_RESPONSE_HEAD_SIZE = 65536    # bytes, status line to the blank line, as serialized
    MAX_RESPONSE_FIELDS = 256         # fields the handler gives (dict items, list or tuple entries)


cdef int check_response_field_count(object headers) except -1:
    """Refuse more than MAX_RESPONSE_FIELDS fields before any is serialized: one len() (an
    iterable without one is bounded by check_response_head_size alone)."""
    cdef Py_ssize_t count
    if type(headers) is dict or type(headers) is list or type(headers) is tuple:
        count = len(headers)
    else:
        try:
            count = len(headers)
        except TypeError:
            return 0
    if count > MAX_RESPONSE_FIELDS:
        raise ValueError(f"the response has {count} header fields, more than the limit of "
                         f"{MAX_RESPONSE_FIELDS} (MAX_RESPONSE_FIELDS)")
    return 0


cdef int check_response_head_size(size_t length) except -1:
    """Refuse a serialized head over MAX_RESPONSE_HEAD_SIZE: a length check once the head is
    written; the batch rolls the output back and answers 500."""
    if length > MAX_RESPONSE_HEAD_SIZE:
        raise ValueError(f"the response head is {length} bytes, more than the limit of "
                         f"{MAX_RESPONSE_HEAD_SIZE} (MAX_RESPONSE_HEAD_SIZE)")
    return 0


cdef bytes _custom_status_line(int status, object reason):
    """A status line with the handler's own reason phrase (WSGI apps give one); not cached."""
    cdef bytes phrase = _as_latin1(reason)
    _check_final_status(status)
    _check_field(b"Reason", phrase)
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


cdef bytes _as_body_bytes(object part):
    if isinstance(part, bytes):
        return <bytes>part
    if isinstance(part, str):
        return (<str>part).encode("utf-8")
    if isinstance(part, (bytearray, memoryview)):
        return bytes(part)
    raise TypeError(f"a response body part must be bytes or str, not {type(part).__name__}")


cdef inline bytes _as_latin1(object text):
    if isinstance(text, bytes):
        return <bytes>text
    return (<str>text).encode("latin-1")


cdef int _check_field(bytes name, bytes value) except -1:
    """Refuse response fields that would corrupt the framing (response splitting)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(name)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(name)
    if n == 0:
        raise ValueError("empty response header name")
    for i in range(n):
        if not TOKEN_BYTE[p[i]]:
            raise ValueError(f"invalid response header name {name!r}")
    p = <const unsigned char*>PyBytes_AS_STRING(value)
    n = PyBytes_GET_SIZE(value)
    for i in range(n):
        if not FIELD_VALUE_BYTE[p[i]]:
            raise ValueError(f"invalid byte in response header {name!r}")
    return 0


cdef inline int _append_bytes(Buffer* out, bytes data) except -1:
    if buffer_append(out, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data)) != 0:
        raise MemoryError()
    return 0


@cython.auto_pickle(False)
@cython.final
cdef class ResponseSerializer:
    """One server's response writer and its caches of encoded lines (GIL held, in the batch)."""
    cdef dict _status_lines           # status -> b"HTTP/1.1 200 OK\r\n"
    cdef dict _content_type_lines     # content type -> b"Content-Type: ...\r\n"
    cdef dict _field_lines            # (name, value) -> b"Name: value\r\n", or a Content-Length's int
    cdef readonly bytes server_field  # b"Server: fastcore\r\n"

    def __cinit__(self, str server_name):
        self._status_lines = {}
        self._content_type_lines = {}
        self._field_lines = {}
        self.server_field = b"Server: " + server_name.encode("latin-1") + b"\r\n"

    cdef bytes status_line(self, int status):
        line = self._status_lines.get(status)
        if line is None:
            _check_final_status(status)
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
            line = f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")
            self._status_lines[status] = line
        return line

    cdef bytes _content_type_line(self, object content_type):
        line = self._content_type_lines.get(content_type)
        if line is None:
            value = _as_latin1(content_type)
            _check_field(b"Content-Type", value)
            line = b"Content-Type: " + value + b"\r\n"
            if len(self._content_type_lines) < CONTENT_TYPE_CACHE_SIZE:
                self._content_type_lines[content_type] = line
        return line

    cdef int append_response(self, Worker* worker, Conn* conn, object result, bint head_only) except -1:
        """Serialize what the handler returned into the output: status line, fields, framing, body.

        Framing: a body of known length gets Content-Length; an iterable is streamed, chunked on
        HTTP/1.1 and close-delimited on 1.0, unless the handler declared a Content-Length, which
        is then honoured (the stream is capped at it, and a stream that falls short closes the
        connection). A declared Content-Length on HEAD is what a GET would carry."""
        cdef Buffer* out = &conn.output
        cdef size_t head_start = buffer_length(out)    # earlier pipelined responses may precede
        cdef Response response
        cdef int status = 200
        cdef object body, headers = None, content_type = None, reason = None
        cdef bint bodyless
        cdef long long declared_length = -1, body_length = 0
        cdef int own_fields = 0                         # OWN_* bits: fields the handler set itself
        if type(result) is Response:
            response = <Response>result
            status = response.status
            body = response.body
            headers = response.headers
            content_type = response.content_type
            reason = response.reason
        elif isinstance(result, (bytes, str)):
            body = result
        else:
            raise TypeError(f"a handler returns fastcore.Response, bytes or str, not {type(result).__name__}")
        stream = None
        file_span = None
        if isinstance(body, bytes):
            pass
        elif type(body) is FileWrapper and (file_span := (<FileWrapper>body).regular_file_span()) is not None:
            pass                                        # sent with sendfile(2) once the head is out
        elif isinstance(body, str):
            body = (<str>body).encode("utf-8")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif isinstance(body, (list, tuple)):
            body = b"".join([_as_body_bytes(part) for part in body])    # known length
        else:
            stream = iter(body)                         # unknown length: streamed

        if reason is None:
            _append_bytes(out, self.status_line(status))
        else:
            _append_bytes(out, _custom_status_line(status, reason))
        if content_type is not None:
            _append_bytes(out, self._content_type_line(content_type))
        if headers:
            check_response_field_count(headers)
            declared_length = self._append_fields(out, conn, headers, &own_fields)
        # Server and Date come after the handler's fields so that a handler's own (Flask's
        # send_file sets Date) replaces ours instead of doubling it, as waitress and granian do;
        # a handler that sets neither pays two bit tests.
        if not (own_fields & OWN_SERVER_FIELD):
            if buffer_append(out, worker.server.server_field, worker.server.server_field_length) != 0:
                raise MemoryError()
        if not (own_fields & OWN_DATE_FIELD):
            if buffer_append(out, worker.date.line, worker.date.length) != 0:
                raise MemoryError()

        bodyless = status < 200 or status == 204 or status == 304
        conn.stream_remaining = -1
        if bodyless:
            pass
        elif file_span is not None:
            body_length = file_span[2]
            if declared_length >= 0:
                if declared_length > body_length:
                    raise ValueError(f"Content-Length {declared_length} is more than the file's "
                                     f"{body_length} remaining bytes")
                body_length = declared_length
                file_span = (file_span[0], file_span[1], body_length)
        elif stream is not None:
            body_length = declared_length
            conn.stream_remaining = declared_length
        else:
            body_length = len(body)
            if declared_length >= 0 and not head_only:
                if declared_length > body_length:
                    raise ValueError(f"Content-Length {declared_length} is more than the body's {body_length} bytes")
                if declared_length < body_length:       # never send more than was declared
                    body = (<bytes>body)[:declared_length]
                body_length = declared_length
            elif declared_length >= 0:
                body_length = declared_length           # HEAD: what the GET would carry
        if not bodyless:
            if body_length >= 0:
                if (buffer_append(out, b"Content-Length: ", 16) != 0 or buffer_append_decimal(out, body_length) != 0
                        or buffer_append(out, b"\r\n", 2) != 0):
                    raise MemoryError()
            elif conn.request.version_minor == 1:
                _append_bytes(out, b"Transfer-Encoding: chunked\r\n")
            else:
                conn_close_after(conn, CLOSE_AFTER_RESPONSE)    # HTTP/1.0: the close delimits the body
        if append_connection_field(out, conn) != 0 or buffer_append(out, b"\r\n", 2) != 0:
            raise MemoryError()
        check_response_head_size(buffer_length(out) - head_start)

        if file_span is not None:
            if bodyless or head_only or file_span[2] == 0:
                _close_iterable(body)                   # nothing of it goes out
            else:
                held_body_acquire(worker, conn, HELD_FILE, body, None)
                conn.sendfile_fd = file_span[0]
                conn.sendfile_offset = file_span[1]
                conn.sendfile_remaining = file_span[2]
        elif stream is not None:
            if bodyless or head_only or conn.stream_remaining == 0:
                _close_iterable(body)                   # no body goes out; the iterable is closed
            else:
                held_body_acquire(worker, conn, HELD_STREAM, body, stream)
                conn.stream_chunked = body_length < 0 and conn.request.version_minor == 1
                self.pull_stream(worker, conn)
        elif bodyless or head_only:
            pass
        elif body_length >= ZERO_COPY_BODY_MIN:
            # Sent from the bytes object itself, after the head, without the GIL: bytes are
            # immutable and the reference held here keeps the memory where it is.
            held_body_acquire(worker, conn, HELD_BYTES, body, None)
            conn.body_data = PyBytes_AS_STRING(<bytes>body)
            conn.body_remaining = <size_t>body_length
        else:
            _append_bytes(out, <bytes>body)
        count_response(worker, status)                  # only once the response is sure to go out
        return 0

    cdef long long _append_fields(self, Buffer* out, Conn* conn, object headers, int* own_fields) except -2:
        """Append the handler's header fields; returns its Content-Length (-1 when none).
        Content-Length and Transfer-Encoding are left for the framing, Connection: close is
        obeyed, a Server or Date field sets its OWN_* bit in own_fields (the server then leaves
        its own out). A (name, value) tuple of str or bytes seen before is not validated and
        encoded again: _field_lines maps it to its line (or, for Content-Length, to its value);
        Server and Date lines are never cached, so that the bit is always set."""
        cdef long long declared_length = -1
        cdef bytes name, value, lowered, line
        cdef bint cacheable
        for item in (headers.items() if isinstance(headers, dict) else headers):
            cacheable = (type(item) is tuple and PyTuple_GET_SIZE(item) == 2
                         and (type(item[0]) is str or type(item[0]) is bytes)
                         and (type(item[1]) is str or type(item[1]) is bytes))
            if cacheable:
                cached = self._field_lines.get(item)
                if cached is not None:
                    if type(cached) is bytes:
                        _append_bytes(out, <bytes>cached)
                    else:
                        declared_length = cached
                    continue
                cacheable = len(self._field_lines) < FIELD_CACHE_SIZE
            field_name, field_value = item
            name = _as_latin1(field_name)
            value = _as_latin1(field_value)
            _check_field(name, value)
            lowered = name.lower()
            if lowered == b"content-length":
                declared_length = _declared_length(value)
                if cacheable:
                    self._field_lines[item] = declared_length
                continue                                # written with the framing, once
            if lowered == b"transfer-encoding":
                continue                                # framing is ours to decide
            if lowered == b"connection":
                if b"close" in value.lower():
                    conn_close_after(conn, CLOSE_AFTER_RESPONSE)
                continue
            if lowered == b"server":
                own_fields[0] |= OWN_SERVER_FIELD
                cacheable = False
            elif lowered == b"date":
                own_fields[0] |= OWN_DATE_FIELD
                cacheable = False
            line = name + b": " + value + b"\r\n"
            _append_bytes(out, line)
            if cacheable:
                self._field_lines[item] = line
        return declared_length

    cdef void pull_stream(self, Worker* worker, Conn* conn) noexcept:
        """Append the next parts of a streamed body to the output and send each as it comes (a
        server-sent-events generator must not wait for a buffer to fill), until the socket is
        full, STREAM_HIGH_WATER bytes wait, or the body ends. An exception mid-body cannot become
        a 500 any more: the connection closes without the last chunk, so the client sees the body
        is incomplete."""
        cdef Buffer* out = &conn.output
        cdef object iterator = <object>conn.held.iterator
        cdef bytes part
        cdef bint progressed = False
        cdef SendResult sent
        try:
            while buffer_length(out) < STREAM_HIGH_WATER:
                item = next(iterator, _END_OF_STREAM)
                if item is _END_OF_STREAM:
                    if conn.stream_chunked:
                        _append_bytes(out, b"0\r\n\r\n")
                    elif conn.stream_remaining > 0:
                        _error_log.error("a streamed body ended %d bytes short of its Content-Length; "
                                         "closing the connection", conn.stream_remaining)
                        conn_close_after(conn, CLOSE_AFTER_RESPONSE)
                    held_body_release(worker.server.debug_counters, &conn.held)
                    return
                if item is _STREAM_PAUSED:
                    return                              # the rest when the ASGI app sends it
                part = _as_body_bytes(item)
                if not part:
                    continue
                if conn.stream_chunked:
                    _append_bytes(out, b"%x\r\n" % len(part))
                    _append_bytes(out, part)
                    _append_bytes(out, b"\r\n")
                elif conn.stream_remaining >= 0:
                    if len(part) >= conn.stream_remaining:
                        _append_bytes(out, part[:conn.stream_remaining])     # never more than declared
                        conn.stream_remaining = 0
                        held_body_release(worker.server.debug_counters, &conn.held)
                        return
                    _append_bytes(out, part)
                    conn.stream_remaining -= len(part)
                else:
                    _append_bytes(out, part)
                with nogil:
                    sent = conn_send_available(worker, conn, &progressed)
                if sent != SEND_DONE:
                    return                              # the flush after the batch takes it from here
        except BaseException:
            try:
                _error_log.exception("streamed response body failed; closing the connection")
            except BaseException:
                pass
            conn_close_after(conn, CLOSE_AFTER_RESPONSE)
            held_body_release(worker.server.debug_counters, &conn.held)


cdef void response_rollback(Worker* worker, Conn* conn, size_t output_length) noexcept:
    """Undo a response that failed half-way (GIL held): the output goes back to `output_length`
    bytes and a body it had started to hold is released, so the error answer that follows is the
    connection's only response."""
    buffer_truncate(&conn.output, output_length)
    if conn.held.kind != HELD_NONE:
        held_body_release(worker.server.debug_counters, &conn.held)
    conn.body_data = NULL
    conn.body_remaining = 0
    conn.sendfile_fd = -1
    conn.sendfile_remaining = 0

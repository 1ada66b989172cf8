# serve.pxi: from buffered request bytes to answers, in C.
#
# Theory of operation. serve_buffered_requests() walks the complete requests in a connection's
# input, in order, and appends each answer to its output: a static route's fixed response, a
# protocol error (then nothing after it is trusted: fail_request), or a 404 when there is no Python
# handler. At the first request for the Python handler it stops and says so (SERVE_NEEDS_PYTHON);
# the caller hands the connection to the worker's batch (protocol.pxi: conn_queue_for_python). It
# also stops while a response is still being sent from elsewhere than the output buffer (a zero-copy
# body, a file, a stream): pipelined requests wait for it. It reports what it did to the state
# machine (protocol.pxi), never decides a phase itself, and does no I/O.
#
# A request's framing is decided once its head is parsed (start_body): keep-alive, 100 Continue,
# Content-Length or chunked, and whether a body too large to hold (body_buffer_size) is streamed to
# the handler as it arrives instead of buffered whole.

cdef enum ServeResult:
    SERVE_DONE = 0                    # every complete request answered; waiting for more bytes
    SERVE_NEEDS_PYTHON = 1            # stopped at a request for the Python handler
    SERVE_CLOSE = 2                   # answer written; close once output is flushed

cdef enum:
    MAX_EMPTY_LINES_BEFORE_REQUEST = 8
    CHUNK_FRAMING_SLACK = 4096        # decoded chunk framing left in the buffer before it is dropped


cdef inline bint request_method_is(const Conn* conn, const char* method, size_t length) noexcept nogil:
    return conn.request.method_length == length and memcmp(conn.input.data + conn.input.start, method, length) == 0


cdef inline void finish_request(Conn* conn, size_t request_length) noexcept nogil:
    """The current request is answered: drop its bytes and get ready for the next one."""
    buffer_consume(&conn.input, request_length)
    conn.head_complete = False
    conn.body_streamed = False
    conn.continue_deferred = False
    conn.ws_upgrade = False
    conn.empty_lines_before_request = 0
    memset(&conn.scan, 0, sizeof(HeadScan))
    memset(&conn.request, 0, sizeof(ParsedRequest))


cdef ServeResult fail_request(Worker* worker, Conn* conn, int status) noexcept nogil:
    """Answer a protocol error with its status and close: the stream cannot be trusted after it."""
    conn_close_after(conn, CLOSE_LINGERING)
    append_error_response(worker, conn, status)
    access_log_error_response(worker, conn, status)
    conn_transition(worker, conn, EVENT_ANSWERED)
    return SERVE_CLOSE


cdef ServeResult serve_buffered_requests(Worker* worker, Conn* conn) noexcept nogil:
    cdef ServerState* server = worker.server
    cdef Py_ssize_t result
    cdef size_t available
    cdef const StaticRoute* route
    cdef bint head_only
    conn.serving_paused = False
    if conn.ws != NULL:
        return SERVE_DONE                               # frames, not requests (websocket.pxi)
    while True:
        if not conn_serves_more_requests(conn) and not conn.head_complete:
            return SERVE_CLOSE
        if conn_streams_body(conn) or conn.sendfile_fd >= 0 or conn.body_remaining:
            return SERVE_DONE                           # the response being sent comes first
        available = buffer_length(&conn.input)
        if not conn.head_complete and available and conn_pauses_serving(conn):
            return SERVE_DONE                           # the output goes out first (protocol.pxi)
        if not conn.head_complete:
            # RFC 9112 section 2.2: ignore empty lines received before a request line. They count as
            # the start of a head (its timer is not re-armed by them), and only a few are allowed.
            while (conn.scan.position == 0 and available >= 2 and conn.input.data[conn.input.start] == 13
                   and conn.input.data[conn.input.start + 1] == 10):
                buffer_consume(&conn.input, 2)
                available -= 2
                conn.empty_lines_before_request += 1
                if conn.empty_lines_before_request > MAX_EMPTY_LINES_BEFORE_REQUEST:
                    return fail_request(worker, conn, 400)
            if available == 0 or (available == 1 and conn.scan.position == 0
                                  and conn.input.data[conn.input.start] == 13):
                return SERVE_DONE                       # nothing yet, or a CR whose LF is still coming
            if conn.scan.position == 0:
                access_log_request_started(worker, conn)
            result = head_scan(conn.input.data + conn.input.start, available, &conn.scan, &server.limits)
            if result == PARSE_NEED_MORE:
                return SERVE_DONE
            if result < 0:
                return fail_request(worker, conn, <int>-result)
            result = parse_head(conn.input.data + conn.input.start, <size_t>result, &conn.request, &server.limits)
            if result < 0:
                return fail_request(worker, conn, <int>-result)
            fc_counter_add(&worker.counters.requests, 1)
            result = start_body(worker, conn, available)
            if result < 0:
                return fail_request(worker, conn, <int>-result)
            conn.head_complete = True

        if conn.request.chunked:
            result = chunked_decode(conn.input.data + conn.input.start, available, &conn.chunked_body, &server.limits)
            if result == PARSE_NEED_MORE:
                conn_drop_chunk_framing(conn)
                if (<int64_t>(conn.chunked_body.decoded_end - conn.chunked_body.body_start) > server.limits.body_buffer_size
                        and request_goes_to_python(worker, conn)):
                    conn.body_streamed = True           # too big to hold: the handler reads it as it comes
                    return SERVE_NEEDS_PYTHON
                return body_incomplete(worker, conn)
            if result < 0:
                return fail_request(worker, conn, <int>-result)
            conn.request.request_length = <size_t>result
            conn.request.body_length = conn.chunked_body.decoded_end - conn.request.head_length
        elif available < conn.request.request_length:
            if (conn.request.content_length > server.limits.body_buffer_size
                    and request_goes_to_python(worker, conn)):
                conn.body_streamed = True               # too big to hold: the handler reads it as it comes
                return SERVE_NEEDS_PYTHON
            # Make room for the whole body now, so it is read without repeated growth.
            if buffer_reserve(&conn.input, conn.request.request_length - available) != 0:
                return fail_request(worker, conn, 500)
            return body_incomplete(worker, conn)

        # A complete request: answer it.
        conn_request_complete(conn)
        if server.websockets and conn.request.version_minor == 1:
            result = ws_check_upgrade(worker, conn)     # websocket.pxi
            if result == 101:
                return SERVE_NEEDS_PYTHON               # the app accepts or refuses it
            if result == 1:
                return SERVE_DONE                       # a native route accepted it: frames follow
            if result:
                return ws_refuse_upgrade(worker, conn, <int>result)
        head_only = conn.request.is_head
        route = conn_static_route(worker, conn)
        if route != NULL:
            append_static_response(worker, conn, route, head_only)
            if server.access_log:
                access_log_core_response(worker, conn, route.status, 0 if head_only else route.body_length)
        elif server.has_python_handler:
            return SERVE_NEEDS_PYTHON
        else:
            append_error_response(worker, conn, 404)
            access_log_error_response(worker, conn, 404)
        conn_transition(worker, conn, EVENT_ANSWERED)
        finish_request(conn, conn.request.request_length)


cdef ServeResult body_incomplete(Worker* worker, Conn* conn) noexcept nogil:
    """A body the worker buffers is not all in yet: wait for more (SERVE_DONE), unless it has
    fallen below body_min_rate (timers.pxi), which is a 408 and a close. Checked after each read,
    so what the kernel held has been counted; a body that stalls is the BODY timer's."""
    cdef long long deadline = body_rate_deadline_ms(worker.server, conn)
    if deadline >= 0 and worker.now_ms >= deadline:
        fc_atomic_add64(&worker.server.body_rate_timeouts, 1)
        return fail_request(worker, conn, 408)
    return SERVE_DONE


cdef void conn_drop_chunk_framing(Conn* conn) noexcept nogil:
    """Drop the chunk-size lines, extensions and CRLFs the decoder has finished with. They lie dead
    between the decoded body and the bytes still to decode until the request ends, and a client
    sending 1-byte chunks with 4 KiB extensions would make a connection hold about 4,000 bytes per
    body byte: once they pass CHUNK_FRAMING_SLACK, the undecoded tail is moved down onto them, so
    a connection holds what its body decodes to (bounded by body_buffer_size or max_body_size)
    plus at most one chunk line and the slack, whatever the framing. The request's length (the
    decoder's read_offset at its end) then counts only the bytes still in the buffer."""
    cdef ChunkedBody* body = &conn.chunked_body
    cdef size_t dead = body.read_offset - body.decoded_end
    cdef char* request = conn.input.data + conn.input.start
    if dead < CHUNK_FRAMING_SLACK:
        return
    memmove(request + body.decoded_end, request + body.read_offset, buffer_length(&conn.input) - body.read_offset)
    conn.input.end -= dead
    body.read_offset = body.decoded_end


cdef const StaticRoute* conn_static_route(Worker* worker, Conn* conn) noexcept nogil:
    """The static route answering the current request (GET or HEAD on its exact path), or NULL."""
    if worker.server.route_count == 0:
        return NULL
    if not (conn.request.is_head or request_method_is(conn, "GET", 3)):
        return NULL
    return find_static_route(worker.server, conn.input.data + conn.input.start + conn.request.path_offset,
                             conn.request.path_length)


cdef inline bint request_goes_to_python(Worker* worker, Conn* conn) noexcept nogil:
    return worker.server.has_python_handler and conn_static_route(worker, conn) == NULL


cdef int start_body(Worker* worker, Conn* conn, size_t available) noexcept nogil:
    """The head is valid: decide keep-alive and how the body is framed, answer Expect.
    Returns 0 or -status."""
    cdef ParsedRequest* request = &conn.request
    conn_start_request(worker, conn)
    body_rate_start(conn, worker.now_ms, available - request.head_length)
    if request.expect_unknown:
        return -417
    if request.content_length > worker.server.limits.max_body_size:
        return -413                                     # refused before a byte of it is read
    if request.chunked:
        memset(&conn.chunked_body, 0, sizeof(ChunkedBody))
        conn.chunked_body.body_start = request.head_length
        conn.chunked_body.read_offset = request.head_length
        conn.chunked_body.decoded_end = request.head_length
    else:
        request.body_length = <size_t>request.content_length if request.content_length > 0 else 0
        request.request_length = request.head_length + request.body_length
    if (request.expect_continue and request.version_minor == 1 and available == request.head_length
            and (request.chunked or request.body_length > 0)):
        if request.content_length > worker.server.limits.body_buffer_size and request_goes_to_python(worker, conn):
            conn.continue_deferred = True               # streamed: sent only if the handler reads
            return 0
        # RFC 9110 10.1.1: the client waits for this before sending the body.
        if buffer_append(&conn.output, b"HTTP/1.1 100 Continue\r\n\r\n", 25) != 0:
            return -500
    return 0

# connection.pxi: one client connection inside its worker: read, answer, write, close.
#
# Theory of operation. A connection is READING (epoll waits for EPOLLIN) or WRITING (output the
# socket would not take yet; epoll waits for EPOLLOUT only, so a client that stops reading stops
# being read: backpressure). Each readable event does one recv into `input`, then
# serve_buffered_requests() answers every complete request found there, in order, appending the
# responses to `output`: static routes and errors right away, in C; at the first request for the
# Python handler it stops and the connection joins the worker's Python batch (python.pxi), which
# calls the handler and resumes serving. When the connection has nothing left to answer, its
# output leaves in one send() (pipelined responses included). Buffers are released when empty, so
# an idle keep-alive connection holds only this struct.

cdef enum ServeResult:
    SERVE_DONE = 0                    # every complete request answered; waiting for more bytes
    SERVE_NEEDS_PYTHON = 1            # stopped at a request for the Python handler
    SERVE_CLOSE = 2                   # answer written; close once output is flushed

cdef enum:
    READ_CHUNK = 16384
    LINGER_TIMEOUT_MS = 2000          # lingering close: at most this long (nginx lingering_timeout 5s)
    MAX_EMPTY_LINES_BEFORE_REQUEST = 8


cdef inline bint request_method_is(const Conn* conn, const char* method, size_t length) noexcept nogil:
    return conn.request.method_length == length and memcmp(conn.input.data + conn.input.start, method, length) == 0


cdef inline void finish_request(Conn* conn, size_t request_length) noexcept nogil:
    """The current request is answered: drop its bytes and get ready for the next one."""
    buffer_consume(&conn.input, request_length)
    conn.head_complete = False
    conn.body_streamed = False
    conn.continue_deferred = False
    conn.empty_lines_before_request = 0
    memset(&conn.scan, 0, sizeof(HeadScan))
    memset(&conn.request, 0, sizeof(ParsedRequest))


cdef ServeResult fail_request(Worker* worker, Conn* conn, int status) noexcept nogil:
    """Answer a protocol error with its status and close: the stream cannot be trusted after it."""
    conn.keep_alive = False
    conn.close_after_write = True
    conn.linger_on_close = True
    append_error_response(worker, conn, status)
    return SERVE_CLOSE


cdef ServeResult serve_buffered_requests(Worker* worker, Conn* conn) noexcept nogil:
    cdef ServerState* server = worker.server
    cdef Py_ssize_t result
    cdef size_t available
    cdef const StaticRoute* route
    cdef bint head_only
    while True:
        if conn.close_after_write:
            return SERVE_CLOSE
        if conn.stream != NULL or conn.sendfile_fd >= 0 or conn.body_remaining:
            return SERVE_DONE                           # the response being sent comes first
        available = buffer_length(&conn.input)
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
                if (<int64_t>(conn.chunked_body.decoded_end - conn.chunked_body.body_start) > server.limits.body_buffer_size
                        and request_goes_to_python(worker, conn)):
                    conn.body_streamed = True           # too big to hold: the handler reads it as it comes
                    return SERVE_NEEDS_PYTHON
                return SERVE_DONE
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
            return SERVE_DONE

        # A complete request: answer it.
        if not conn.keep_alive:
            conn.close_after_write = True
        head_only = conn.request.is_head
        route = conn_static_route(worker, conn)
        if route != NULL:
            append_static_response(worker, conn, route, head_only)
        elif server.has_python_handler:
            return SERVE_NEEDS_PYTHON
        else:
            append_error_response(worker, conn, 404)
        finish_request(conn, conn.request.request_length)


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
    if request.version_minor == 1:
        conn.keep_alive = not request.connection_close
    else:
        conn.keep_alive = request.connection_keep_alive and not request.connection_close
    if fc_atomic_load(&worker.stop_requested):
        conn.keep_alive = False                         # a stopping server answers, then closes
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


cdef void conn_finish(Worker* worker, Conn* conn) noexcept nogil:
    """The last response is out: close, or linger first if the client may still be sending.

    Closing a socket with unread input makes the kernel send RST, and an RST can destroy the
    response before the client has read it (the client is told 413, say, while still uploading).
    So after an error answer, or with request bytes left unread, we half-close (the client sees
    FIN after our response), then discard what it still sends until its FIN or LINGER_TIMEOUT_MS,
    and only then close: the lingering close of nginx and Apache."""
    if not conn.linger_on_close or conn.peer_closed:
        conn_close(worker, conn)
        return
    shutdown(conn.fd, SHUT_WR)
    conn.state = CONN_LINGERING
    buffer_release(&conn.input)
    buffer_release(&conn.output)
    conn_set_state_events(worker, conn, EPOLLIN)
    timer_arm(worker, conn, TIMER_LINGER)
    conn_discard_input(worker, conn)


cdef void conn_discard_input(Worker* worker, Conn* conn) noexcept nogil:
    """A lingering connection is readable: drop what came; close at the client's FIN."""
    cdef char discard[16384]
    cdef ssize_t n
    while True:
        n = recv(conn.fd, discard, sizeof(discard), MSG_DONTWAIT)
        if n > 0:
            fc_counter_add(&worker.counters.bytes_received, n)
            continue
        if n < 0 and errno == EINTR:
            continue
        if n < 0 and errno == EAGAIN:
            return
        conn.peer_closed = True                         # FIN (0) or an error: done lingering
        conn_close(worker, conn)
        return


cdef void conn_close(Worker* worker, Conn* conn) noexcept nogil:
    """Take the socket out of epoll, close it, and free everything the connection owns."""
    if conn.stream != NULL or conn.stream_owner != NULL:
        worker_orphan_stream(worker, conn)
    # Deregister explicitly: close() removes the fd from epoll only when no other descriptor of the
    # socket exists, and a fork()ed child (subprocess, before its exec) briefly holds copies of
    # them all. Without this, events for a freed Conn could arrive (epoll(7), "Q6").
    epoll_ctl(worker.epoll_fd, EPOLL_CTL_DEL, conn.fd, NULL)
    close(conn.fd)
    fc_atomic_add64(&worker.server.open_connections, -1)
    timer_unlink(worker, conn)
    buffer_release(&conn.input)
    buffer_release(&conn.output)
    if conn.previous != NULL:
        conn.previous.next = conn.next
    else:
        worker.connections = conn.next
    if conn.next != NULL:
        conn.next.previous = conn.previous
    worker.connection_count -= 1
    fc_debug_count(FC_LIVE_CONNECTIONS, -1)
    free(conn)


cdef void conn_set_state(Worker* worker, Conn* conn, ConnState state) noexcept nogil:
    if conn.state == state:
        return
    conn.state = state
    conn_set_state_events(worker, conn, EPOLLOUT if state == CONN_WRITING else EPOLLIN)


cdef inline void conn_set_state_events(Worker* worker, Conn* conn, uint32_t events) noexcept nogil:
    cdef epoll_event event
    event.events = events
    event.data.ptr = conn
    epoll_ctl(worker.epoll_fd, EPOLL_CTL_MOD, conn.fd, &event)


cdef enum SendResult:
    SEND_DONE = 0                     # the output is empty
    SEND_BLOCKED = 1                  # the socket takes no more now
    SEND_FAILED = 2                   # the client is gone (EPIPE, ECONNRESET)


cdef SendResult conn_send_available(Worker* worker, Conn* conn, bint* progressed) noexcept nogil:
    """Send what of the output (then of a large body, in the same sendmsg) the socket takes now,
    without waiting."""
    cdef ssize_t sent
    cdef size_t head
    cdef iovec parts[2]
    cdef msghdr message
    memset(&message, 0, sizeof(message))
    message.msg_iov = parts
    while buffer_length(&conn.output) or conn.body_remaining:
        head = buffer_length(&conn.output)
        message.msg_iovlen = 0
        if head:
            parts[0].iov_base = conn.output.data + conn.output.start
            parts[0].iov_len = head
            message.msg_iovlen = 1
        if conn.body_remaining:
            parts[message.msg_iovlen].iov_base = <void*>conn.body_data
            parts[message.msg_iovlen].iov_len = conn.body_remaining
            message.msg_iovlen += 1
        sent = sendmsg(conn.fd, &message, MSG_NOSIGNAL)
        if sent > 0:
            fc_counter_add(&worker.counters.bytes_sent, sent)
            progressed[0] = True
            if <size_t>sent <= head:
                buffer_consume(&conn.output, <size_t>sent)
            else:
                buffer_consume(&conn.output, head)
                conn.body_data += <size_t>sent - head
                conn.body_remaining -= <size_t>sent - head
                if conn.body_remaining == 0:
                    conn.body_data = NULL
                    if conn.stream_owner != NULL and conn.stream == NULL:
                        worker_orphan_stream(worker, conn)      # release the bytes at the next batch
        elif sent < 0 and errno == EINTR:
            continue
        elif sent < 0 and errno == EAGAIN:
            return SEND_BLOCKED
        else:
            conn.peer_closed = True
            return SEND_FAILED
    return SEND_DONE


cdef void conn_flush(Worker* worker, Conn* conn) noexcept nogil:
    """Send the pending output; close, go back to reading, or wait for EPOLLOUT."""
    cdef bint progressed = False
    cdef bint body_pending
    cdef SendResult sent
    cdef ServeResult result
    while True:
        body_pending = conn.body_remaining != 0 or conn.sendfile_fd >= 0
        sent = conn_send_available(worker, conn, &progressed)
        if sent == SEND_BLOCKED:
            conn_set_state(worker, conn, CONN_WRITING)
            if progressed or conn.timer_kind != TIMER_WRITE:
                timer_arm(worker, conn, TIMER_WRITE)    # the client must keep taking bytes
            return
        if sent == SEND_FAILED:
            conn_close(worker, conn)
            return
        if conn.sendfile_fd >= 0 and not conn_send_file(worker, conn, progressed):
            return
        if not (body_pending and buffer_length(&conn.input) and not conn.close_after_write
                and conn.stream == NULL):
            break
        # Requests pipelined behind a large body or a file waited for it: answer them now (in
        # this loop, not by recursion: a long pipeline of large responses must not grow the stack).
        result = serve_buffered_requests(worker, conn)
        if result == SERVE_NEEDS_PYTHON:
            conn_set_state(worker, conn, CONN_READING)
            conn_queue_for_python(worker, conn)
            return
        if conn.peer_closed:
            conn.close_after_write = True
    if conn.stream != NULL:
        conn_set_state(worker, conn, CONN_READING)
        conn_queue_for_python(worker, conn)             # drained: pull the next part of the body
        return
    if conn.close_after_write:
        if buffer_length(&conn.input):
            conn.linger_on_close = True                 # pipelined bytes after a Connection: close
        conn_finish(worker, conn)
        return
    conn_set_state(worker, conn, CONN_READING)
    buffer_release_if_empty(&conn.output)
    buffer_release_if_empty(&conn.input)
    conn_arm_read_timer(worker, conn)


cdef enum:
    SENDFILE_STEP = 1 << 20           # bytes per sendfile call, so one big file cannot starve the loop


cdef bint conn_send_file(Worker* worker, Conn* conn, bint progressed) noexcept nogil:
    """Send the rest of a file body with sendfile(2), from the worker, without the GIL. Returns True
    when the file is done (its owner object is parked for close() under the GIL), False when the
    connection waits for EPOLLOUT or was closed."""
    cdef ssize_t sent
    cdef size_t step
    while conn.sendfile_remaining:
        step = conn.sendfile_remaining if conn.sendfile_remaining < SENDFILE_STEP else SENDFILE_STEP
        sent = sendfile(conn.fd, conn.sendfile_fd, &conn.sendfile_offset, step)
        if sent > 0:
            conn.sendfile_remaining -= <size_t>sent
            fc_atomic_add64(&worker.server.sendfile_bytes, sent)
            fc_counter_add(&worker.counters.bytes_sent, sent)
            progressed = True
        elif sent < 0 and errno == EINTR:
            continue
        elif sent < 0 and errno == EAGAIN:
            conn_set_state(worker, conn, CONN_WRITING)
            if progressed or conn.timer_kind != TIMER_WRITE:
                timer_arm(worker, conn, TIMER_WRITE)
            return False
        else:
            # The file shrank under us (0) or the client went away: the promised length cannot
            # be delivered, so the connection ends here.
            conn.sendfile_fd = -1
            conn_close(worker, conn)
            return False
    conn.sendfile_fd = -1
    worker_orphan_stream(worker, conn)                  # close() the file wrapper at the next batch
    return True


cdef void conn_arm_read_timer(Worker* worker, Conn* conn) noexcept nogil:
    """Pick the timeout for what the connection now waits on from the client."""
    if conn.head_complete:
        timer_arm(worker, conn, TIMER_BODY)             # re-armed by every read that brings body bytes
    elif buffer_length(&conn.input) or conn.empty_lines_before_request:
        if conn.timer_kind != TIMER_HEADER:
            timer_arm(worker, conn, TIMER_HEADER)       # once per head: trickling does not extend it
    else:
        timer_arm(worker, conn, TIMER_IDLE)


cdef void conn_queue_for_python(Worker* worker, Conn* conn) noexcept nogil:
    timer_arm(worker, conn, TIMER_NONE)                 # the handler's time is not the client's
    conn.awaiting_python = True
    conn.next_awaiting_python = NULL
    if worker.python_last != NULL:
        worker.python_last.next_awaiting_python = conn
    else:
        worker.python_first = conn
    worker.python_last = conn


cdef void worker_orphan_stream(Worker* worker, Conn* conn) noexcept nogil:
    """A connection with a streamed body is closing, and the body's iterator must be closed and
    released under the GIL: park it for the next Python batch (or Core.release)."""
    cdef void** grown
    cdef int capacity
    if worker.orphaned_count + 2 > worker.orphaned_capacity:
        capacity = worker.orphaned_capacity * 2 if worker.orphaned_capacity else 16
        grown = <void**>realloc(worker.orphaned_streams, capacity * sizeof(void*))
        if grown == NULL:
            conn.stream = NULL                          # out of memory: leak rather than crash
            conn.stream_owner = NULL
            return
        worker.orphaned_streams = grown
        worker.orphaned_capacity = capacity
    worker.orphaned_streams[worker.orphaned_count] = conn.stream
    worker.orphaned_streams[worker.orphaned_count + 1] = conn.stream_owner
    worker.orphaned_count += 2
    conn.stream = NULL
    conn.stream_owner = NULL


cdef void conn_finish_turn(Worker* worker, Conn* conn, ServeResult result) noexcept nogil:
    """After serving: queue for Python, or flush what was answered (and close if that is the end)."""
    if result == SERVE_NEEDS_PYTHON:
        conn_queue_for_python(worker, conn)
        return
    if conn.peer_closed:
        # The client sent its last byte: what is complete has been answered; a partial request
        # can never complete.
        conn.close_after_write = True
    conn_flush(worker, conn)


cdef void conn_on_readable(Worker* worker, Conn* conn) noexcept nogil:
    cdef ssize_t received
    if buffer_reserve(&conn.input, READ_CHUNK) != 0:
        conn_close(worker, conn)
        return
    received = recv(conn.fd, conn.input.data + conn.input.end, conn.input.capacity - conn.input.end, 0)
    if received > 0:
        conn.input.end += <size_t>received
        fc_counter_add(&worker.counters.bytes_received, received)
    elif received == 0:
        conn.peer_closed = True
    elif errno == EAGAIN or errno == EINTR:
        buffer_release_if_empty(&conn.input)
        return
    else:
        conn.peer_closed = True
        conn_close(worker, conn)
        return
    conn_finish_turn(worker, conn, serve_buffered_requests(worker, conn))


cdef int conn_receive_blocking(Worker* worker, Conn* conn, int timeout_ms) noexcept nogil:
    """For a body reader inside a handler (the worker thread is busy there anyway): send what
    output is pending (a 100 Continue, earlier pipelined responses), then wait up to timeout_ms for
    body bytes and append them to the input. Returns bytes received, 0 on timeout, -1 when the
    client closed or failed."""
    cdef pollfd waiting
    cdef ssize_t n
    cdef size_t pending
    cdef bint progressed = False
    cdef SendResult sent
    waiting.fd = conn.fd
    while True:
        pending = buffer_length(&conn.output)
        sent = conn_send_available(worker, conn, &progressed)
        conn.output_sent_early += pending - buffer_length(&conn.output)
        if sent == SEND_DONE:
            break
        if sent == SEND_FAILED:
            return -1
        waiting.events = POLLOUT
        if poll(&waiting, 1, timeout_ms) == 0:
            return 0
    if buffer_reserve(&conn.input, READ_CHUNK) != 0:
        return -1
    while True:
        n = recv(conn.fd, conn.input.data + conn.input.end, conn.input.capacity - conn.input.end, 0)
        if n > 0:
            conn.input.end += <size_t>n
            fc_counter_add(&worker.counters.bytes_received, n)
            return <int>n
        if n == 0:
            conn.peer_closed = True
            return -1
        if errno == EINTR:
            continue
        if errno != EAGAIN:
            conn.peer_closed = True
            return -1
        waiting.events = POLLIN
        n = poll(&waiting, 1, timeout_ms)
        if n == 0:
            return 0
        if n < 0 and errno != EINTR:
            return -1


cdef void conn_adopt(Worker* worker, const AcceptedConn* accepted) noexcept nogil:
    """Take a freshly accepted socket into this worker's epoll set and try reading at once: the
    client usually sent its request right after connecting, so this saves an epoll round."""
    cdef epoll_event event
    cdef int fd = accepted.fd
    cdef Conn* conn = <Conn*>calloc(1, sizeof(Conn))
    if conn == NULL:
        close(fd)
        fc_atomic_add64(&worker.server.open_connections, -1)
        return
    fc_debug_count(FC_LIVE_CONNECTIONS, 1)
    conn.fd = fd
    conn.peer = accepted.peer
    conn.sendfile_fd = -1
    conn.state = CONN_READING
    conn.input.bin = &worker.input_bin            # released blocks stay with the worker for reuse
    conn.output.bin = &worker.output_bin
    event.events = EPOLLIN
    event.data.ptr = conn
    if epoll_ctl(worker.epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0:
        close(fd)
        fc_atomic_add64(&worker.server.open_connections, -1)
        fc_debug_count(FC_LIVE_CONNECTIONS, -1)
        free(conn)
        return
    conn.next = worker.connections
    if worker.connections != NULL:
        worker.connections.previous = conn
    worker.connections = conn
    worker.connection_count += 1
    timer_arm(worker, conn, TIMER_HEADER)               # the first request is due
    conn_on_readable(worker, conn)


cdef inline bint conn_is_idle(const Conn* conn) noexcept nogil:
    """Between requests (nothing read, nothing owed) or lingering. Safe to close when stopping."""
    if conn.state == CONN_LINGERING:
        return True
    return (not conn.awaiting_python and conn.state == CONN_READING and buffer_length(&conn.input) == 0
            and buffer_length(&conn.output) == 0)

# connection.pxi: one client connection's I/O inside its worker: adopt, recv, send (sendmsg and
# sendfile), half-close, discard, close.
#
# Theory of operation. Each readable event does one recv into `input`; serve.pxi then answers
# every complete request found there, appending the responses to `output`; conn_flush() sends that
# output (pipelined responses included) in one sendmsg, a large body right after it from where it
# lies (no copy), and a file with sendfile(2). What happens next (wait for the next request, for
# the socket, for Python; linger; close) is the state machine's to decide (protocol.pxi): the
# functions here report events to it and never set a phase, a timer or the epoll interest
# themselves. Buffers are released when empty, so an idle keep-alive connection holds only its
# struct.

cdef enum:
    READ_CHUNK = 16384
    LINGER_TIMEOUT_MS = 2000          # lingering close: at most this long (nginx lingering_timeout 5s)


cdef void conn_half_close(Worker* worker, Conn* conn) noexcept nogil:
    """Our last answer is out: send FIN, drop the buffers, keep reading (to discard)."""
    shutdown(conn.fd, SHUT_WR)
    buffer_release(&conn.input)
    buffer_release(&conn.output)


cdef bint conn_discard_input(Worker* worker, Conn* conn) noexcept nogil:
    """A lingering connection is readable: drop what came; close at the client's FIN. True when
    the connection was closed (and freed)."""
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
            return False
        conn.peer_closed = True                         # FIN (0) or an error: done lingering
        conn_close(worker, conn)
        return True


cdef void conn_close(Worker* worker, Conn* conn) noexcept nogil:
    """Take the socket out of epoll, close it, and free everything the connection owns."""
    held_body_park(worker, conn)                        # released at the next batch
    if conn.ws != NULL:
        ws_detach(worker, conn)                         # the app learns it (1006 if nothing better)
    conn_transition(worker, conn, EVENT_CLOSE)          # off its timer list
    # Deregister explicitly: close() removes the fd from epoll only when no other descriptor of the
    # socket exists, and a fork()ed child (subprocess, before its exec) briefly holds copies of
    # them all. Without this, events for a freed Conn could arrive (epoll(7), "Q6").
    if conn.interest:
        epoll_ctl(worker.epoll_fd, EPOLL_CTL_DEL, conn.fd, NULL)
        fc_debug_count(worker.server.debug_counters, FC_EPOLL_REGISTRATIONS, -1)
    close(conn.fd)
    fc_debug_count(worker.server.debug_counters, FC_OPEN_FDS, -1)
    fc_atomic_add64(&worker.server.open_connections, -1)
    buffer_release(&conn.input)
    buffer_release(&conn.output)
    if conn.previous != NULL:
        conn.previous.next = conn.next
    else:
        worker.connections = conn.next
    if conn.next != NULL:
        conn.next.previous = conn.previous
    fc_count_add(&worker.connection_count, -1)          # stats() reads it on another thread
    fc_debug_count(worker.server.debug_counters, FC_LIVE_CONNECTIONS, -1)
    free(conn)


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
                    if conn.held.kind == HELD_BYTES:
                        held_body_park(worker, conn)            # release the bytes at the next batch
        elif sent < 0 and errno == EINTR:
            continue
        elif sent < 0 and errno == EAGAIN:
            return SEND_BLOCKED
        else:
            conn.peer_closed = True
            return SEND_FAILED
    return SEND_DONE


cdef void conn_flush(Worker* worker, Conn* conn) noexcept nogil:
    """Send the pending output (bytes, then a large body or a file); when it is all out, answer
    requests that were pipelined behind a large body, then let the state machine say what next."""
    cdef bint progressed = False
    cdef bint body_pending
    cdef SendResult sent
    cdef ServeResult result
    while True:
        body_pending = conn.body_remaining != 0 or conn.sendfile_fd >= 0
        sent = conn_send_available(worker, conn, &progressed)
        if sent == SEND_BLOCKED:
            conn_transition(worker, conn, EVENT_OUTPUT_BLOCKED, progressed)     # the client must keep taking bytes
            return
        if sent == SEND_FAILED:
            conn_close(worker, conn)
            return
        if conn.sendfile_fd >= 0 and not conn_send_file(worker, conn, progressed):
            return
        if conn.phase == PHASE_SENDING:
            conn_transition(worker, conn, EVENT_OUTPUT_DRAINED)
        if not ((body_pending or conn.serving_paused) and buffer_length(&conn.input)
                and conn_serves_more_requests(conn) and not conn_streams_body(conn)):
            break
        # Requests pipelined behind a large body or a file, or behind a full output, waited for it:
        # answer them now (in this loop, not by recursion: a long pipeline of large responses must
        # not grow the stack).
        result = serve_buffered_requests(worker, conn)
        if result == SERVE_NEEDS_PYTHON:
            conn_queue_for_python(worker, conn, EVENT_TO_HANDLER)
            return
        if conn.peer_closed:
            conn_close_after(conn, CLOSE_AFTER_RESPONSE)
    conn_output_drained(worker, conn)


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
            conn_transition(worker, conn, EVENT_OUTPUT_BLOCKED, progressed)
            return False
        else:
            # The file shrank under us (0) or the client went away: the promised length cannot
            # be delivered, so the connection ends here.
            conn.sendfile_fd = -1
            conn_close(worker, conn)
            return False
    conn.sendfile_fd = -1
    held_body_park(worker, conn)                        # close() the file wrapper at the next batch
    return True


cdef void conn_finish_turn(Worker* worker, Conn* conn, ServeResult result) noexcept nogil:
    """After serving: queue for Python, or flush what was answered (and close if that is the end)."""
    if result == SERVE_NEEDS_PYTHON:
        conn_queue_for_python(worker, conn, EVENT_TO_HANDLER)
        return
    if conn.peer_closed:
        # The client sent its last byte: what is complete has been answered; a partial request
        # can never complete.
        conn_close_after(conn, CLOSE_AFTER_RESPONSE)
    conn_flush(worker, conn)


cdef void conn_on_readable(Worker* worker, Conn* conn) noexcept nogil:
    cdef ssize_t received
    if buffer_reserve(&conn.input, READ_CHUNK) != 0:
        conn_close(worker, conn)
        return
    received = recv(conn.fd, conn.input.data + conn.input.end, conn.input.capacity - conn.input.end, 0)
    if received > 0:
        conn.input.end += <size_t>received
        conn.bytes_in += received
        fc_counter_add(&worker.counters.bytes_received, received)
    elif received == 0:
        conn.peer_closed = True
    elif errno == EAGAIN or errno == EINTR:
        buffer_release_if_empty(&conn.input)
        if conn_watch(worker, conn) != 0:              # adopted before its request came (protocol.pxi (3))
            conn_close(worker, conn)
        return
    else:
        conn.peer_closed = True
        conn_close(worker, conn)
        return
    conn_finish_turn(worker, conn, serve_buffered_requests(worker, conn))


cdef int conn_receive_nowait(Worker* worker, Conn* conn) noexcept nogil:
    """For a body reader on the ASGI event loop (asgi.pxi), which must not block: send what output
    the socket takes now (a 100 Continue), then append what body bytes have arrived to the input.
    Returns bytes received, 0 when none are there yet, -1 when the client closed or failed."""
    cdef ssize_t n
    cdef bint progressed = False
    cdef size_t pending = buffer_length(&conn.output)
    if pending:
        if conn_send_available(worker, conn, &progressed) == SEND_FAILED:
            return -1
        conn.output_sent_early += pending - buffer_length(&conn.output)
    if buffer_reserve(&conn.input, READ_CHUNK) != 0:
        return -1
    while True:
        n = recv(conn.fd, conn.input.data + conn.input.end, conn.input.capacity - conn.input.end, MSG_DONTWAIT)
        if n > 0:
            conn.input.end += <size_t>n
            fc_counter_add(&worker.counters.bytes_received, n)
            return <int>n
        if n == 0:
            conn.peer_closed = True
            return -1
        if errno == EINTR:
            continue
        if errno == EAGAIN:
            return 0
        conn.peer_closed = True
        return -1


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
            conn.bytes_in += n
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
    """Take a freshly accepted socket into this worker and try reading at once: the client usually
    sent its request right after connecting, so this saves an epoll round; and it enters the epoll
    set only if it must wait (protocol.pxi (3)), so one answered and closed now costs no epoll_ctl.

    Its first head is due header_timeout after the accept (conn_accepted). One that waited in the
    queue that long (every worker was busy in a handler) is closed unread and counted
    (queue_expired), as a connection that sent nothing in that time is: we never read it, so there
    is no request to answer, and by now its client has likely given up."""
    cdef int fd = accepted.fd
    cdef long long header_ms = worker.timers[<int>TIMER_HEADER].duration_ms
    cdef Conn* conn
    if header_ms > 0 and worker.now_ms - accepted.accepted_ms >= header_ms:
        fc_atomic_add64(&worker.server.queue_expired, 1)   # before the close a client (a test) may see
        fc_atomic_add64(&worker.server.open_connections, -1)
        close(fd)
        return
    conn = <Conn*>calloc(1, sizeof(Conn))
    fc_debug_count(worker.server.debug_counters, FC_OPEN_FDS, 1)
    if conn == NULL:
        close(fd)
        fc_debug_count(worker.server.debug_counters, FC_OPEN_FDS, -1)
        fc_atomic_add64(&worker.server.open_connections, -1)
        return
    fc_debug_count(worker.server.debug_counters, FC_LIVE_CONNECTIONS, 1)
    conn.fd = fd
    conn.home = worker
    conn.peer = accepted.peer
    conn.sendfile_fd = -1
    conn.input.bin = &worker.input_bin            # released blocks stay with the worker for reuse
    conn.output.bin = &worker.output_bin
    conn_accepted(worker, conn, accepted.accepted_ms)  # the first request is due
    conn.next = worker.connections
    if worker.connections != NULL:
        worker.connections.previous = conn
    worker.connections = conn
    fc_count_add(&worker.connection_count, 1)           # stats() reads it on another thread
    conn_on_readable(worker, conn)

# batch.pxi: the Python batch: where a thread takes the GIL and calls the handler.
#
# Two modes. Inline (handler_threads = 0): each I/O worker runs its own batch at the end of its loop
# turn, as below. Handler threads (handler_threads = N): the I/O workers never take the GIL; N
# Python threads run handler_thread_run(), taking connections from the bridge (bridge.pxi) one at
# a time and handing each back to its worker as soon as its handler returns, so a slow handler
# holds one handler thread, not an I/O worker and the connections it serves.
#
# Inline mode. worker_run_python_batch() is the only place a worker thread takes the GIL
# (a `with gil` trampoline into batch_run). It runs once per loop turn, when connections wait in
# the worker's FIFO (protocol.pxi: conn_queue_for_python) or held bodies wait to be released
# (serializer.pxi). It first releases the parked bodies, then takes the connections in order, and
# for each: calls the handler for its request (batch_answer), or pulls the next parts of its
# streamed body (ResponseSerializer.pull_stream), reports ANSWERED to the state machine, and goes
# on serving the connection's pipelined requests in C until one needs Python again. It stops after
# `python_batch` calls, so one busy worker does not hold the GIL long; a connection the budget
# leaves stays first in the FIFO and the next turn's epoll_wait does not block. The connections it
# answered are flushed by the worker after the GIL is released (worker.pxi).
#
# batch_answer() copies the request's head and body out of the connection buffer into bytes (the
# buffer may move once the GIL is released), calls the handler (or the compiled WSGI path for the
# Dispatch's adapter, wsgi.pxi), and has the serializer write the result into the output. Every
# exception stops here: a RequestBodyError is answered with its status and a close, anything else
# with a 500 and a line on the "fastcore.error" logger, after the half-written response is rolled
# back.


cdef void worker_run_python_batch(Worker* worker) noexcept with gil:
    batch_run(<Core>worker.server.core, worker)


cdef void batch_run(Core core, Worker* worker) noexcept:
    cdef int budget = worker.server.python_batch
    cdef Conn* conn
    cdef WsChannel* ready
    cdef ServeResult result = SERVE_DONE
    worker.flush_after_python_count = 0
    release_parked_bodies(worker)
    while worker.python_first != NULL and budget > 0:
        conn = worker.python_first
        while True:
            batch_answer_one(core, worker, worker, conn)
            budget -= 1
            result = serve_buffered_requests(worker, conn)
            if result != SERVE_NEEDS_PYTHON:
                break
            conn_transition(worker, conn, EVENT_TO_HANDLER)     # the next pipelined request
            if budget == 0:
                break
        if result == SERVE_NEEDS_PYTHON:
            break                                   # budget spent; this one goes first next turn
        worker.python_first = conn.next_awaiting_python
        if worker.python_first == NULL:
            worker.python_last = NULL
        conn.next_awaiting_python = NULL
        worker.flush_after_python[worker.flush_after_python_count] = conn
        worker.flush_after_python_count += 1
    if worker.ws_python_first != NULL:              # native WebSockets' callbacks (websocket_native.pxi)
        ready = worker.ws_python_first
        worker.ws_python_first = NULL
        worker.ws_python_last = NULL
        native_ws_deliver_list(core, ready)


cdef void handler_thread_run(Core core, Worker* context) noexcept:
    """A handler thread (handler_threads > 0; bridge.pxi): take a connection from the bridge (the
    GIL released while waiting), call Python for it, and hand it back to its worker as soon as its
    handler returns; one at a time (bridge.pxi says why). `context` is this thread's own Worker:
    its Date line, counters, bins and parked bodies; the connection's own worker is conn.home."""
    cdef Conn* conn = NULL
    cdef Worker* home
    cdef WsChannel* ready
    cdef int taken
    while True:
        with nogil:
            taken = bridge_take(context, &conn, &ready)
        release_parked_bodies(context)
        if ready != NULL:
            native_ws_deliver_list(core, ready)     # native WebSockets' callbacks (websocket_native.pxi)
        if taken < 0:
            return                                  # stopped
        if taken == 0:
            continue                                # only bodies to release came
        context.now_ms = fc_now_ms()
        date_refresh(&context.date)
        home = conn.home
        conn.input.bin = &context.input_bin         # its buffers are this thread's while it is here
        conn.output.bin = &context.output_bin
        batch_answer_one(core, context, home, conn)
        conn.input.bin = &home.input_bin
        conn.output.bin = &home.output_bin
        inbox_push(conn)                            # the response leaves now


cdef void batch_answer_one(Core core, Worker* context, Worker* home, Conn* conn) noexcept:
    """One connection's turn with Python, in either mode: answer its request with the handler, or
    pull its streamed body's next parts, or, past the stop's deadline (kept by `home`, its I/O
    worker), cut it; then report ANSWERED (the phase only: FLUSHING keeps epoll and timer, so a
    handler thread may report it). `context` is what the call works with: the worker itself inline,
    the handler thread's context otherwise. A handler that returns after the deadline has overrun
    it: counted (Server.stop then reports the stop as not clean), and its connection closes after
    the response."""
    if stop_deadline_passed(home):
        batch_cut_at_deadline(context, conn)        # no handler starts after the deadline
    else:
        if conn_streams_body(conn):
            core.serializer.pull_stream(context, conn)
        else:
            batch_answer(core, context, conn)
        if stop_deadline_passed(home):
            fc_atomic_add64(&context.server.handlers_past_deadline, 1)
            conn_close_after(conn, CLOSE_LINGERING)
    conn_transition(context, conn, EVENT_ANSWERED)


cdef inline bint stop_deadline_passed(Worker* worker) noexcept nogil:
    return fc_atomic_load(&worker.stop_requested) and fc_now_ms() >= fc_atomic_load64(&worker.stop_deadline_ms)


cdef void batch_cut_at_deadline(Worker* worker, Conn* conn) noexcept:
    """A stop's deadline has passed: a request still waiting for the handler is answered 503 and
    the connection closes; a streamed response body is cut off (closed without its end). Counted,
    so stop() can say how many requests its deadline cut."""
    fc_atomic_add64(&worker.server.requests_cut_at_stop, 1)
    conn_close_after(conn, CLOSE_LINGERING)
    if conn_streams_body(conn):
        held_body_release(worker.server.debug_counters, &conn.held)
        return
    append_error_response(worker, conn, 503)
    finish_request(conn, buffer_length(&conn.input))


cdef void batch_answer(Core core, Worker* worker, Conn* conn) noexcept:
    cdef const char* data = conn.input.data + conn.input.start
    cdef ParsedRequest* parsed = &conn.request
    cdef size_t body_length = parsed.body_length
    cdef size_t output_before = buffer_length(&conn.output)
    cdef bint head_only = parsed.is_head
    cdef Request request = Request.__new__(Request)
    cdef BodyReader reader = None
    cdef bint for_wrapper = request_for_wrapper(core, data, parsed)
    request._head = PyBytes_FromStringAndSize(data, parsed.head_length)
    if conn.body_streamed:
        reader = BodyReader.__new__(BodyReader)
        request._reader = reader
    else:
        request._body = PyBytes_FromStringAndSize(data + parsed.head_length, body_length) if body_length else _EMPTY
    request.keep_alive = conn.keep_alive
    request._method_length = parsed.method_length
    request._target_offset = parsed.target_offset
    request._target_length = parsed.target_length
    request._path_offset = parsed.path_offset
    request._path_length = parsed.path_length
    request._version_minor = parsed.version_minor
    request._peer = conn.peer
    request._proxies = core.proxies
    if reader is not None:
        reader.attach(worker, conn)                 # the head leaves the buffer here
        conn.output_sent_early = 0
    try:
        if core.wsgi is not None and not for_wrapper:
            result = wsgi_answer(core.wsgi, request)
        else:
            result = core.handler(request)
        if fc_atomic_load(&worker.stop_requested):
            conn_close_after(conn, CLOSE_AFTER_RESPONSE)    # stop() came while the handler ran
        if reader is not None:
            end_streamed_body(conn, reader)
        core.serializer.append_response(worker, conn, result, head_only)
    except BaseException as error:
        if reader is not None:
            end_streamed_body(conn, reader)
            output_before -= min(output_before, conn.output_sent_early)
        response_rollback(worker, conn, output_before)
        if isinstance(error, RequestBodyError):
            conn_close_after(conn, CLOSE_AFTER_RESPONSE)
            append_error_response(worker, conn, error.status)
        else:
            try:
                _error_log.exception("handler failed on %r", request)
            except BaseException:
                pass
            append_error_response(worker, conn, 500)
    finish_request(conn, 0 if reader is not None else parsed.request_length)


cdef void end_streamed_body(Conn* conn, BodyReader reader) noexcept:
    """The handler is done with a streamed body. Unread body bytes cannot be told from the next
    request without reading them all, so a connection whose body was not read to the end closes
    after the response."""
    if reader.conn == NULL:
        return
    reader.detach()
    if not reader.finished:
        conn_close_after(conn, CLOSE_LINGERING)


cdef bint request_for_wrapper(Core core, const char* data, ParsedRequest* parsed) noexcept:
    """Is this request for the path the handler's wrapper answers itself (Dispatch.wrapper_path,
    compared as request.path)?"""
    cdef Py_ssize_t length
    if core.wsgi_bypass_path is None:
        return False
    length = PyBytes_GET_SIZE(core.wsgi_bypass_path)
    if parsed.path_length == 0:
        return length == 1 and PyBytes_AS_STRING(core.wsgi_bypass_path)[0] == 47      # "/"
    return (<Py_ssize_t>parsed.path_length == length
            and memcmp(data + parsed.path_offset, PyBytes_AS_STRING(core.wsgi_bypass_path), length) == 0)

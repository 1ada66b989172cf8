# bridge.pxi: handler-thread mode: I/O workers hand connections to Python threads and take them back.
#
# Theory of operation. With handler_threads = N > 0, the I/O workers never take the GIL: Python
# runs on N handler threads beside them. A connection whose request needs Python (TO_HANDLER) or
# whose streamed body wants its next part (STREAM_MORE) is appended by its worker to the bridge: a
# FIFO of connections under one mutex, with a condition variable the handler threads sleep on. From
# then until it comes back, the connection belongs to the handler thread that takes it:
#
#   * no timer runs for it, and the worker marks it `with_handler_thread` and reads nothing else of
#     it until it comes back; it stays in the worker's epoll set until an event for it arrives,
#     which takes it out (protocol.pxi (1): the common keep-alive turn then makes no epoll_ctl);
#   * the handler thread works on it with a Worker of its own (a "handler context": its own Date
#     line, counters, buffer bins and parked bodies), so nothing it touches is shared with an I/O
#     worker; the connection's buffers use that context's bins while it is there.
#
# A handler thread takes one connection at a time (batch.pxi: handler_thread_run), calls Python
# for it, and hands it back to its home worker's inbox as soon as its handler returns: one mutex,
# and a write to the worker's wake eventfd when the inbox was empty. One at a time, because a
# request taken in a batch waits for the handlers before it in that batch: with a blocking app (one
# request in ten sleeping 100 ms, 4 threads, bench "blocking"), batches of up to python_batch put
# p99 at 140-170 ms, one at a time at 101 ms, for the same req/s, and a hello-world keep-alive run
# lost nothing measurable (87k vs 85k req/s, one run each). The worker drains its inbox when woken and goes on
# as after an inline batch: serve what is pipelined behind (which may hand it over again), send.
#
# Python objects: an I/O worker parks the held bodies it is done with (serializer.pxi) as in
# inline mode, but cannot release them: at the end of its loop turn it moves them onto the
# bridge, and the next handler thread to wake releases them under the GIL.
#
# Stop: handler threads run until Core.stop_handlers() (after the I/O workers have returned: they
# wait for every connection a handler thread holds). No handler starts after the stop's deadline
# (batch.pxi); a handler that never returns keeps its connection, its worker and the stop waiting,
# as in inline mode.


cdef int bridge_init(Bridge* bridge) noexcept nogil:
    memset(bridge, 0, sizeof(Bridge))
    bridge.notify_fd = -1
    if pthread_mutex_init(&bridge.lock, NULL) != 0:
        return -1
    if pthread_cond_init(&bridge.ready, NULL) != 0:
        pthread_mutex_destroy(&bridge.lock)
        return -1
    return 0


cdef void bridge_destroy(Bridge* bridge) noexcept nogil:
    pthread_cond_destroy(&bridge.ready)
    pthread_mutex_destroy(&bridge.lock)
    free(bridge.parked)
    bridge.parked = NULL
    if bridge.notify_fd >= 0:
        close(bridge.notify_fd)
        bridge.notify_fd = -1


cdef inline bint bridge_empty(const Bridge* bridge) noexcept nogil:
    return bridge.first == NULL and bridge.parked_count == 0 and bridge.ws_ready_first == NULL


cdef inline void bridge_notify(Bridge* bridge, bint was_empty) noexcept nogil:
    """ASGI (asgi.pxi): wake the event loop, only when the bridge has just stopped being empty (the
    loop takes everything at each wake-up, so one write per batch)."""
    cdef uint64_t one = 1
    if was_empty and bridge.notify_fd >= 0:
        write(bridge.notify_fd, &one, sizeof(one))


cdef void bridge_push(Worker* worker, Conn* conn) noexcept nogil:
    """Hand `conn` (already in HANDLER or STREAMING) to the handler threads (or the ASGI loop)."""
    cdef Bridge* bridge = &worker.server.bridge
    cdef bint was_empty
    conn.with_handler_thread = True
    conn.next_awaiting_python = NULL
    pthread_mutex_lock(&bridge.lock)
    was_empty = bridge_empty(bridge)
    if bridge.last != NULL:
        bridge.last.next_awaiting_python = conn
    else:
        bridge.first = conn
    bridge.last = conn
    pthread_cond_signal(&bridge.ready)          # no system call when no handler thread waits
    pthread_mutex_unlock(&bridge.lock)
    bridge_notify(bridge, was_empty)


cdef void bridge_park_bodies(Worker* worker) noexcept nogil:
    """Move the worker's parked bodies onto the bridge, for a handler thread to release. Out of
    memory: they stay parked on the worker and are tried again next turn (or freed at release)."""
    cdef Bridge* bridge = &worker.server.bridge
    cdef HeldBody* grown
    cdef int capacity
    cdef bint was_empty
    pthread_mutex_lock(&bridge.lock)
    was_empty = bridge_empty(bridge)
    if bridge.parked_count + worker.parked_count > bridge.parked_capacity:
        capacity = bridge.parked_capacity * 2 if bridge.parked_capacity else 16
        while capacity < bridge.parked_count + worker.parked_count:
            capacity *= 2
        grown = <HeldBody*>realloc(bridge.parked, capacity * sizeof(HeldBody))
        if grown == NULL:
            pthread_mutex_unlock(&bridge.lock)
            return
        bridge.parked = grown
        bridge.parked_capacity = capacity
    memcpy(bridge.parked + bridge.parked_count, worker.parked_bodies, worker.parked_count * sizeof(HeldBody))
    bridge.parked_count += worker.parked_count
    worker.parked_count = 0
    pthread_cond_signal(&bridge.ready)
    pthread_mutex_unlock(&bridge.lock)
    bridge_notify(bridge, was_empty)


cdef void bridge_move_parked_locked(Bridge* bridge, Worker* context) noexcept nogil:
    """With the bridge's lock held: move every parked body into `context`'s parked list (out of
    memory: they wait on the bridge for another try)."""
    cdef HeldBody* grown
    cdef int capacity
    if bridge.parked_count and context.parked_count + bridge.parked_count > context.parked_capacity:
        capacity = context.parked_capacity * 2 if context.parked_capacity else 16
        while capacity < context.parked_count + bridge.parked_count:
            capacity *= 2
        grown = <HeldBody*>realloc(context.parked_bodies, capacity * sizeof(HeldBody))
        if grown != NULL:
            context.parked_bodies = grown
            context.parked_capacity = capacity
    if bridge.parked_count and context.parked_count + bridge.parked_count <= context.parked_capacity:
        memcpy(context.parked_bodies + context.parked_count, bridge.parked, bridge.parked_count * sizeof(HeldBody))
        context.parked_count += bridge.parked_count
        bridge.parked_count = 0


cdef Conn* bridge_take_all(Worker* context, WsChannel** ws_ready) noexcept nogil:
    """For the ASGI event loop (asgi.pxi): take every waiting connection (returned as a list linked
    by next_awaiting_python, in order), every WebSocket with news (into ws_ready, linked by
    next_ready) and every parked body (into context's parked list), without waiting."""
    cdef Bridge* bridge = &context.server.bridge
    cdef Conn* first
    pthread_mutex_lock(&bridge.lock)
    first = bridge.first
    bridge.first = NULL
    bridge.last = NULL
    ws_ready[0] = bridge.ws_ready_first
    bridge.ws_ready_first = NULL
    bridge.ws_ready_last = NULL
    bridge_move_parked_locked(bridge, context)
    if bridge.parked_count:
        bridge_notify(bridge, True)             # left behind (out of memory): try again soon
    pthread_mutex_unlock(&bridge.lock)
    return first


cdef int bridge_take(Worker* context, Conn** taken, WsChannel** ws_ready) noexcept nogil:
    """For a handler thread: wait until a connection waits (or bodies to release, native
    WebSockets with news, or the stop), then take the first connection, if any, every parked body
    (into context's parked list) and every ready WebSocket (into ws_ready, linked by next_ready).
    Returns 1 with `taken` set, 0 when only bodies or WebSockets came, -1 once stopped with nothing
    left."""
    cdef Bridge* bridge = &context.server.bridge
    cdef Conn* conn
    cdef int count = 0
    pthread_mutex_lock(&bridge.lock)
    while (bridge.first == NULL and bridge.parked_count == 0 and bridge.ws_ready_first == NULL
           and not bridge.stop):
        pthread_cond_wait(&bridge.ready, &bridge.lock)
    ws_ready[0] = bridge.ws_ready_first
    bridge.ws_ready_first = NULL
    bridge.ws_ready_last = NULL
    if bridge.first != NULL:
        conn = bridge.first
        bridge.first = conn.next_awaiting_python
        if bridge.first == NULL:
            bridge.last = NULL
        conn.next_awaiting_python = NULL
        taken[0] = conn
        count = 1
    bridge_move_parked_locked(bridge, context)
    if bridge.first != NULL or bridge.parked_count:
        pthread_cond_signal(&bridge.ready)      # more for another handler thread
    if count == 0 and bridge.stop and bridge.first == NULL and context.parked_count == 0 and ws_ready[0] == NULL:
        count = -1
    pthread_mutex_unlock(&bridge.lock)
    return count


cdef void bridge_stop(Bridge* bridge) noexcept nogil:
    pthread_mutex_lock(&bridge.lock)
    bridge.stop = 1
    pthread_cond_broadcast(&bridge.ready)
    pthread_mutex_unlock(&bridge.lock)


cdef void inbox_push(Conn* conn) noexcept nogil:
    """For a handler thread: give `conn` back to its home worker, waking it if its inbox was empty.
    After this the handler thread does not touch the connection."""
    cdef uint64_t one = 1
    if inbox_append(conn):
        write(conn.home.wake_fd, &one, sizeof(one))


cdef bint inbox_append(Conn* conn) noexcept nogil:
    """Give `conn` back to its home worker without waking it; True when its inbox was empty (the
    caller then wakes it: a write to its wake_fd). After this the caller does not touch the
    connection."""
    cdef Worker* home = conn.home
    cdef bint was_empty
    conn.next_awaiting_python = NULL
    pthread_mutex_lock(&home.inbox_lock)
    was_empty = home.inbox_first == NULL
    if home.inbox_last != NULL:
        home.inbox_last.next_awaiting_python = conn
    else:
        home.inbox_first = conn
    home.inbox_last = conn
    pthread_mutex_unlock(&home.inbox_lock)
    return was_empty


cdef void worker_drain_inbox(Worker* worker) noexcept nogil:
    """Carry on with the connections handler threads gave back: as after an inline batch, serve
    what is pipelined behind the answer (which may hand the connection over again), then send."""
    cdef Conn* conn
    cdef Conn* following
    cdef WsChannel* outbox
    pthread_mutex_lock(&worker.inbox_lock)
    conn = worker.inbox_first
    worker.inbox_first = NULL
    worker.inbox_last = NULL
    outbox = worker.ws_outbox_first
    worker.ws_outbox_first = NULL
    worker.ws_outbox_last = NULL
    pthread_mutex_unlock(&worker.inbox_lock)
    while conn != NULL:
        following = conn.next_awaiting_python
        conn.next_awaiting_python = NULL
        conn.with_handler_thread = False
        if conn.ws != NULL:
            ws_opened(worker, conn)                 # accepted: the 101 goes out (websocket.pxi)
        else:
            conn_finish_turn(worker, conn, serve_buffered_requests(worker, conn))
        conn = following
    if outbox != NULL:
        ws_drain_outbox(worker, outbox)

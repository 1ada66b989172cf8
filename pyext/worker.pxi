# worker.pxi: a worker thread's event loop.
#
# Theory of operation. Each worker owns an epoll set holding its wake-up eventfd and its
# connections. One loop turn: epoll_wait; refresh the Date line; for the eventfd, take the
# connections the listener queued for us; for each connection, what its phase waits for (read and
# serve, or send: connection.pxi; events of a connection that Python has are left for its batch).
# Requests for the Python handler are collected over the whole turn and answered in one GIL
# acquisition at its end (the batch), capped at `python_batch` calls; what the cap leaves waits for
# the next turn, which then does not block in epoll_wait. The loop never touches a Python object:
# the GIL is taken only inside worker_run_python_batch.
#
# Timeouts: timers.pxi keeps one list per kind; epoll_wait sleeps until the earliest deadline and
# worker_expire_timers() hands each expired connection to the state machine (conn_on_timeout) at
# the end of every turn.
#
# Stopping: Core.stop_workers() sets stop_requested and a deadline and wakes us. From then on every
# response says Connection: close, connections idle between requests or lingering are closed at
# once (conn_is_idle), the rest finish their request, and at the deadline whatever remains is
# closed (but what a handler thread holds: bridge.pxi). The loop ends when the worker has no
# connection left, or at the deadline.

cdef void worker_take_queued_connections(Worker* worker) noexcept nogil:
    """Our eventfd fired: reset it, and take every connection queued on our account (queue.pxi)."""
    cdef uint64_t wakeups = 0
    cdef long long owed
    read(worker.wake_fd, &wakeups, sizeof(wakeups))
    owed = fc_atomic_take64(&worker.owed)
    if owed > 0:
        worker_adopt_from_queue(worker, <uint64_t>owed)


cdef void worker_adopt_from_queue(Worker* worker, uint64_t wakeups) noexcept nogil:
    """Take up to `wakeups` connections from the queue (fewer when it holds fewer) and adopt them."""
    cdef AcceptedConn accepted[64]
    cdef size_t wanted, taken, i
    # The clock of this turn may be old by now (an inline batch ran since): adoption measures how
    # long each connection waited in the queue against it (conn_adopt).
    worker.now_ms = fc_now_ms()
    while wakeups > 0:
        wanted = wakeups if wakeups < 64 else 64
        taken = queue_take(&worker.server.queue, accepted, wanted)
        for i in range(taken):
            conn_adopt(worker, &accepted[i])
        if taken < wanted:
            break
        wakeups -= taken


cdef void worker_close_idle_connections(Worker* worker) noexcept nogil:
    cdef Conn* conn = worker.connections
    cdef Conn* following
    while conn != NULL:
        following = conn.next
        if conn_is_idle(conn):
            conn_close_idle_for_stop(worker, conn)
        elif conn.ws != NULL and not conn.with_handler_thread:
            ws_close_for_stop(worker, conn)             # 1001, once (websocket.pxi)
        conn = following


cdef void worker_close_all_connections(Worker* worker, bint threads_gone) noexcept nogil:
    """The stop's deadline: close everything but what a handler thread still holds (freeing it
    under that thread would crash; it is closed by Core.release() once the thread has returned);
    with `threads_gone` (Core.release), everything. A connection in the middle of a request is
    counted as cut (Server.stop logs it)."""
    cdef Conn* conn = worker.connections
    cdef Conn* following
    worker.python_first = NULL
    worker.python_last = NULL
    while conn != NULL:
        following = conn.next
        if conn.with_handler_thread and not threads_gone:
            conn = following
            continue
        if not conn_is_idle(conn) and conn.close_policy != CLOSE_LINGERING:
            fc_atomic_add64(&worker.server.requests_cut_at_stop, 1)     # (lingering: answered already)
        conn_close(worker, conn)
        conn = following


cdef void worker_handle_woken(Worker* worker) noexcept nogil:
    """The wake eventfd fired: new connections queued, or connections given back (handler threads,
    the ASGI loop, native WebSocket sends). After the turn's other events: a connection given back
    may be closed here, and an event of this same epoll_wait for it (it stays registered while
    away: protocol.pxi (1)) must not be handled after that."""
    worker_take_queued_connections(worker)
    if worker.server.python_off_workers or worker.server.ws_native:
        worker_drain_inbox(worker)                  # (and the WebSockets Python sent to)


cdef void worker_handle_event(Worker* worker, epoll_event* event) noexcept nogil:
    """One connection's epoll event (not the wake eventfd's: worker_handle_woken)."""
    cdef Conn* conn = <Conn*>event.data.ptr
    if conn.with_handler_thread:
        conn_event_while_away(worker, conn)             # (protocol.pxi (1)); it comes back through the inbox
    elif conn_with_python(conn):
        pass                                            # its Python batch runs at the end of this turn
    elif conn.phase == PHASE_LINGERING:
        conn_discard_input(worker, conn)
    elif conn.phase == PHASE_SENDING:
        conn_flush(worker, conn)
    elif conn.phase == PHASE_WEBSOCKET:
        ws_on_readable(worker, conn)
    else:
        conn_on_readable(worker, conn)


cdef void worker_expire_timers(Worker* worker) noexcept nogil:
    """Hand every connection whose deadline has passed to the state machine (conn_on_timeout)."""
    cdef int kind
    cdef Conn* conn
    for kind in range(1, <int>TIMER_KINDS):
        while worker.timers[kind].first != NULL and worker.timers[kind].first.deadline_ms <= worker.now_ms:
            conn = worker.timers[kind].first
            timer_unlink(worker, conn)
            conn_on_timeout(worker, conn)


cdef int worker_wait_ms(Worker* worker) noexcept nogil:
    """How long epoll_wait may sleep: until the earliest timer, the stop deadline, or not at all
    when a Python batch is left over from the last turn."""
    cdef int timeout = timers_wait_ms(worker)
    cdef long long remaining
    if worker.python_first != NULL or worker.parked_count or worker.ws_python_first != NULL:
        return 0
    if worker.stopping:
        remaining = fc_atomic_load64(&worker.stop_deadline_ms) - worker.now_ms
        if remaining < 0:
            remaining = 0
        if timeout < 0 or remaining < timeout:
            timeout = <int>remaining
    return timeout


cdef void worker_loop(Worker* worker) noexcept nogil:
    cdef int ready, i
    cdef bint woken
    worker.now_ms = fc_now_ms()
    date_refresh(&worker.date)
    while True:
        if worker.stopping:
            worker_close_idle_connections(worker)
            if worker.connection_count == 0:
                break
            if worker.now_ms >= fc_atomic_load64(&worker.stop_deadline_ms):
                # What a handler thread still holds stays in our list, for Core.release() to close
                # once that thread has given it back and returned (Server.stop).
                worker_close_all_connections(worker, False)
                break
        if worker.python_first == NULL:
            fc_atomic_store(&worker.idle, 1)
            fc_full_fence()                             # pairs with credit_worker's (listener.pxi)
            # The listener wakes only a sleeping worker, so what it queued while we were awake is
            # ours to look for now; and a connection credited to a worker stuck in a long handler
            # is taken by whichever worker goes to sleep first (after marking itself idle, so the
            # listener wakes it from now on). The other worker's credit then finds the queue
            # shorter, which is harmless: a take is "up to".
            if queue_maybe_nonempty(&worker.server.queue):
                fc_atomic_take64(&worker.owed)
                worker_adopt_from_queue(worker, worker.server.queue.capacity)
        ready = epoll_wait(worker.epoll_fd, worker.events, EPOLL_BATCH, worker_wait_ms(worker))
        fc_atomic_store(&worker.idle, 0)
        if ready < 0:
            ready = 0                                   # EINTR; nothing else is expected here
        worker.now_ms = fc_now_ms()
        date_refresh(&worker.date)
        if not worker.stopping and fc_atomic_load(&worker.stop_requested):
            worker.stopping = True
        woken = False
        for i in range(ready):
            if worker.events[i].data.ptr == NULL:
                woken = True
            else:
                worker_handle_event(worker, &worker.events[i])
        if woken:
            worker_handle_woken(worker)
        if worker.server.python_off_workers:
            if worker.parked_count:
                bridge_park_bodies(worker)          # a handler thread releases them
        elif worker.python_first != NULL or worker.parked_count or worker.ws_python_first != NULL:
            fc_atomic_add64(&worker.gil_batches, 1)
            worker_run_python_batch(worker)
            for i in range(worker.flush_after_python_count):
                conn_finish_turn(worker, worker.flush_after_python[i], SERVE_DONE)
            worker.flush_after_python_count = 0
            if worker.ws_outbox_first != NULL:
                worker_drain_inbox(worker)          # what native WebSocket callbacks sent, now
        worker_expire_timers(worker)

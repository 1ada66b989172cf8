# timers.pxi: per-worker timeout lists (header read, body read, keep-alive idle, write, linger).
#
# Theory of operation. A connection is on at most one list at a time, the one for what it is
# waiting on. All entries of a list share one duration, so a connection re-armed now has the
# latest deadline and goes to the tail: the list stays sorted with O(1) arm and cancel, and no timer
# fd per connection. Each loop turn epoll_wait sleeps until the earliest head deadline (or an
# event), then worker_expire_timers() acts on every head that is due. A duration of 0 disables a
# kind. One exception to "sorted": a new connection's header deadline counts from its accept
# (timer_arm_from), which may put it behind later deadlines, bounded as explained there. Below the
# lists: the body's minimum rate, a per-connection deadline checked where the body is read.

cdef inline void timer_unlink(Worker* worker, Conn* conn) noexcept nogil:
    cdef TimerList* timers
    if conn.timer_kind == TIMER_NONE:
        return
    timers = &worker.timers[<int>conn.timer_kind]
    if conn.timer_previous != NULL:
        conn.timer_previous.timer_next = conn.timer_next
    else:
        timers.first = conn.timer_next
    if conn.timer_next != NULL:
        conn.timer_next.timer_previous = conn.timer_previous
    else:
        timers.last = conn.timer_previous
    conn.timer_previous = NULL
    conn.timer_next = NULL
    conn.timer_kind = TIMER_NONE


cdef inline void timer_arm(Worker* worker, Conn* conn, TimerKind kind) noexcept nogil:
    """Put `conn` on the `kind` list with a fresh deadline (TIMER_NONE: on no list)."""
    cdef TimerList* timers
    timer_unlink(worker, conn)
    if kind == TIMER_NONE:
        return
    timers = &worker.timers[<int>kind]
    if timers.duration_ms <= 0:
        return                                          # this kind of timeout is disabled
    conn.timer_kind = kind
    conn.deadline_ms = worker.now_ms + timers.duration_ms
    conn.timer_previous = timers.last
    conn.timer_next = NULL
    if timers.last != NULL:
        timers.last.timer_next = conn
    else:
        timers.first = conn
    timers.last = conn


cdef int timers_wait_ms(const Worker* worker) noexcept nogil:
    """Milliseconds until the earliest deadline, or -1 when no timer runs."""
    cdef int kind
    cdef long long earliest = -1, deadline
    for kind in range(1, <int>TIMER_KINDS):
        if worker.timers[kind].first != NULL:
            deadline = worker.timers[kind].first.deadline_ms
            if earliest < 0 or deadline < earliest:
                earliest = deadline
    if earliest < 0:
        return -1
    if earliest <= worker.now_ms:
        return 0
    return <int>(earliest - worker.now_ms) if earliest - worker.now_ms < 3600000 else 3600000


cdef inline void timer_arm_from(Worker* worker, Conn* conn, TimerKind kind, long long start_ms) noexcept nogil:
    """timer_arm, with the deadline counted from `start_ms` (no later than now) instead of now: a
    new connection's head is due header_timeout after its accept, not after its adoption.

    It is still appended at the tail, so it may sit behind entries armed while it waited in the
    queue, whose deadlines are later than its own. Expiry stops at the first entry not yet due, so
    such an entry fires late by at most how long it waited (less than the duration: one that waited
    longer is closed at adoption, conn_adopt), that is never later than now + duration, the deadline
    it would have had without this. Inserting in order instead would walk back over every entry
    armed during the wait, on each adoption: under the very overload that makes queues wait, that
    is quadratic."""
    timer_arm(worker, conn, kind)
    if conn.timer_kind == kind and start_ms < worker.now_ms:
        conn.deadline_ms = start_ms + worker.timers[<int>kind].duration_ms


# The body's minimum data rate (body_min_rate bytes/s, after body_min_rate_grace). body_timeout
# bounds only the wait for the next byte, so a client sending one byte just within it would hold a
# connection (and, reading a streamed body, a handler thread) for as long as it likes. A body must
# also keep up an average rate, as Kestrel's MinRequestBodyDataRate (240 bytes/s after 5 s): at
# time t after its clock started, the bytes received must be >= rate * (t - start - grace), i.e. a
# body of `received` bytes so far is too slow from start + grace + received / rate on (its "rate
# deadline"). Per-connection deadlines cannot go on the lists above (one duration per list), so the
# rate is checked where the body is read: by the worker after each read of a body it buffers
# (serve.pxi; a body that stalls is caught by the BODY timer first), and by a BodyReader, which
# waits for the socket at most until the rate deadline (python.pxi). Bytes count as received when
# recv() returns them, framing included; both checks run only after the socket was read, so bytes
# waiting in the kernel always count.

cdef inline void body_rate_start(Conn* conn, long long now_ms, size_t already) noexcept nogil:
    """A body starts (its head is parsed) at `now_ms`, with `already` of its bytes received."""
    conn.body_started_ms = now_ms
    conn.body_bytes_base = conn.bytes_in - <long long>already


cdef inline long long body_rate_deadline_ms(const ServerState* server, const Conn* conn) noexcept nogil:
    """From when the body received so far is below the minimum rate; -1 when no rate is enforced."""
    if server.body_min_rate <= 0:
        return -1
    return (conn.body_started_ms + server.body_min_rate_grace_ms
            + (conn.bytes_in - conn.body_bytes_base) * 1000 // server.body_min_rate)

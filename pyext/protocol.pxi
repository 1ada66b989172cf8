# protocol.pxi: a connection's state machine. What a connection waits for, whether it stays open
# after this response, which epoll events it listens to and which timer runs: all decided here.
#
# Two rules, after h11's _state.py: everything that changes a connection's phase, close policy,
# epoll interest or timer lives in this file; and nothing here reads or writes the socket.
# connection.pxi does the I/O (recv, sendmsg, sendfile, adopt, close) and serve.pxi turns buffered
# bytes into answers; both report what happened as an event to conn_transition(), the only writer
# of conn.phase, which looks the event up in the table below and applies the new phase's epoll
# interest and timer. conn_close_after() is the only writer of conn.close_policy.
#
# Phases: what the connection waits for, and the interest and timer that implies.
#
#   phase      interest  timer                     waiting for
#   NEW        -         -                         adoption (calloc'd, not in the epoll set yet)
#   IDLE       IN        IDLE, re-armed            the first byte of the next request (keep-alive)
#   HEAD       IN (3)    HEADER, armed once        the rest of a request head: trickling bytes do
#                                                  not extend its deadline
#   BODY       IN        BODY, re-armed            more of a request body (re-armed on each read)
#   HANDLER    IN (1)    none                      the Python handler (queued in the worker's batch)
#   STREAMING  IN (1)    none                      Python, for the next part of a streamed body
#   FLUSHING   kept (2)  kept (2)                  nothing: an answer is in the output, going out now
#   SENDING    OUT       WRITE, re-armed on progress  the client to take more of the output
#   LINGERING  IN        LINGER, re-armed          the client's FIN after our last answer; what it
#                                                  still sends is discarded
#   CLOSED     -         -                         nothing: fd closed, struct about to be freed
#   WEBSOCKET  IN        kept (4)                  frames from an upgraded connection (websocket.pxi)
#   WS_PAUSED  -         none                      the app: its queue of received messages is full, so
#                                                  the socket is not read until it takes some
#
#   (1) inline mode (handler_threads = 0): events are ignored while Python has the connection; the
#       interest stays IN so the common keep-alive turn (IDLE -> HANDLER -> FLUSHING -> IDLE) makes
#       no epoll_ctl call. Handler-thread mode (and ASGI): the registration is kept as it is while a
#       handler thread (or the loop) has the connection (bridge.pxi), so that turn makes none
#       either; the first event before it comes back (the client sent more, left, or an OUT
#       interest is still set) takes it out of the set (conn_event_while_away: level-triggered, it
#       would wake every epoll_wait until then), and the phase after FLUSHING registers it again.
#   (2) a phase that lasts only within one loop turn: changing epoll or a timer for it would be
#       undone before epoll_wait could see it.
#   (3) adoption (conn_accepted) enters HEAD without registering: its first read is tried at once
#       (the request is usually there already), and a connection answered and closed within that
#       turn never needs an EPOLL_CTL_ADD, nor the DEL of its close. The first transition into a
#       phase that waits for the socket registers it (ADD instead of MOD), and conn_watch() does
#       when that first read finds nothing yet. HANDLER and STREAMING do not register one that
#       is not in the set: in inline mode their events are ignored anyway.
#   (4) a WebSocket's timer is its own to choose (websocket.pxi: ws_arm_timer): the next ping, the
#       pong of the last one, or the client's close frame.
#
# Transitions. Any (phase, event) pair not listed is illegal: conn_transition() leaves the phase
# as it is and counts it (debug builds), and tests/test_state_machine.py checks every cell.
#
#   event           from                                    to          what happened
#   ACCEPTED        NEW                                     HEAD        adopted: the first request is due
#   WAIT_REQUEST    FLUSHING                                IDLE        answered and sent; nothing of a
#                                                                       next request is buffered
#   HEAD_BYTES      IDLE, HEAD, FLUSHING                    HEAD        part of a head is buffered
#   BODY_BYTES      IDLE, HEAD, BODY, FLUSHING              BODY        head parsed, body incomplete
#   TO_HANDLER      IDLE, HEAD, BODY, FLUSHING              HANDLER     a request for Python: complete, or
#                                                                       its body too large to hold (streamed)
#   ANSWERED        IDLE, HEAD, BODY, HANDLER, STREAMING,   FLUSHING    a response (or the next part of a
#                   FLUSHING, WEBSOCKET, WS_PAUSED                      streamed one, or WebSocket frames)
#                                                                       is in the output
#   STREAM_MORE     FLUSHING                                STREAMING   output drained; the streamed body's
#                                                                       next part is Python's to give
#   OUTPUT_BLOCKED  IDLE, HEAD, BODY, FLUSHING, SENDING     SENDING     the socket took less than all (from
#                                                                       a read phase: a 100 Continue)
#   OUTPUT_DRAINED  SENDING                                 FLUSHING    the socket took the rest
#   LINGER          IDLE, HEAD, FLUSHING                    LINGERING   last answer out, the client may still
#                                                                       be sending: half-closed (from IDLE,
#                                                                       HEAD: a stop, its next request unread)
#   CLOSE           every phase but CLOSED                  CLOSED      last answer out, client gone, timer,
#                                                                       stop, error
#   WEBSOCKET       FLUSHING, WS_PAUSED                     WEBSOCKET   the 101 (or frames) went out / the app
#                                                                       took messages: read frames
#   WS_QUEUE_FULL   WEBSOCKET, FLUSHING                     WS_PAUSED   ws_max_queue messages wait for the app
#
# A WebSocket's frames go out as a response does: ANSWERED (from WEBSOCKET or WS_PAUSED too) to
# FLUSHING, possibly SENDING, and back through WEBSOCKET or WS_QUEUE_FULL; its end is CLOSE, or
# LINGER after a close it had to force (websocket.pxi).
#
# Close policy (ClosePolicy in state.pxi) escalates and never returns: CLOSE_NEVER (keep-alive),
# CLOSE_AFTER_RESPONSE (no further request is served; close once the output is out: the request
# said so, HTTP/1.0, a close-delimited body, a handler's Connection: close, a stopping server, the
# client's FIN), CLOSE_LINGERING (the same, after an error answer or with request bytes unread).
# `conn.keep_alive` is what the current response says in its Connection field: set per request
# from its head (conn_start_request), cleared by any escalation.
#
# Timers fire through conn_on_timeout(): a request caught mid-head or mid-body gets 408 and a
# lingering close; anything else (idle, never used, not reading our output, lingering) is closed.
# A body below body_min_rate gets the same 408 where it is read (timers.pxi says why not on a timer).
# A new connection's HEADER deadline counts from its accept (conn_accepted), so time spent in the
# listener's queue is the client's too.


# Per phase: the epoll interest (INTEREST_KEPT: leave as registered) and the timer to run
# (TIMER_KEPT: leave as armed), and whether re-entering the phase re-arms the timer.
cdef enum:
    INTEREST_KEPT = 0xFFFFFFFF
    INTEREST_NONE = 0                 # out of the epoll set
    TIMER_KEPT = 255

cdef unsigned char PHASE_TRANSITIONS[PHASE_COUNT][EVENT_COUNT]
cdef uint32_t PHASE_INTEREST[PHASE_COUNT]
cdef unsigned char PHASE_TIMER[PHASE_COUNT]
cdef bint PHASE_TIMER_REARMED[PHASE_COUNT]     # re-arm on every entry, not only when the kind changes

PHASE_NAMES = ("NEW", "IDLE", "HEAD", "BODY", "HANDLER", "STREAMING", "FLUSHING", "SENDING",
               "LINGERING", "CLOSED", "WEBSOCKET", "WS_PAUSED")
EVENT_NAMES = ("ACCEPTED", "WAIT_REQUEST", "HEAD_BYTES", "BODY_BYTES", "TO_HANDLER", "ANSWERED",
               "STREAM_MORE", "OUTPUT_BLOCKED", "OUTPUT_DRAINED", "LINGER", "CLOSE", "WEBSOCKET",
               "WS_QUEUE_FULL")

# The table above, as data: (event, phases it may come in, the phase it leads to).
TRANSITIONS = (
    ("ACCEPTED", ("NEW",), "HEAD"),
    ("WAIT_REQUEST", ("FLUSHING",), "IDLE"),
    ("HEAD_BYTES", ("IDLE", "HEAD", "FLUSHING"), "HEAD"),
    ("BODY_BYTES", ("IDLE", "HEAD", "BODY", "FLUSHING"), "BODY"),
    ("TO_HANDLER", ("IDLE", "HEAD", "BODY", "FLUSHING"), "HANDLER"),
    ("ANSWERED", ("IDLE", "HEAD", "BODY", "HANDLER", "STREAMING", "FLUSHING", "WEBSOCKET", "WS_PAUSED"),
     "FLUSHING"),
    ("STREAM_MORE", ("FLUSHING",), "STREAMING"),
    ("OUTPUT_BLOCKED", ("IDLE", "HEAD", "BODY", "FLUSHING", "SENDING"), "SENDING"),
    ("OUTPUT_DRAINED", ("SENDING",), "FLUSHING"),
    ("LINGER", ("IDLE", "HEAD", "FLUSHING"), "LINGERING"),
    ("CLOSE", ("NEW", "IDLE", "HEAD", "BODY", "HANDLER", "STREAMING", "FLUSHING", "SENDING",
               "LINGERING", "WEBSOCKET", "WS_PAUSED"), "CLOSED"),
    ("WEBSOCKET", ("FLUSHING", "WS_PAUSED"), "WEBSOCKET"),
    ("WS_QUEUE_FULL", ("WEBSOCKET", "FLUSHING"), "WS_PAUSED"),
)


cdef void protocol_build_tables():
    """Fill the C tables from TRANSITIONS and the phase table above (once, at module import)."""
    cdef int phase, event
    for phase in range(<int>PHASE_COUNT):
        for event in range(<int>EVENT_COUNT):
            PHASE_TRANSITIONS[phase][event] = PHASE_ILLEGAL
        PHASE_INTEREST[phase] = INTEREST_KEPT
        PHASE_TIMER[phase] = TIMER_KEPT
        PHASE_TIMER_REARMED[phase] = False
    for event_name, sources, target in TRANSITIONS:
        for source in sources:
            PHASE_TRANSITIONS[PHASE_NAMES.index(source)][EVENT_NAMES.index(event_name)] = PHASE_NAMES.index(target)
    for phase, interest, timer, rearmed in (
            (PHASE_IDLE, EPOLLIN, TIMER_IDLE, True),
            (PHASE_HEAD, EPOLLIN, TIMER_HEADER, False),
            (PHASE_BODY, EPOLLIN, TIMER_BODY, True),
            (PHASE_HANDLER, EPOLLIN, TIMER_NONE, False),
            (PHASE_STREAMING, EPOLLIN, TIMER_NONE, False),
            (PHASE_SENDING, EPOLLOUT, TIMER_WRITE, False),
            (PHASE_LINGERING, EPOLLIN, TIMER_LINGER, True),
            (PHASE_WEBSOCKET, EPOLLIN, TIMER_KEPT, False),
            (PHASE_WS_PAUSED, INTEREST_NONE, TIMER_NONE, False),
            (PHASE_CLOSED, INTEREST_KEPT, TIMER_NONE, False)):
        PHASE_INTEREST[phase] = <uint32_t><long long>interest     # (INTEREST_KEPT is -1 as a Python int)
        PHASE_TIMER[phase] = timer
        PHASE_TIMER_REARMED[phase] = rearmed

protocol_build_tables()


cdef inline ConnPhase protocol_next_phase(ConnPhase phase, ConnEvent event) noexcept nogil:
    """The phase `event` leads to from `phase`, or PHASE_ILLEGAL."""
    if <int>phase >= <int>PHASE_COUNT or <int>event >= <int>EVENT_COUNT:
        return PHASE_ILLEGAL
    return <ConnPhase>PHASE_TRANSITIONS[<int>phase][<int>event]


cdef int conn_transition(Worker* worker, Conn* conn, ConnEvent event, bint progressed=False,
                         bint register=True) noexcept nogil:
    """The only writer of conn.phase: move `conn` along `event` and give it the new phase's epoll
    interest and timer. `progressed` (SENDING only): the client took bytes, so its write deadline
    starts again. `register` False (adoption, (3)): leave a connection that is not in the epoll set
    out of it. Returns 0; -1 for an illegal event (nothing changes; counted in debug builds);
    -2 when epoll refused to register the connection (it is then left to its phase's timer: the
    callers of a transition do not close, conn_watch's does)."""
    cdef ConnPhase target = protocol_next_phase(conn.phase, event)
    cdef uint32_t interest
    cdef unsigned char timer
    cdef epoll_event change
    if target == PHASE_ILLEGAL:
        fc_debug_count(worker.server.debug_counters, FC_ILLEGAL_TRANSITIONS, 1)
        return -1
    conn.phase = target
    interest = PHASE_INTEREST[<int>target]
    if target == PHASE_HANDLER or target == PHASE_STREAMING:
        if conn.interest == 0:
            interest = 0                        # not in the set yet (3): it stays out
        elif worker.server.python_off_workers:
            # A handler thread has it (1): an IN registration is kept; an OUT one (its last output
            # went out through SENDING) would fire at once on the writable socket: out now.
            interest = INTEREST_KEPT if conn.interest == PHASE_INTEREST[<int>target] else 0
    if not register and conn.interest == 0:
        interest = INTEREST_KEPT
    if interest == 0 and conn.interest:
        epoll_ctl(worker.epoll_fd, EPOLL_CTL_DEL, conn.fd, NULL)
        fc_debug_count(worker.server.debug_counters, FC_EPOLL_REGISTRATIONS, -1)
        conn.interest = 0
    elif interest != INTEREST_KEPT and interest != 0 and interest != conn.interest:
        change.events = interest
        change.data.ptr = conn
        if epoll_ctl(worker.epoll_fd, EPOLL_CTL_MOD if conn.interest else EPOLL_CTL_ADD, conn.fd, &change) != 0:
            if conn.interest == 0:
                return -2
        else:
            if conn.interest == 0:
                fc_debug_count(worker.server.debug_counters, FC_EPOLL_REGISTRATIONS, 1)
            conn.interest = interest
    timer = PHASE_TIMER[<int>target]
    if timer != TIMER_KEPT and (timer != <unsigned char>conn.timer_kind or PHASE_TIMER_REARMED[<int>target]
                                or progressed):
        timer_arm(worker, conn, <TimerKind>timer)
    return 0


cdef void conn_accepted(Worker* worker, Conn* conn, long long accepted_ms) noexcept nogil:
    """ACCEPTED, with the head's deadline counted from the accept, not from now (timer_arm_from),
    and not in the epoll set yet (3): conn_adopt reads at once."""
    conn_transition(worker, conn, EVENT_ACCEPTED, False, False)
    if conn.timer_kind == TIMER_HEADER:
        timer_arm_from(worker, conn, TIMER_HEADER, accepted_ms)


cdef int conn_watch(Worker* worker, Conn* conn) noexcept nogil:
    """An adopted connection's first read found nothing yet (3): put it in the epoll set with its
    phase's interest. Returns 0, or -1 when epoll refused it (the caller closes it)."""
    cdef epoll_event change
    if conn.interest != 0 or PHASE_INTEREST[<int>conn.phase] == INTEREST_KEPT:
        return 0
    change.events = PHASE_INTEREST[<int>conn.phase]
    change.data.ptr = conn
    if epoll_ctl(worker.epoll_fd, EPOLL_CTL_ADD, conn.fd, &change) != 0:
        return -1
    fc_debug_count(worker.server.debug_counters, FC_EPOLL_REGISTRATIONS, 1)
    conn.interest = change.events
    return 0


cdef inline void conn_close_after(Conn* conn, ClosePolicy policy) noexcept nogil:
    """The only writer of conn.close_policy: escalate it (never lower it). Any policy but
    CLOSE_NEVER also makes the current response say Connection: close."""
    if policy > conn.close_policy:
        conn.close_policy = policy
    if policy != CLOSE_NEVER:
        conn.keep_alive = False


cdef inline bint conn_serves_more_requests(const Conn* conn) noexcept nogil:
    return conn.close_policy == CLOSE_NEVER


cdef enum:
    OUTPUT_HIGH_WATER = 65536         # unsent response bytes beyond which pipelined requests wait


cdef inline bint conn_pauses_serving(Conn* conn) noexcept nogil:
    """Output backpressure for pipelining: with OUTPUT_HIGH_WATER bytes of responses unsent, the
    next pipelined request is not parsed (serve.pxi asks before each head). The output is sent
    first; if the client does not take it, the connection waits in SENDING, where its input is not
    read either, so a client that pipelines without reading holds at most about this much of our
    memory (plus one response) instead of a response per request it sent. conn_flush() resumes
    serving once the output is out."""
    if buffer_length(&conn.output) < OUTPUT_HIGH_WATER:
        return False
    conn.serving_paused = True
    return True


cdef void conn_start_request(Worker* worker, Conn* conn) noexcept nogil:
    """A head was parsed: does its response keep the connection? (RFC 9112 9.3: HTTP/1.1 persists
    unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.) A stopping server
    answers, then closes. The close policy itself changes only once the request is complete
    (conn_request_complete): its body must still be read."""
    cdef ParsedRequest* request = &conn.request
    if request.version_minor == 1:
        conn.keep_alive = not request.connection_close
    else:
        conn.keep_alive = request.connection_keep_alive and not request.connection_close
    if fc_atomic_load(&worker.stop_requested):
        conn.keep_alive = False


cdef inline void conn_request_complete(Conn* conn) noexcept nogil:
    """The whole request is in: if its response closes the connection, nothing after it is served."""
    if not conn.keep_alive:
        conn_close_after(conn, CLOSE_AFTER_RESPONSE)


cdef void conn_await_input(Worker* worker, Conn* conn) noexcept nogil:
    """Everything answered is sent and the connection stays: wait for what the client owes next."""
    buffer_release_if_empty(&conn.output)
    buffer_release_if_empty(&conn.input)
    if conn.head_complete:
        conn_transition(worker, conn, EVENT_BODY_BYTES)
    elif buffer_length(&conn.input) or conn.empty_lines_before_request:
        conn_transition(worker, conn, EVENT_HEAD_BYTES)
    else:
        conn_transition(worker, conn, EVENT_WAIT_REQUEST)


cdef void conn_output_drained(Worker* worker, Conn* conn) noexcept nogil:
    """The output is out (sendmsg and sendfile done): pull more of a streamed body, end the
    connection, or wait for the next request."""
    if conn_streams_body(conn):
        conn_queue_for_python(worker, conn, EVENT_STREAM_MORE)
        return
    if conn.ws != NULL and conn_serves_more_requests(conn):
        ws_output_drained(worker, conn)             # back to reading frames (websocket.pxi)
        return
    if not conn_serves_more_requests(conn):
        if buffer_length(&conn.input):
            conn_close_after(conn, CLOSE_LINGERING)     # pipelined bytes after a Connection: close
        conn_finish(worker, conn)
        return
    conn_await_input(worker, conn)


cdef void conn_finish(Worker* worker, Conn* conn) noexcept nogil:
    """The last response is out: close, or linger first if the client may still be sending.

    Closing a socket with unread input makes the kernel send RST, and an RST can destroy the
    response before the client has read it (the client is told 413, say, while still uploading).
    So after an error answer, or with request bytes left unread, we half-close (the client sees
    FIN after our response), then discard what it still sends until its FIN or LINGER_TIMEOUT_MS,
    and only then close: the lingering close of nginx and Apache."""
    if conn.close_policy != CLOSE_LINGERING or conn.peer_closed:
        conn_close(worker, conn)
        return
    conn_half_close(worker, conn)
    conn_transition(worker, conn, EVENT_LINGER)
    conn_discard_input(worker, conn)


cdef void conn_queue_for_python(Worker* worker, Conn* conn, ConnEvent event) noexcept nogil:
    """Hand the connection to Python (TO_HANDLER, or STREAM_MORE for the next part of a streamed
    body): to the handler threads through the bridge, or inline to the worker's own batch at the
    end of this loop turn."""
    conn_transition(worker, conn, event)
    if worker.server.python_off_workers:
        bridge_push(worker, conn)
        return
    conn.next_awaiting_python = NULL
    if worker.python_last != NULL:
        worker.python_last.next_awaiting_python = conn
    else:
        worker.python_first = conn
    worker.python_last = conn


cdef void conn_event_while_away(Worker* worker, Conn* conn) noexcept nogil:
    """An epoll event for a connection a handler thread or the ASGI loop has (1): it leaves the
    epoll set until it comes back. Only `interest` is touched, which the other thread never reads
    (its transitions, ANSWERED, keep the registration as it is); the fd stays open, since only
    the worker closes it."""
    if conn.interest:
        epoll_ctl(worker.epoll_fd, EPOLL_CTL_DEL, conn.fd, NULL)
        fc_debug_count(worker.server.debug_counters, FC_EPOLL_REGISTRATIONS, -1)
        conn.interest = 0


cdef inline bint conn_with_python(const Conn* conn) noexcept nogil:
    """Queued in (or being served by) the worker's Python batch, or with a handler thread: its
    events wait. (with_handler_thread first: the phase of such a connection is not ours to read.)"""
    return conn.with_handler_thread or conn.phase == PHASE_HANDLER or conn.phase == PHASE_STREAMING


cdef void conn_on_timeout(Worker* worker, Conn* conn) noexcept nogil:
    """Its timer expired (and is already unlinked): a request caught mid-way gets a 408 and a
    lingering close; an idle or never-used connection, one that stopped reading, or one lingering
    is closed."""
    if conn.phase == PHASE_WEBSOCKET:
        ws_on_timeout(worker, conn)                 # a ping, a missing pong, a close not answered
    elif conn.phase == PHASE_BODY or (conn.phase == PHASE_HEAD and buffer_length(&conn.input)):
        fc_atomic_add64(&worker.server.body_timeouts if conn.phase == PHASE_BODY else &worker.server.header_timeouts, 1)
        fail_request(worker, conn, 408)
        conn_flush(worker, conn)
    else:
        conn_close(worker, conn)


cdef void conn_close_idle_for_stop(Worker* worker, Conn* conn) noexcept nogil:
    """A stopping server closes its idle connections, but one whose client has just sent its next
    request (still unread in the kernel) would be closed with RST, which can destroy what the
    client has not read yet. So an idle connection with bytes waiting is half-closed and drained
    first (the client sees FIN: its request was not started, and it may send it again elsewhere),
    as the lingering close does; it closes at the client's FIN or at the next turn of the stopping
    loop, drained once more. One with nothing waiting is closed at once."""
    cdef char probe
    if conn.phase == PHASE_LINGERING:
        if not conn_discard_input(worker, conn):        # it closes at the client's FIN
            conn_close(worker, conn)
        return
    if recv(conn.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) > 0:
        conn_close_after(conn, CLOSE_LINGERING)
        conn_finish(worker, conn)
        return
    conn_close(worker, conn)


cdef inline bint conn_is_idle(const Conn* conn) noexcept nogil:
    """Between requests (nothing read, nothing owed) or lingering: safe to close when stopping."""
    if conn.with_handler_thread:
        return False
    if conn.phase == PHASE_LINGERING:
        return True
    return ((conn.phase == PHASE_IDLE or conn.phase == PHASE_HEAD)
            and buffer_length(&conn.input) == 0 and buffer_length(&conn.output) == 0)

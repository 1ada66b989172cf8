"""fastcore.pure.protocol: a connection's state machine. What a connection waits for, whether it stays
open after this response, which epoll events it listens to and which timer runs: all decided here.

The pure twin of pyext/protocol.pxi: the same phases, events, close policies and table, written out
again here (not imported from the compiled module), so that tests/test_protocol_tables.py can compare
the two engines' tables, and both with the table below and the one in protocol.pxi's header.

Two rules, after h11's _state.py: everything that changes a connection's phase, close policy, epoll
interest or timer lives in this file; and nothing here reads or writes the socket. connection.py
does the I/O (recv, send / sendmsg, sendfile, half-close, close) and serves buffered requests; it
and worker.py report what happened as an event to transition(), the only writer of `conn.phase`,
which looks the event up in the table below and applies the new phase's epoll interest and timer.
close_after() is the only writer of `conn.close_policy`.

Phases: what the connection waits for, and the interest and timer that implies.

  phase      interest  timer                     waiting for
  NEW        -         -                         adoption (not in the epoll set yet)
  IDLE       IN        IDLE, re-armed            the first byte of the next request (keep-alive)
  HEAD       IN        HEADER, armed once        the rest of a request head: trickling bytes do
                                                 not extend its deadline
  BODY       IN        BODY, re-armed            more of a request body (re-armed on each read)
  HANDLER    IN (1)    none                      the Python handler (queued in the worker's batch)
  STREAMING  IN (1)    none                      Python, for the next part of a streamed body
  FLUSHING   kept (2)  kept (2)                  nothing: an answer is in the output, going out now
  SENDING    OUT       WRITE, re-armed on progress  the client to take more of the output
  LINGERING  IN        LINGER, re-armed          the client's FIN after our last answer; what it
                                                 still sends is discarded
  CLOSED     -         -                         nothing: socket closed, connection dropped

  (1) inline mode (handler_threads = 0): events are ignored while Python has the connection; the
      interest stays IN so the common keep-alive turn (IDLE -> HANDLER -> FLUSHING -> IDLE) makes
      no epoll call. Handler-thread mode: the connection leaves the epoll set (interest none)
      while a handler thread has it (bridge.py), and comes back in the phase after FLUSHING.
  (2) a phase that lasts only within one loop turn: changing epoll or a timer for it would be
      undone before epoll could see it.

Transitions. Any (phase, event) pair not listed is illegal: transition() leaves the phase as it is
and counts it (the worker's illegal_transitions, summed by Core.debug_counters(), which the test
fixtures require to be zero when a server stops).

  event           from                                    to          what happened
  ACCEPTED        NEW                                     HEAD        adopted: the first request is due
  WAIT_REQUEST    FLUSHING                                IDLE        answered and sent; nothing of a
                                                                      next request is buffered
  HEAD_BYTES      IDLE, HEAD, FLUSHING                    HEAD        part of a head is buffered
  BODY_BYTES      IDLE, HEAD, BODY, FLUSHING              BODY        head parsed, body incomplete
  TO_HANDLER      IDLE, HEAD, BODY, FLUSHING              HANDLER     a request for Python: complete, or
                                                                      its body too large to hold (streamed)
  ANSWERED        IDLE, HEAD, BODY, HANDLER, STREAMING,   FLUSHING    a response (or the next part of a
                  FLUSHING                                            streamed one) is in the output
  STREAM_MORE     FLUSHING                                STREAMING   output drained; the streamed body's
                                                                      next part is Python's to give
  OUTPUT_BLOCKED  IDLE, HEAD, BODY, FLUSHING, SENDING     SENDING     the socket took less than all (from
                                                                      a read phase: a 100 Continue)
  OUTPUT_DRAINED  SENDING                                 FLUSHING    the socket took the rest
  LINGER          IDLE, HEAD, FLUSHING                    LINGERING   last answer out, the client may still
                                                                      be sending: half-closed (from IDLE,
                                                                      HEAD: a stop, its next request unread)
  CLOSE           every phase but CLOSED                  CLOSED      last answer out, client gone, timer,
                                                                      stop, error

Close policy escalates and never returns: CLOSE_NEVER (keep-alive), CLOSE_AFTER_RESPONSE (no
further request is served; close once the output is out: the request said so, HTTP/1.0, a
close-delimited body, a handler's Connection: close, a stopping server, the client's FIN),
CLOSE_LINGERING (the same, after an error answer or with request bytes unread). `conn.keep_alive` is
what the current response says in its Connection field: set per request from its head
(start_request), cleared by any escalation.

Timers fire through on_timeout(): a request caught mid-head or mid-body gets 408 and a lingering
close; anything else (idle, never used, not reading our output, lingering) is closed. A body below
body_min_rate gets the same 408 where it is read (timers.py). A new connection's HEADER deadline
counts from its accept (accepted()), so time spent in the listener's queue is the client's too.
"""
import select
import socket

from . import timers

PHASE_NAMES = ("NEW", "IDLE", "HEAD", "BODY", "HANDLER", "STREAMING", "FLUSHING", "SENDING",
               "LINGERING", "CLOSED")
EVENT_NAMES = ("ACCEPTED", "WAIT_REQUEST", "HEAD_BYTES", "BODY_BYTES", "TO_HANDLER", "ANSWERED",
               "STREAM_MORE", "OUTPUT_BLOCKED", "OUTPUT_DRAINED", "LINGER", "CLOSE")
CLOSE_POLICY_NAMES = ("NEVER", "AFTER_RESPONSE", "LINGERING")

NEW, IDLE, HEAD, BODY, HANDLER, STREAMING, FLUSHING, SENDING, LINGERING, CLOSED = range(len(PHASE_NAMES))
(ACCEPTED, WAIT_REQUEST, HEAD_BYTES, BODY_BYTES, TO_HANDLER, ANSWERED, STREAM_MORE, OUTPUT_BLOCKED,
 OUTPUT_DRAINED, LINGER, CLOSE) = range(len(EVENT_NAMES))
CLOSE_NEVER, CLOSE_AFTER_RESPONSE, CLOSE_LINGERING = range(len(CLOSE_POLICY_NAMES))

# The table above, as data: (event, phases it may come in, the phase it leads to).
TRANSITIONS = (
    ("ACCEPTED", ("NEW",), "HEAD"),
    ("WAIT_REQUEST", ("FLUSHING",), "IDLE"),
    ("HEAD_BYTES", ("IDLE", "HEAD", "FLUSHING"), "HEAD"),
    ("BODY_BYTES", ("IDLE", "HEAD", "BODY", "FLUSHING"), "BODY"),
    ("TO_HANDLER", ("IDLE", "HEAD", "BODY", "FLUSHING"), "HANDLER"),
    ("ANSWERED", ("IDLE", "HEAD", "BODY", "HANDLER", "STREAMING", "FLUSHING"), "FLUSHING"),
    ("STREAM_MORE", ("FLUSHING",), "STREAMING"),
    ("OUTPUT_BLOCKED", ("IDLE", "HEAD", "BODY", "FLUSHING", "SENDING"), "SENDING"),
    ("OUTPUT_DRAINED", ("SENDING",), "FLUSHING"),
    ("LINGER", ("IDLE", "HEAD", "FLUSHING"), "LINGERING"),
    ("CLOSE", ("NEW", "IDLE", "HEAD", "BODY", "HANDLER", "STREAMING", "FLUSHING", "SENDING",
               "LINGERING"), "CLOSED"),
)

# The phase table above, as data: (phase, epoll interest, timer kind, re-armed on every entry and
# not only when the kind changes). KEPT: entering the phase leaves what is registered or armed.
KEPT = None
PHASE_RULES = (
    ("NEW", KEPT, KEPT, False),
    ("IDLE", "IN", "IDLE", True),
    ("HEAD", "IN", "HEADER", False),
    ("BODY", "IN", "BODY", True),
    ("HANDLER", "IN", "NONE", False),
    ("STREAMING", "IN", "NONE", False),
    ("FLUSHING", KEPT, KEPT, False),
    ("SENDING", "OUT", "WRITE", False),
    ("LINGERING", "IN", "LINGER", True),
    ("CLOSED", KEPT, "NONE", False),            # close() takes the socket out of epoll itself
)

TIMER_KINDS = {"NONE": timers.NONE, "HEADER": timers.HEADER, "BODY": timers.BODY, "IDLE": timers.IDLE,
               "WRITE": timers.WRITE, "LINGER": timers.LINGER}
INTEREST_MASKS = {"IN": select.EPOLLIN, "OUT": select.EPOLLOUT}

# transition()'s results, as conn_transition()'s.
LEGAL = 0
ILLEGAL = -1                # nothing changed; counted
REFUSED = -2                # epoll refused the socket (adoption only: the caller drops it)


def _build_cells():
    """The table transition() reads, from the data above: by phase and event number, None (illegal)
    or what the event does: (next phase, its interest mask or 0: kept, its timer kind or None: kept,
    re-armed on every entry). One lookup per event."""
    effects = {}
    for phase, interest, timer, rearmed in PHASE_RULES:
        effects[phase] = (0 if interest is KEPT else INTEREST_MASKS[interest],
                          None if timer is KEPT else TIMER_KINDS[timer], rearmed)
    cells = [[None] * len(EVENT_NAMES) for _ in PHASE_NAMES]
    for event, sources, target in TRANSITIONS:
        for source in sources:
            cells[PHASE_NAMES.index(source)][EVENT_NAMES.index(event)] = (PHASE_NAMES.index(target),) + effects[target]
    return tuple(map(tuple, cells))


_CELLS = _build_cells()

# Phases in which Python has the connection (queued in, or being served by, the handler batch, or
# with a handler thread): its events wait. The worker's loop tests `conn.with_handler_thread` first
# (such a connection's phase is not its to read), then `conn.phase in PYTHON_PHASES`
# (conn_with_python).
PYTHON_PHASES = frozenset((HANDLER, STREAMING))


def next_phase(phase, event):
    """The phase `event` leads to from `phase` (numbers), or None when it is illegal there."""
    cell = _CELLS[phase][event]
    return None if cell is None else cell[0]


def transition(conn, event, progressed=False):
    """The only writer of conn.phase: move `conn` along `event` and give it the new phase's epoll
    interest (an epoll call only when it differs from what is registered) and timer. `progressed`
    (SENDING only): the client took bytes, so its write deadline starts again. Returns LEGAL;
    ILLEGAL for an event the table does not allow in the current phase (nothing changes; the
    worker counts it); REFUSED when epoll refused the socket (adoption only: the caller drops it)."""
    cell = _CELLS[conn.phase][event]
    if cell is None:
        conn.worker.illegal_transitions += 1
        return ILLEGAL
    conn.phase, interest, timer, rearmed = cell
    if conn.phase in PYTHON_PHASES and conn.worker.python_elsewhere:
        if conn.interest:                       # a handler thread has it: out of the epoll set (1)
            try:
                conn.worker.epoll.unregister(conn.fd)
            except OSError:
                pass
            conn.interest = 0
    elif interest and interest != conn.interest:
        try:
            if conn.interest:
                conn.worker.epoll.modify(conn.fd, interest)
            else:
                conn.worker.epoll.register(conn.fd, interest)
        except OSError:
            if not conn.interest:
                return REFUSED
        else:
            conn.interest = interest
    if timer is not None and (timer != conn.timer_kind or rearmed or progressed):
        worker = conn.worker
        worker.timers.arm(conn, timer, worker.now)
    return LEGAL


def accepted(conn, accepted_at):
    """ACCEPTED, with the head's deadline counted from the accept, not from now (conn_accepted).
    Returns as transition()."""
    result = transition(conn, ACCEPTED)
    if result == LEGAL and conn.timer_kind == timers.HEADER:
        worker = conn.worker
        worker.timers.arm_from(conn, timers.HEADER, accepted_at, worker.now)
    return result


def close_after(conn, policy):
    """The only writer of conn.close_policy: escalate it (never lower it). Any policy but
    CLOSE_NEVER also makes the current response say Connection: close."""
    if policy > conn.close_policy:
        conn.close_policy = policy
    if policy != CLOSE_NEVER:
        conn.keep_alive = False


def serves_more_requests(conn):
    return conn.close_policy == CLOSE_NEVER


OUTPUT_HIGH_WATER = 65536   # unsent response bytes beyond which pipelined requests wait


def pauses_serving(conn):
    """Output backpressure for pipelining (conn_pauses_serving): with OUTPUT_HIGH_WATER bytes of
    responses unsent, the next pipelined request is not parsed; the output goes out first, and a
    client that does not take it leaves the connection in SENDING, where its input is not read
    either. Connection.flush() resumes serving once the output is out."""
    if conn.out_size < OUTPUT_HIGH_WATER:
        return False
    conn.serving_paused = True
    return True


def start_request(conn):
    """A head was parsed (conn.parser.message): does its response keep the connection? (RFC 9112
    9.3: HTTP/1.1 persists unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.)
    A stopping server answers, then closes. The close policy itself changes only once the request
    is complete (request_complete): its body must still be read."""
    message = conn.parser.message
    if message.version_minor == 1:
        conn.keep_alive = not message.connection_close
    else:
        conn.keep_alive = message.connection_keep_alive and not message.connection_close
    if conn.worker.stop_requested:
        conn.keep_alive = False


def request_complete(conn):
    """The whole request is in: if its response closes the connection, nothing after it is served."""
    if not conn.keep_alive:
        close_after(conn, CLOSE_AFTER_RESPONSE)


def await_input(conn):
    """Everything answered is sent and the connection stays: wait for what the client owes next."""
    parser = conn.parser
    if conn.head_complete:
        transition(conn, BODY_BYTES)
    elif parser.inbuf or parser.empty_lines:
        transition(conn, HEAD_BYTES)
    else:
        transition(conn, WAIT_REQUEST)


def output_drained(conn):
    """The output is out (send and sendfile done): pull more of a streamed body, end the
    connection, or wait for the next request."""
    if conn.stream is not None:
        queue_for_python(conn, STREAM_MORE)
        return
    if conn.close_policy != CLOSE_NEVER:
        if conn.parser.inbuf:
            close_after(conn, CLOSE_LINGERING)          # pipelined bytes after a Connection: close
        finish(conn)
        return
    await_input(conn)


def finish(conn):
    """The last response is out: close, or linger first if the client may still be sending.

    Closing a socket with unread input makes the kernel send RST, and an RST can destroy the
    response before the client has read it (the client is told 413, say, while still uploading).
    So after an error answer, or with request bytes left unread, we half-close (the client sees FIN
    after our response), then discard what it still sends until its FIN, an error or the LINGER
    timer (timers.LINGER_TIMEOUT), and only then close: the lingering close of nginx and Apache."""
    if conn.close_policy != CLOSE_LINGERING or conn.peer_closed:
        conn.close()
        return
    conn.half_close()
    transition(conn, LINGER)
    conn.discard_input()


def queue_for_python(conn, event):
    """Hand the connection to Python (TO_HANDLER, or STREAM_MORE for the next part of a streamed
    body): to the ASGI loop (asgi.py), to the handler threads through the bridge, or inline to the
    worker's own batch at the end of this loop turn."""
    transition(conn, event)
    worker = conn.worker
    if worker.asgi is not None:
        worker.asgi.push(conn)
        return
    if worker.handler_threads:
        worker.bridge.push(conn)
        return
    worker.python_queue.append(conn)


def on_timeout(conn):
    """Its timer expired (and it is off the list already): a request caught mid-way gets a 408 and
    a lingering close; an idle or never-used connection, one that stopped reading, or one
    lingering is closed."""
    phase = conn.phase
    if phase == BODY or (phase == HEAD and conn.parser.inbuf):
        if phase == BODY:
            conn.worker.body_timeouts += 1
        else:
            conn.worker.header_timeouts += 1
        conn.fail(408)
        conn.flush()
    else:
        conn.close()


def close_idle_for_stop(conn):
    """A stopping server closes an idle connection (conn_close_idle_for_stop): one whose client has
    just sent its next request (unread in the kernel) is half-closed and drained first, so the
    client sees FIN, not RST; it closes at the client's FIN or at the next turn of the stopping
    loop, drained once more. One with nothing waiting is closed at once."""
    if conn.phase == LINGERING:
        if not conn.discard_input():                # it closes at the client's FIN
            conn.close()
        return
    try:
        waiting = conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        waiting = b""
    if waiting:
        close_after(conn, CLOSE_LINGERING)
        finish(conn)
        return
    conn.close()


def is_idle(conn):
    """Between requests (nothing read, nothing owed) or lingering: safe to close when stopping."""
    if conn.with_handler_thread:
        return False
    phase = conn.phase
    if phase == LINGERING:
        return True
    return (phase == IDLE or phase == HEAD) and not conn.parser.inbuf and not conn.out

"""fastcore.pure.batch: the handler batch: where a thread calls the handler.

Theory of operation (as pyext/batch.pxi). Two modes. Inline (handler_threads = 0): each I/O worker
runs its own batch at the end of its loop turn (run_python_batch). Handler threads
(handler_threads = N): the I/O workers never call a handler; N threads run handler_thread_run(),
taking connections from the bridge (bridge.py) one at a time (bridge.pxi says why), and handing each
back to its worker as soon as its handler returns, so a slow handler holds one handler thread, not
an I/O worker and the connections it serves.

Inline mode. run_python_batch() runs once per loop turn when connections wait in the worker's
python_queue (protocol.queue_for_python). It takes them in order, and for each: calls the handler
for its request (Conn.answer_with_handler), or pulls the next parts of its streamed body
(response.pull_stream), reports ANSWERED to the state machine, and goes on serving the
connection's pipelined requests until one needs the handler again. It stops after `python_batch`
calls, so one busy connection cannot monopolize the worker; a connection the budget leaves stays
first in the queue and the next turn's epoll does not block. The connections it answered are then
flushed. The compiled core takes the GIL once for such a batch; stats()' worker_gil_batches counts
these batches here (0 with handler threads).

Both modes answer a connection the same way (answer_one): no handler starts after the stop's
deadline (cut_at_deadline: a 503, or a streamed body cut off, counted so stop() can say how many
requests its deadline cut).
"""
import time

from . import response
from .bridge import inbox_push
from .connection import SERVE_DONE, SERVE_NEEDS_PYTHON
from .protocol import ANSWERED, CLOSE_LINGERING, CLOSED, TO_HANDLER, close_after, transition
from .response import DateCache, pull_stream
from .websocket_native import WebSocket, run_on_handler_thread


def run_python_batch(worker):
    """Inline mode: call the handler for the queued connections, at most python_batch times, then
    flush them (batch_run)."""
    budget = worker.python_batch
    answered = []
    python_queue = worker.python_queue
    while python_queue and budget > 0:
        conn = python_queue[0]
        if conn.phase == CLOSED:
            python_queue.popleft()
            continue
        while True:
            answer_one(worker, conn)
            budget -= 1
            result = conn.serve()
            if result != SERVE_NEEDS_PYTHON:
                break
            transition(conn, TO_HANDLER)        # the next pipelined request
            if budget == 0:
                break
        if result == SERVE_NEEDS_PYTHON:
            break                               # budget spent; this one goes first next turn
        python_queue.popleft()
        answered.append(conn)
    for conn in answered:
        conn.finish_turn(SERVE_DONE)


class HandlerContext:
    """What a handler thread works with (a handler context in pyext/core.pxi): while a connection
    is with the thread, conn.worker is this, so the responses it writes, the Date line they carry,
    the bytes it moves (request.stream, streamed bodies) and the events it reports are this
    thread's own. These are the fields code reaches through conn.worker outside an I/O worker's
    loop; an I/O worker (worker.Worker) is one of these plus its epoll set, timers, connections and
    loop, as in the compiled engine a handler context is a Worker struct without them."""

    def __init__(self, core, index):
        self.index = index
        self.handler = core.handler
        self.asgi = core.asgi                   # the ASGI bridge (asgi.py) when the server runs an ASGI app
        # Python runs off the I/O worker (handler threads, or the ASGI loop): a connection it has
        # leaves the epoll set and comes back through the inbox.
        self.python_elsewhere = core.handler_threads > 0 or core.asgi is not None
        self.serves_python = core.handler is not None or core.asgi is not None
        self.access_log = core.access_log
        self.limits = core.limits
        self.proxies = core.proxies                         # fastcore.proxy.TrustedProxies, or None
        self.body_buffer_size = core.body_buffer_size
        self.python_batch = core.python_batch
        self.formats = core.formats
        self.body_timeout = core.body_timeout or None
        self.body_min_rate = core.body_min_rate             # bytes/s (0: not enforced; timers.py)
        self.body_min_rate_grace = core.body_min_rate_grace
        self.handler_threads = core.handler_threads
        self.date = DateCache()
        self.now = time.monotonic()
        self.stop_requested = False             # graceful stop asked for (set by Core.stop_workers)
        self.stop_deadline = 0.0                # force-close everything after this (monotonic)
        self.requests_cut_at_stop = 0           # refused (503) or closed mid-way by the stop's deadline
        self.handlers_past_deadline = 0         # handler calls that returned after it
        self.header_timeouts = 0                # 408s: a head not complete within header_timeout
        self.body_timeouts = 0                  # 408s: no body byte within body_timeout
        self.body_rate_timeouts = 0             # 408s: a body slower than body_min_rate
        self.responses = [0] * 6                # by status class: [1] 1xx ... [5] 5xx, [0] anything else
        self.bytes_received = 0
        self.bytes_sent = 0
        self.sendfile_bytes = 0
        self.illegal_transitions = 0            # events the state machine refused (protocol.py): must stay 0

    def count_response(self, status):
        status_class = status // 100
        self.responses[status_class if 1 <= status_class <= 5 else 0] += 1


def handler_thread_run(core, context):
    """A handler thread (handler_threads > 0; bridge.py): take connections from the bridge, call
    the handler for each, and hand each back to its worker as soon as its handler returns."""
    bridge = core.bridge
    while True:
        conn = bridge.take()                    # one at a time, as the compiled engine
        if conn is None:
            return                              # stopped
        if type(conn) is WebSocket:             # a native WebSocket's callbacks (Bridge.push_task)
            run_on_handler_thread(core, conn)
            continue
        context.now = time.monotonic()
        context.date.refresh()
        home = conn.home
        conn.worker = context                   # its responses and counters are this thread's while it is here
        try:
            answer_one(home, conn)              # ANSWERED: phase only, FLUSHING keeps epoll and timer
        finally:
            conn.worker = home
        inbox_push(conn)                        # the response leaves now


def answer_one(home, conn):
    """Answer `conn`'s request with the handler, or pull its streamed body's next parts, or, past
    the stop's deadline (of `home`, its I/O worker), cut it; then report ANSWERED. A handler that
    returns after the deadline has overrun it: counted (batch.pxi: batch_answer_one)."""
    if stop_deadline_passed(home):
        cut_at_deadline(conn.worker, conn)      # no handler starts after the deadline
        transition(conn, ANSWERED)
        return
    if conn.stream is not None:
        pull_stream(conn)
    else:
        conn.answer_with_handler()
    if stop_deadline_passed(home):              # the handler overran the deadline: counted
        conn.worker.handlers_past_deadline += 1
        close_after(conn, CLOSE_LINGERING)
    transition(conn, ANSWERED)


def stop_deadline_passed(worker):
    return worker.stop_requested and time.monotonic() >= worker.stop_deadline


def cut_at_deadline(worker, conn):
    """As batch.pxi's batch_cut_at_deadline: a request still waiting for the handler is answered
    503 and the connection closes; a streamed response body is cut off. Counted."""
    worker.requests_cut_at_stop += 1
    close_after(conn, CLOSE_LINGERING)
    if conn.stream is not None:
        conn.release_stream()
        return
    response.append_error_response(conn, 503, conn.parser.message.is_head if conn.parser.message else False)
    conn.parser.inbuf.clear()
    conn.finish_request()

"""fastcore.pure.bridge: handler-thread mode: I/O workers hand connections to Python threads and
take them back.

Theory of operation (as pyext/bridge.pxi). With handler_threads = N > 0, the I/O workers never
call a handler: Python handlers run on N handler threads beside them. A connection whose request
needs the handler (TO_HANDLER) or whose streamed body wants its next part (STREAM_MORE) is appended
by its worker to the Bridge: a deque of connections under one threading.Condition, which the
handler threads sleep on. From then until it comes back, the connection belongs to the handler
thread that takes it:

  * its worker has taken it out of its epoll set (in this mode the HANDLER and STREAMING phases
    have no epoll interest: protocol.py), no timer runs for it, and it is marked
    `with_handler_thread`: the worker reads nothing else of it until it comes back;
  * the handler thread works on it with a context of its own (batch.py: HandlerContext, its Date
    line and counters): while it is there, `conn.worker` is that context and `conn.home` the I/O
    worker it lives in, so nothing it touches is shared with an I/O worker.

A handler thread takes one connection at a time (batch.py: handler_thread_run; bridge.pxi says
why) and hands it back to its home worker's inbox as soon as its handler returns: one lock, and a wake-up of the worker's Wakeup when the inbox was empty. The worker
drains its inbox when woken and goes on as after an inline batch: serve what is pipelined behind
(which may hand the connection over again), send.

Python objects: the compiled engine's workers park the bodies they are done with for a handler
thread to release under the GIL; here a worker closes them at once, as in inline mode (difference 4
in __init__.py), so nothing is parked on the bridge.

Stop: handler threads run until Core.stop_handlers() (after the I/O workers have returned: they
wait for every connection a handler thread holds, until the stop's deadline). No handler starts
after the deadline (batch.py); a handler that never returns keeps its handler thread, and stop()
leaves that thread to release the core when it does (fastcore/server.py: _HandlerThreads).
"""
import collections
import threading


class Bridge:
    """The FIFO of connections waiting for a handler thread (Bridge in pyext/state.pxi)."""

    __slots__ = ("ready", "waiting", "stopped")

    def __init__(self):
        self.ready = threading.Condition(threading.Lock())     # notified when work arrives, all at stop
        self.waiting = collections.deque()      # connections whose request or stream pull waits for Python
        self.stopped = False                    # handler threads return once set and the deque is empty

    def push(self, conn):
        """Hand `conn` (already in HANDLER or STREAMING, out of the epoll set) to the handler
        threads (bridge_push)."""
        conn.with_handler_thread = True
        with self.ready:
            self.waiting.append(conn)
            self.ready.notify()

    def push_task(self, ws):
        """Hand a native WebSocket whose callbacks are due to the handler threads
        (websocket_native.py; it stays in its worker's epoll set)."""
        with self.ready:
            self.waiting.append(ws)
            self.ready.notify()

    def take(self):
        """For a handler thread: wait until a connection waits (or the stop), then take the first.
        Returns it; None once stopped with nothing left (bridge_take)."""
        waiting = self.waiting
        with self.ready:
            while not waiting and not self.stopped:
                self.ready.wait()
            if not waiting:
                return None
            conn = waiting.popleft()
            if waiting:
                self.ready.notify()             # more for another handler thread
            return conn

    def stop(self):
        with self.ready:
            self.stopped = True
            self.ready.notify_all()


def inbox_push(conn):
    """For a handler thread: give `conn` back to its home worker, waking it if its inbox was empty.
    After this the handler thread does not touch the connection."""
    home = conn.home
    with home.inbox_lock:
        was_empty = not home.inbox
        home.inbox.append(conn)
    if was_empty:
        home.wakeup.wake()


def drain_inbox(worker):
    """Carry on with the connections handler threads gave back (worker_drain_inbox): as after an
    inline batch, serve what is pipelined behind the answer (which may hand the connection over
    again), then send."""
    with worker.inbox_lock:
        if not worker.inbox:
            return
        given_back = list(worker.inbox)
        worker.inbox.clear()
    for conn in given_back:
        conn.with_handler_thread = False
        conn.finish_turn(conn.serve())

"""fastcore.pure.worker: a worker thread's event loop.

Theory of operation (as pyext/worker.pxi). Each worker owns a select.epoll set holding its wake-up
descriptor and its connections, and a dict fd -> Conn. One loop turn: epoll.poll(); refresh the Date
line; for the wake-up, take the connections the listener queued for us (adopting one reads it at
once: the client usually sent its request right after connecting); for each connection, what its
phase waits for (protocol.py): read / serve / write, or discard what a lingering one still receives
(connection.py). Requests for the handler are collected over the whole turn and answered at its end
by batch.run_python_batch(), at most `python_batch` calls; what the cap leaves waits for the next
turn, which then does not block in epoll. The compiled core takes the GIL once for that batch; here
the batch keeps the same order and fairness (pipelined requests answered by one send, one busy
connection cannot monopolize the worker).

With handler threads (handler_threads > 0) there is no batch here: a request for the handler is
handed to the bridge (bridge.py) and the connection leaves the epoll set until a handler thread gives
it back through the worker's inbox, drained when the wake-up fires; the loop skips a connection
marked with_handler_thread without reading anything else of it.

Timeouts: timers.py keeps one list per kind; epoll sleeps until the earliest deadline and
expire_timers() hands each connection whose deadline passed to protocol.on_timeout() at the end of
every turn.

Stopping: Core.stop_workers() sets stop_requested and a deadline and wakes us. From then on every
response says Connection: close, connections idle between requests or lingering after their last
answer are closed at once, the rest finish their request, and at the deadline whatever remains is
closed (but what a handler thread holds: Core.release() closes that). The loop ends when the worker
has no connection left, or at the deadline.
"""
import collections
import queue
import select
import time

import threading

from . import protocol, timers, websocket_native
from .batch import HandlerContext, run_python_batch
from .bridge import drain_inbox
from .connection import Conn
from .protocol import CLOSE_LINGERING, LINGERING, PYTHON_PHASES, SENDING
from .wakeup import Wakeup

EPOLL_BATCH = 256           # events taken per epoll.poll()


class Worker(HandlerContext):
    def __init__(self, core, index):
        super().__init__(core, index)           # handler, limits, Date line, stop flags, counters
        self.queue = core.queue
        self.routes = core.formats.routes
        # raw path bytes -> WebSocketRoute (Server.add_websocket), as static routes are matched
        self.ws_routes = {path.encode("utf-8"): route for path, route in core.websocket_routes.items()}
        self.ws_open = set()                    # native WebSockets not ended (websocket_native.py)
        self.ws_ready = collections.deque()     # inline mode: WebSockets whose callbacks are due
        self.ws_notices = collections.deque()   # WebSockets with sends / a close to pump (inbox_lock)
        self.ws_timers = []                     # heap of their pings and close deadlines
        self.timers = timers.Timers(core.header_timeout, core.body_timeout, core.keepalive_timeout,
                                    core.write_timeout)
        self.connections = {}                   # fd -> Conn
        self.python_queue = collections.deque()  # inline mode: connections waiting for a handler call, in order
        self.bridge = core.bridge
        self.inbox = collections.deque()        # handler-thread mode: connections handed back (bridge.py)
        self.inbox_lock = threading.Lock()
        self.gil_batches = 0                    # inline batches run (the compiled core takes the GIL once each)
        self.idle = False                       # blocked in epoll with no work in hand (read by the listener)
        self.stopping = False                   # this thread's own copy of stop_requested, once seen
        self.closed_count = 0                   # connections closed here (for stats: open = opened - closed)
        self.requests = 0                       # heads parsed
        self.queue_expired = 0                  # connections that waited in the queue past header_timeout
        self.wakeup = Wakeup()
        try:
            self.epoll = select.epoll()
        except BaseException:
            self.wakeup.close()
            raise
        self.epoll.register(self.wakeup.fileno(), select.EPOLLIN)

    # -- called from other threads --------------------------------------------------------------------

    def request_stop(self, deadline):
        self.stop_deadline = deadline
        self.stop_requested = True
        self.wakeup.wake()

    # -- the loop ------------------------------------------------------------------------------------

    def run(self):
        wake_fd = self.wakeup.fileno()
        connections = self.connections
        epoll = self.epoll
        self.now = time.monotonic()
        self.date.refresh()
        while True:
            if self.stopping:
                self.close_idle_connections()
                if not connections and not self.ws_ready:
                    break
                if self.now >= self.stop_deadline:
                    # What a handler thread still holds stays in our dict, for Core.release() to
                    # close once that thread has given it back and returned (Server.stop).
                    self.close_all_connections(False)
                    break
            if not self.python_queue and not self.ws_ready:
                self.idle = True
                # As worker.pxi: a worker about to sleep takes what still waits in the queue, so no
                # connection credited to a worker stuck in a handler waits for it.
                if not self.queue.empty():
                    self.adopt_from_queue(self.queue.maxsize)
            events = epoll.poll(self.wait_seconds(), EPOLL_BATCH)
            self.idle = False
            self.now = time.monotonic()
            self.date.refresh()
            if not self.stopping and self.stop_requested:
                self.stopping = True
                websocket_native.going_away(self)   # 1001 to every open native WebSocket
            for fd, mask in events:
                if fd == wake_fd:
                    self.take_queued_connections()
                    if self.python_elsewhere:
                        drain_inbox(self)
                    websocket_native.drain_notices(self)
                    continue
                conn = connections.get(fd)
                if conn is None:
                    continue                        # closed this turn
                if conn.websocket is not None:
                    conn.websocket.on_event(mask)   # a native WebSocket's (websocket_native.py)
                    continue
                if conn.with_handler_thread:
                    continue                        # not ours to read until it comes back (bridge.py)
                phase = conn.phase
                if phase in PYTHON_PHASES:
                    continue                        # Python has it: its batch runs at the end of the turn
                if phase == LINGERING:
                    conn.discard_input()
                elif phase == SENDING:
                    conn.flush()
                else:
                    conn.on_readable()
            if self.python_queue:
                self.gil_batches += 1
                run_python_batch(self)
            if self.ws_ready:
                websocket_native.run_inline_callbacks(self)
            self.expire_timers()

    def wait_seconds(self):
        """How long epoll may sleep: until the earliest timer, the stop deadline, or not at all when
        a handler batch is left over from the last turn."""
        if self.python_queue or self.ws_ready:
            return 0
        timeout = self.timers.wait(self.now)
        ws_timeout = websocket_native.timers_wait(self)
        if ws_timeout >= 0 and (timeout < 0 or ws_timeout < timeout):
            timeout = ws_timeout
        if self.stopping:
            remaining = max(0.0, self.stop_deadline - self.now)
            if timeout < 0 or remaining < timeout:
                timeout = remaining
        return timeout

    def take_queued_connections(self):
        self.adopt_from_queue(self.wakeup.take())

    def adopt_from_queue(self, wanted):
        """Take up to `wanted` connections from the queue (fewer when it holds fewer) and adopt them."""
        # The clock of this turn may be old by now (an inline batch ran since): adoption measures
        # how long each connection waited in the queue against it.
        self.now = time.monotonic()
        for _ in range(wanted):
            try:
                sock, peer, accepted_at = self.queue.get_nowait()
            except queue.Empty:
                break
            self.adopt(sock, peer, accepted_at)

    def adopt(self, sock, peer, accepted_at):
        """Take a freshly accepted socket into this worker's epoll set and try reading at once. Its
        first head is due header_timeout after the accept (protocol.accepted); one that waited in
        the queue that long is closed unread and counted (conn_adopt says why)."""
        header_timeout = self.timers.durations[timers.HEADER]
        if header_timeout > 0 and self.now - accepted_at >= header_timeout:
            self.queue_expired += 1             # before the close a client (a test) may see
            self.closed_count += 1
            sock.close()
            return
        conn = Conn(self, sock, peer)
        if protocol.accepted(conn, accepted_at) != protocol.LEGAL:    # into the epoll set; the first request is due
            sock.close()
            self.closed_count += 1
            return
        self.connections[conn.fd] = conn
        conn.on_readable()

    def stats(self):
        """This worker's counters (each written by this thread only)."""
        return {
            "requests": self.requests,
            "open_connections": len(self.connections),
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "responses": {("%dxx" % status_class if status_class else "other"): count
                          for status_class, count in enumerate(self.responses)},
        }

    def static_route(self, message):
        """The static route answering `message` (GET or HEAD on its exact path), or None."""
        if not self.routes or not (message.is_get or message.is_head):
            return None
        return self.routes.get(message.path)

    def expire_timers(self):
        """Hand every connection whose deadline has passed to the state machine (protocol.on_timeout)."""
        for _, conn in self.timers.expire(self.now):
            protocol.on_timeout(conn)
        if self.ws_timers:
            websocket_native.expire_timers(self)

    # -- stopping ------------------------------------------------------------------------------------

    def close_idle_connections(self):
        for conn in list(self.connections.values()):
            if protocol.is_idle(conn):
                protocol.close_idle_for_stop(conn)

    def close_all_connections(self, threads_gone):
        """The stop's deadline: close everything but what a handler thread still holds (closing it
        under that thread would pull the socket from under its handler; it is closed by
        Core.release() once the thread has returned); with `threads_gone` (Core.release),
        everything. A connection in the middle of a request is counted as cut (lingering ones were
        answered already)."""
        self.python_queue.clear()
        for conn in list(self.connections.values()):
            if conn.with_handler_thread and not threads_gone:
                continue
            if conn.websocket is not None:
                conn.websocket.abandon()            # on_close (1006) still runs
            elif not protocol.is_idle(conn) and conn.close_policy != CLOSE_LINGERING:
                self.requests_cut_at_stop += 1
            conn.close()
        if self.ws_ready:
            websocket_native.run_inline_callbacks(self)

    def close(self):
        """Free what the thread used. Only once it has returned from run() (or never ran)."""
        self.close_all_connections(True)
        self.epoll.close()
        self.wakeup.close()

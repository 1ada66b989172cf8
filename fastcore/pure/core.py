"""fastcore.pure.core: Core, the object that owns one server's state and runs its threads.

Theory of operation. The pure twin of fastcore._core.Core (pyext/core.pxi), with the same life
cycle, so fastcore.server.Server's stop(), stats() and the rest work on it unchanged:
fastcore.pure.Server builds a Core around the listening socket and starts threading.Thread objects
whose targets are run_listener(), run_worker(i) and, with handler_threads > 0, run_handler(i).
Stopping is in steps so that no connection is stranded: stop_listener() (then join that thread),
stop_workers(timeout) (then join them), stop_handlers() (then join those, a short grace past the
deadline), then release(), which closes what the threads used (epoll sets, wake-ups, connections
still queued or still held for a handler thread).
Core never closes the listening socket: the Server that made it does.

    listener thread   listener.py: accept, queue, wake a worker
    queue             queue.Queue(maxsize=queue_size) of (socket, peer address, accept time)
    worker threads    worker.py + connection.py: epoll, read, parse (parser.py), answer
                      (response.py, request.py), write, keep-alive, timeouts (timers.py);
                      handler calls batched per loop turn (batch.py) when handler_threads = 0
    handler threads   batch.py + bridge.py (handler_threads > 0): take connections from the bridge,
                      call the handler, hand each back to its worker's inbox
    ASGI              asgi.py (Dispatch.asgi set): the same hand-off, to the server's event loop,
                      which watches asgi_fd and runs asgi_drain(); asgi_in_flight() and
                      asgi_cancel() serve the stop
"""
import queue
import time

from ..proxy import trusted_proxies
from .asgi import ASGIBridge
from .batch import HandlerContext, handler_thread_run
from .bridge import Bridge
from .listener import Listener
from .response import Formats
from .worker import Worker


class Core:
    def __init__(self, config, listening, dispatch, static_routes, websocket_routes=None):
        """As the compiled Core: `config` is a fastcore.ServerConfig (its limit fields are read by
        the parser directly), `listening` the listening socket, `dispatch` a fastcore._core.Dispatch
        (this engine always calls dispatch.handler: it has no compiled WSGI path), `static_routes`
        (path, status, content_type, body) tuples as Server.add_static keeps them, `websocket_routes`
        path -> fastcore.websocket.WebSocketRoute (Server.add_websocket)."""
        self.websocket_routes = dict(websocket_routes or {})
        self.handler = dispatch.handler
        # An ASGI app (fastcore.asgi.ASGIApp): every request for Python goes to the event loop.
        self.asgi = ASGIBridge(dispatch.asgi, config.write_timeout, config) if dispatch.asgi is not None else None
        self.limits = config
        self.proxies = trusted_proxies(config.forwarded_allow_ips)
        self.body_buffer_size = config.body_buffer_size if config.body_buffer_size > 0 else config.max_body_size
        self.python_batch = config.python_batch
        self.access_log = config.access_log             # log the responses the engine writes itself
        self.max_connections = config.max_connections
        self.header_timeout = config.header_timeout
        self.body_timeout = config.body_timeout
        self.body_min_rate = config.body_min_rate
        self.body_min_rate_grace = config.body_min_rate_grace
        self.keepalive_timeout = config.keepalive_timeout
        self.write_timeout = config.write_timeout
        self.formats = Formats(config.server_name, static_routes)
        self.queue = queue.Queue(maxsize=config.queue_size)
        self.handler_threads = config.handler_threads   # 0: inline (each I/O worker runs its own batch)
        self.bridge = Bridge()
        self.workers = []
        # A handler thread's context: its Date line and counters, kept to itself (batch.py).
        self.handler_contexts = [HandlerContext(self, index) for index in range(self.handler_threads)]
        if self.asgi is not None:                       # the loop's context, as a handler thread's
            self.asgi.context = HandlerContext(self, config.threads)
        self.listener = None
        self._released = False
        try:
            for index in range(config.threads):
                self.workers.append(Worker(self, index))
            self.listener = Listener(self, listening)
        except BaseException:
            self.release()
            raise

    # -- threads ---------------------------------------------------------------------------------------

    def run_listener(self):
        self.listener.run()

    def run_worker(self, index):
        self.workers[index].run()

    @property
    def released(self):
        return self._released

    def run_handler(self, index):
        """A handler thread's loop (handler_threads > 0): returns after stop_handlers()."""
        handler_thread_run(self, self.handler_contexts[index])

    def stop_handlers(self):
        """Let the handler threads return once the bridge is empty: after the workers have returned."""
        self.bridge.stop()

    def stop_listener(self):
        self.listener.request_stop()

    def stop_workers(self, timeout):
        """Graceful stop: finish in-flight requests, close idle connections, force-close at the deadline."""
        deadline = time.monotonic() + timeout
        for context in self.python_contexts():
            context.stop_deadline = deadline
            context.stop_requested = True
        for worker in self.workers:
            worker.request_stop(deadline)
        if self.asgi is not None:
            self.asgi.stop_websockets()                 # open WebSockets close with 1001 at once

    def release(self):
        """Close what the threads used. Only once every thread has returned from run_listener/run_worker."""
        if self._released:
            return
        self._released = True
        while True:                                     # accepted but never served
            try:
                sock, _, _ = self.queue.get_nowait()
            except queue.Empty:
                break
            sock.close()
        if self.listener is not None:
            self.listener.close()
        for worker in self.workers:
            worker.close()
        if self.asgi is not None:
            self.asgi.close()

    # -- ASGI (asgi.py): the loop's side -----------------------------------------------------------------

    @property
    def asgi_fd(self):
        """Readable while connections wait for the loop: loop.add_reader(core.asgi_fd, core.asgi_drain)."""
        return self.asgi.wakeup.fileno()

    def asgi_drain(self):
        """On the loop thread: start a cycle for every waiting request."""
        self.asgi.drain()

    def asgi_in_flight(self):
        """Cycles whose task has not finished."""
        return len(self.asgi.cycles) if self.asgi is not None else 0

    def asgi_cancel(self):
        """On the loop thread: cancel every cycle still in flight (a stop's deadline)."""
        if self.asgi is not None:
            self.asgi.cancel()

    def python_contexts(self):
        """Where Python answers besides the I/O workers: handler threads' contexts, the loop's."""
        return self.handler_contexts + ([self.asgi.context] if self.asgi is not None else [])

    # -- counters --------------------------------------------------------------------------------------

    def open_connections(self):
        opened = self.listener.opened if self.listener is not None else 0
        return opened - sum(worker.closed_count for worker in self.workers)

    def take_access_lines(self):
        """(Core.take_access_lines) The pure engine logs its own responses as it writes them."""
        return b""

    def debug_counters(self):
        """Counts that must be zero once the server has stopped (tests/conftest.py checks them, as
        it checks the compiled Core's): events the state machine refused in their phase
        (protocol.py). Readable after release()."""
        return {"illegal_transitions": sum(worker.illegal_transitions
                                           for worker in self.workers + self.python_contexts())}

    def stats(self):
        """Server-wide counters plus the per-worker ones (each written only by its worker) summed."""
        listener = self.listener
        per_worker = [worker.stats() for worker in self.workers]
        # Handler threads count the responses they write and the bytes they move (request.stream,
        # streamed bodies) in their own contexts: added to the totals, not listed per worker.
        contexts = self.python_contexts()
        responses = {key: sum(worker["responses"][key] for worker in per_worker)
                     for key in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")}
        for context in contexts:
            for status_class, count in enumerate(context.responses):
                responses["%dxx" % status_class if status_class else "other"] += count
        return {
            "requests": sum(worker["requests"] for worker in per_worker),
            "responses": responses,
            "bytes_received": (sum(worker["bytes_received"] for worker in per_worker)
                               + sum(context.bytes_received for context in contexts)),
            "bytes_sent": (sum(worker["bytes_sent"] for worker in per_worker)
                           + sum(context.bytes_sent for context in contexts)),
            "workers": per_worker,
            "handler_threads": len(self.handler_contexts),
            "worker_gil_batches": sum(worker.gil_batches for worker in self.workers),
            "accepted": listener.accepted,
            "rejected_queue_full": listener.rejected_queue_full,
            "rejected_connection_limit": listener.rejected_connection_limit,
            "sendfile_bytes": sum(worker.sendfile_bytes for worker in self.workers),
            "requests_cut_at_stop": sum(worker.requests_cut_at_stop for worker in self.workers + contexts),
            "handlers_past_deadline": sum(worker.handlers_past_deadline for worker in self.workers + contexts),
            "header_timeouts": sum(worker.header_timeouts for worker in self.workers),
            "body_timeouts": sum(worker.body_timeouts for worker in self.workers + contexts),
            "body_rate_timeouts": sum(worker.body_rate_timeouts for worker in self.workers + contexts),
            "queue_expired": sum(worker.queue_expired for worker in self.workers),
            "open_connections": self.open_connections(),
            "accept_pauses": listener.accept_pauses,
            "access_lines_dropped": 0,                  # it logs each line as it writes it
            "accept_exhaustions": listener.accept_exhaustions,
            "accept_exhaustion_errno": listener.accept_exhaustion_errno,
        }

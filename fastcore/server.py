"""Server: the Python face of the compiled core, and its lifecycle (and WSGIServer, a Server that
runs a WSGI application, and ASGIServer, one that runs an ASGI application on an event loop).

Theory of operation. start() opens the listening socket (fastcore.sockets, non-blocking), hands its
fd to a fastcore._core.Core together with the ServerConfig, the static routes and the Dispatch (how
requests reach Python: the handler under its wrappers, and the WSGI adapter the compiled engine may
answer for in C; see _dispatch), and starts one listener
thread and `threads` worker threads. Their targets are Core methods that release the GIL and stay
in C until stopped, so Python sees them as ordinary threads (faulthandler, py-spy). The calling
thread returns at once; serve_forever() then waits on an Event, which a signal handler (main
thread only), stop() or the end of a `with` block sets.

stop(timeout) goes in the order that strands nothing: stop the listener and join it (no new
connection reaches the queue), close the listening socket (new clients are refused), ask the
workers to finish in-flight requests (their responses say Connection: close; idle keep-alive
connections close at once; everything left is force-closed at the deadline), join them, then free
the C state. If a handler never returns, its thread cannot be joined: the C state is then leaked
on purpose (freeing it under a running thread would crash) and a warning is logged.

ASGIServer wraps that lifecycle: start() runs the app's lifespan startup on the server's event loop
(a LoopThread) before the listener exists, and the core is built with the loop watching its
asgi_fd; stop() lets the cycles on the loop finish within the same deadline (then cancels them),
stops watching, runs the lifespan shutdown and stops the loop (fastcore.asgi says how requests get
to the loop).

Layering: this module builds on the compiled core, config, errors, sockets, the access log, the
metrics route, the WSGI adapter (fastcore.wsgi_adapter) and the ASGI parts (fastcore.asgi), which
is why ASGIServer lives here beside WSGIServer; fastcore.supervisor is imported when
processes > 1. Nothing it imports imports it: fastcore.wsgi, fastcore.pure and the command line
build on it (tests/test_imports.py).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self, Unpack

from . import _core, access, metrics, sockets
from .watchdog import HandlerWatchdog, LoopWatchdog
from .asgi import ASGIApp, ASGIAppCallable, CallerLoop, Lifespan, LoopThread
from .config import ServerConfig, ServerOptions
from .errors import ConfigError, ServerStateError
from .websocket import WebSocketRoute
from .wsgi_adapter import WSGIHandler, refuse_async_callable

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    # What a native handler is: request -> Response, or bytes / str for a 200.
    Handler = Callable[[_core.Request], _core.Response | bytes | str]

log = logging.getLogger("fastcore.error")

# At most one "out of descriptors" line per server this often; the episodes in between are
# counted into the next line (and always in stats()).
ACCEPT_EXHAUSTION_LOG_INTERVAL = 60.0

# Servers still running at interpreter exit are stopped, so their threads leave C cleanly.
_running_servers = weakref.WeakSet()

# How long stop() waits, past the graceful deadline, for a worker that is inside a handler (inline
# mode): the worker closes its connections at the deadline but can leave only when the handler
# returns. A stop therefore takes at most shutdown_timeout + HANDLER_RETURN_GRACE seconds (--help
# says so).
HANDLER_RETURN_GRACE = 5.0
# How long stop() waits, after its deadline, for handler threads still inside a handler (those
# are then left to release the core themselves, so stop() returns sooner than with inline handlers).
HANDLER_THREADS_GRACE = 1.0


class _HandlerThreads:
    """The handler threads of one start (handler_threads > 0). stop() waits for them a short grace
    past its deadline; a thread still inside a handler then is left running, and the last of them to
    return releases the core (freeing it under a running thread would crash), so stop() returns in
    time and nothing leaks once the handler returns."""

    def __init__(self, core: Any, count: int, port: int) -> None:
        self.core = core
        self.lock = threading.Lock()
        self.running = count
        self.abandoned = False
        self.threads = [threading.Thread(target=self.run, args=(index,),
                                         name=f"fastcore-handler-{index}:{port}", daemon=True)
                        for index in range(count)]

    def run(self, index: int) -> None:
        try:
            self.core.run_handler(index)
        finally:
            with self.lock:
                self.running -= 1
                release = self.abandoned and self.running == 0
            if release:
                self.core.release()

    def join(self, until: float) -> list[str]:
        for thread in self.threads:
            while thread.is_alive() and time.monotonic() < until:
                thread.join(0.05)
        return [thread.name for thread in self.threads if thread.is_alive()]

    def abandon(self) -> None:
        """stop() gives up waiting: the last thread to return releases the core."""
        with self.lock:
            self.abandoned = True
            release = self.running == 0
        if release:
            self.core.release()


class Server:
    """An HTTP/1.1 server: `handler(request) -> Response` for Python routes, static routes in C.

        server = Server(handler, host="127.0.0.1", port=8000, threads=2)
        server.add_static("/health", b"OK")
        server.serve_forever()          # or: with Server(handler, port=0) as s: ... s.port ...

    With access_log=True the handler runs under access.access_logged (one "fastcore.access" line
    per response) unless it has a true `logs_access` attribute (a WSGIHandler logs itself).
    Server.wsgi(app, **options) is the WSGI constructor next to this native one: a WSGIServer.
    """

    # The code that calls handlers on this engine's threads, for the hung-handler watchdog
    # (fastcore.watchdog): the compiled engine's threads enter C from these two and call handlers
    # from C. fastcore.pure.Server names its own.
    _handler_callers = (threading.Thread.run.__code__, _HandlerThreads.run.__code__)

    def __init__(self, handler: Handler | None = None, config: ServerConfig | None = None,
                 **options: Unpack[ServerOptions]) -> None:
        if handler is not None and not callable(handler):
            raise TypeError("handler must be callable (request -> Response) or None")
        if handler is not None:
            refuse_async_callable(handler, "a native handler is a plain callable, request -> Response")
        base = config if config is not None else ServerConfig()
        self.config = base.replace(**options) if options else base
        self.handler = handler
        self._static_routes = {}
        self._websocket_routes = {}
        self._core = None
        self._socket = None
        self._last_port = None                  # the port of the last start (port after stop())
        self._listener_thread = None
        self._worker_threads = []
        self._handlers = None
        self._lifecycle_lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._join_deadline = float("inf")
        self._exhaustion_report_lock = threading.Lock()
        self._exhaustions_reported = 0            # episodes of descriptor exhaustion already logged
        self._exhaustion_logged_at = float("-inf")
        self._requests_cut = False              # the last stop closed connections it had not finished
        self._watchdog = None                   # config.timeout > 0: the HandlerWatchdog of this start
        self._core_access_lines = None          # config.access_log: access.CoreAccessLines of this start
        self._on_handler_timeout = None         # called after a hung handler is reported (supervisor)
        self._process_stats = None              # in a supervised child: fastcore.process_stats.ChildStats
        self._stats_at_stop = None              # stats() as the last stop left them (the supervisor publishes them)

    @classmethod
    def wsgi(cls, app: WSGIApplication, config: ServerConfig | None = None,
             **options: Unpack[ServerOptions]) -> WSGIServer:
        """Server.wsgi(app, **options) -> a WSGIServer for the WSGI application `app`.
        (fastcore.pure.Server.wsgi gives the pure engine's WSGIServer.)"""
        return WSGIServer(app, config, **options)

    @classmethod
    def asgi(cls, app: ASGIAppCallable, config: ServerConfig | None = None,
             **options: Unpack[ServerOptions]) -> ASGIServer:
        """Server.asgi(app, **options) -> an ASGIServer for the ASGI 3 application `app`.
        (fastcore.pure.Server.asgi gives the pure engine's ASGIServer.)"""
        return ASGIServer(app, config, **options)

    # -- configuration ---------------------------------------------------------------------------

    def add_static(self, path: str, body: bytes | str, content_type: str = "text/plain", status: int = 200) -> None:
        """Answer GET and HEAD on exactly `path` (query ignored) with a fixed response, in C."""
        if self._core is not None:
            raise ServerStateError("add_static must be called before start()")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError("a static route's path is a str starting with '/'")
        if isinstance(body, str):
            body = body.encode("utf-8")
        if any(c in content_type for c in "\r\n\0"):
            raise ConfigError("content_type must not contain CR, LF or NUL")
        self._static_routes[path] = (path, int(status), content_type, bytes(body))

    def add_websocket(self, path: str, on_message: Callable[[Any, bytes | str], None],
                      on_open: Callable[[Any], None] | None = None,
                      on_close: Callable[[Any, int, str], None] | None = None) -> None:
        """Serve WebSockets on exactly `path` (query ignored) without an event loop: the server
        accepts valid handshakes itself, and calls on_open(ws), on_message(ws, message) (str for
        text, bytes for binary) and on_close(ws, code, reason) where handlers run (README,
        "WebSockets"). Other requests to `path` go to the handler."""
        if self._core is not None:
            raise ServerStateError("add_websocket must be called before start()")
        if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in " ?#\r\n\0"):
            raise ConfigError("a WebSocket route's path is a str starting with '/', without space, '?' or '#'")
        for name, callback in (("on_message", on_message), ("on_open", on_open), ("on_close", on_close)):
            if callback is not None and not callable(callback):
                raise TypeError(f"{name} must be callable")
            if callback is not None:
                refuse_async_callable(callback, f"a WebSocket {name} is a plain callable")
        if on_message is None:
            raise TypeError("on_message is required")
        self._websocket_routes[path] = WebSocketRoute(path, on_message, on_open, on_close)

    # -- lifecycle -------------------------------------------------------------------------------

    def _build_core(self, listening):
        """The engine behind this server, around an open listening socket (fastcore.pure overrides
        this and nothing else of the lifecycle). The core reads its options from the config itself."""
        return _core.Core(self.config, listening.fileno(), self._dispatch(), list(self._static_routes.values()))

    @property
    def running(self) -> bool:
        return self._core is not None

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        """The bound port (the real one when the config asked for port 0; 0 on a unix socket);
        after stop(), the port it was last bound to (before start(), the config's)."""
        if self._socket is None:
            return self.config.port if self._last_port is None else self._last_port
        if self._socket.family == socket.AF_UNIX:
            return 0
        return self._socket.getsockname()[1]

    @property
    def url(self) -> str | None:
        """Where the server listens: 'http://127.0.0.1:8000/' or 'unix:/path' (None when stopped)."""
        return sockets.describe(self._socket) if self._socket is not None else None

    def _dispatch(self):
        """How requests reach Python, declared to the engine (fastcore._core.Dispatch, see
        pyext/dispatch.pxi): self.handler, under the metrics route when config.metrics_path is set,
        under the access log when config.access_log asks for it and the handler does not write it
        itself (`logs_access`, e.g. a WSGIHandler). A WSGI adapter the compiled engine can answer
        for in C (a WSGIAdapter with compiled_fast_path) is named too, so that neither the metrics
        route nor its own access log costs it that fast path; an access-log wrapper around it must
        see every response, so with one the adapter is not named."""
        handler = self.handler
        wsgi = handler if isinstance(handler, _core.WSGIAdapter) and handler.compiled_fast_path else None
        wrapper_path = None
        if self.config.metrics_path:                  # an opt-in route: stats() as Prometheus text
            handler = metrics.metrics_route(handler, self.config.metrics_path, self.stats, self.process_stats)
            wrapper_path = self.config.metrics_path
        if self.config.access_log and handler is not None and not getattr(handler, "logs_access", False):
            handler = access.access_logged(handler)
            wsgi = None
        return _core.Dispatch(handler, wsgi, wrapper_path, websockets=tuple(self._websocket_routes.values()))

    def start(self) -> Self:
        with self._lifecycle_lock:
            if self._core is not None:
                raise ServerStateError("server already started")
            listening = sockets.open_listening_socket(self.config)
            try:
                core = self._build_core(listening)
            except BaseException:
                sockets.close_listening_socket(listening)
                raise
            self._socket = listening
            self._last_port = self.port
            self._core = core
            self._stop_requested.clear()
            self._exhaustions_reported = 0        # a new core counts from 0
            self._listener_thread = threading.Thread(
                target=core.run_listener, name=f"fastcore-listener:{self.port}", daemon=True)
            self._worker_threads = [
                threading.Thread(target=core.run_worker, args=(index,),
                                 name=f"fastcore-worker-{index}:{self.port}", daemon=True)
                for index in range(self.config.threads)
            ]
            self._handlers = _HandlerThreads(
                core, self.config.handler_threads if self.handler is not None else 0, self.port)
            for thread in self._handlers.threads + self._worker_threads:
                thread.start()
            self._listener_thread.start()
            if self.config.access_log:              # the lines of the core's own responses
                self._core_access_lines = access.CoreAccessLines(core, f"fastcore-access:{self.port}").start()
            if self.config.timeout > 0 and self.handler is not None:
                handlers = self._handlers
                workers = self._worker_threads
                self._watchdog = HandlerWatchdog(
                    self.config.timeout, lambda: workers + handlers.threads, self._handler_callers,
                    f"fastcore-watchdog:{self.port}", self._on_handler_timeout).start()
            _running_servers.add(self)
        return self

    def stop(self, timeout: float | None = None) -> bool | None:
        """Stop accepting, finish in-flight requests within `timeout` seconds (default: the
        config's shutdown_timeout), join every thread. Returns True when everything in flight
        finished within the timeout, False when it did not: the deadline cut requests off (answered
        503, or closed unfinished: stats()["requests_cut_at_stop"] counts them), or a handler was
        still running at it (its own response may still go out, but the stop overran its bound).
        Idempotent (a second call returns the first's answer), callable from any thread. Called
        from a handler (a worker or handler thread, which cannot join itself), it starts the stop on
        another thread and returns None at once."""
        if threading.current_thread() in self._worker_threads + (self._handlers.threads if self._handlers else []):
            threading.Thread(target=self.stop, args=(timeout,), name="fastcore-stop").start()
            return None
        if timeout is None:
            timeout = self.config.shutdown_timeout
        with self._lifecycle_lock:
            core = self._core
            if core is None:
                return not self._requests_cut
            if self._watchdog is not None:
                self._watchdog.stop()
            core.stop_listener()
            self._listener_thread.join()
            sockets.close_listening_socket(self._socket)     # new clients are refused from here
            graceful_deadline = time.monotonic() + timeout
            self._requests_cut = False
            core.stop_workers(float(timeout))
            # A worker leaves as soon as it has no connection left, at the latest at the deadline;
            # one inside a handler returns only when the handler does: wait a little past the
            # deadline (less once forced). What the deadline cut, the engine counts.
            self._join_deadline = graceful_deadline + HANDLER_RETURN_GRACE
            for thread in self._worker_threads:
                while thread.is_alive() and time.monotonic() < self._join_deadline:
                    thread.join(0.05)
            # Handler threads serve what is left on the bridge (after its deadline, with 503s), then
            # return; one still inside a handler gets a short grace, then is left to release the
            # core itself when it returns (_HandlerThreads).
            core.stop_handlers()
            handlers_left = self._handlers.join(min(self._join_deadline, graceful_deadline + HANDLER_THREADS_GRACE))
            stuck = [thread.name for thread in self._worker_threads if thread.is_alive()]
            stuck += self._core_stopped(core, graceful_deadline)
            if self._core_access_lines is not None:
                self._core_access_lines.stop()
                self._core_access_lines = None
            stats = core.stats()
            stats["handlers_over_timeout"] = self._watchdog.count if self._watchdog is not None else 0
            self._stats_at_stop = stats
            cut, overran = stats.get("requests_cut_at_stop", 0), stats.get("handlers_past_deadline", 0)
            if cut or overran or handlers_left:
                self._requests_cut = True
            if stuck:
                log.warning("%s did not stop (a handler that never returns?); "
                            "its memory is left allocated", ", ".join(stuck))
                self._abandoned_core = core
            elif handlers_left:
                log.warning("%s still in a handler after the stop's deadline; the server's "
                            "memory is released when the last of them returns", ", ".join(handlers_left))
                self._handlers.abandon()
            else:
                core.release()
            self._core = None
            self._socket = None
            self._worker_threads = []
            self._handlers = None
            self._watchdog = None
            self._listener_thread = None
            _running_servers.discard(self)
            self._stop_requested.set()
        if self._requests_cut:
            log.warning("requests were still in flight %s s after the stop began: the deadline cut %d "
                        "request(s) (answered 503, or closed before their response was complete), and "
                        "%d handler call(s) ran past it", f"{timeout:g}", cut, overran)
        return not self._requests_cut

    def serve_forever(self, on_ready: Callable[[Any], object] | None = None) -> bool:
        """Start (unless started) and serve until stop(), SIGINT or SIGTERM (handled when called on
        the main thread; elsewhere no signal handler is installed). There, SIGHUP is ignored with a
        log line when nothing else handles or ignores it (_ignore_hangup). `on_ready(server)` runs once
        the server accepts and the signal handlers are in place (e.g. to print the URL), so a
        signal sent by someone who saw it always stops the server cleanly. Returns what stop()
        returned: False when requests in flight were cut off.
        With config.processes > 1 this process becomes a supervisor (fastcore.supervisor) that
        forks the processes which serve; on_ready then gets the supervisor (url, port, pids)."""
        if self.config.processes > 1 and self._core is None:
            from .supervisor import Supervisor
            Supervisor(self, on_ready=on_ready).run()
            return True
        previous_handlers = {}
        if threading.current_thread() is threading.main_thread():
            def request_stop(signum, frame):
                if self._stop_requested.is_set():
                    self._force_stop()                  # a second signal: do not wait any more
                self._stop_requested.set()
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous_handlers[signum] = signal.signal(signum, request_stop)
            if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
                previous_handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, _ignore_hangup)
        try:
            if self._core is None:
                self.start()
            if on_ready is not None:
                on_ready(self)
            while not self._stop_requested.wait(1.0):
                self._watch()
            return self.stop()                          # graceful, within shutdown_timeout
        finally:
            self.stop()                                 # (no-op after a graceful stop)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)

    def _core_stopped(self, core: Any, graceful_deadline: float) -> list[str]:
        """The workers have been joined, the core is not released yet: what a subclass must
        finish first (ASGIServer: the cycles on its loop). Returns what is still running (the core
        is then left allocated)."""
        return []

    def _force_stop(self):
        """Close every connection now instead of at the graceful deadline (in-flight requests are
        cut off); the stop in progress then joins the threads at once."""
        core = self._core
        if core is not None:
            log.warning("second stop signal, closing every connection now")
            if any(thread.is_alive() for thread in self._worker_threads):
                self._requests_cut = True
            self._join_deadline = min(self._join_deadline, time.monotonic() + 1.0)
            core.stop_workers(0.0)

    def _watch(self) -> None:
        """Once a second in serve_forever: what the engine's threads count but cannot log."""
        core = self._core
        if core is not None:
            self._report_accept_exhaustion(core.stats())

    def _report_accept_exhaustion(self, stats: dict[str, Any]) -> None:
        """Log a new episode of descriptor (or memory) exhaustion the listener counted: it runs
        without the GIL and logs nothing itself. One line per episode, at most one per
        ACCEPT_EXHAUSTION_LOG_INTERVAL; episodes in between are counted into the next line. Called
        from serve_forever's wait and from stats()."""
        episodes = stats.get("accept_exhaustions", 0)
        if episodes <= self._exhaustions_reported or not self._exhaustion_report_lock.acquire(blocking=False):
            return
        try:
            now = time.monotonic()
            if episodes <= self._exhaustions_reported or now - self._exhaustion_logged_at < ACCEPT_EXHAUSTION_LOG_INTERVAL:
                return
            new_episodes = episodes - self._exhaustions_reported
            self._exhaustions_reported = episodes
            self._exhaustion_logged_at = now
            error = stats.get("accept_exhaustion_errno", 0)
            what = "memory" if error in (errno.ENOBUFS, errno.ENOMEM) else "file descriptors"
            log.error("out of %s accepting connections (%s)%s: new clients wait in the listen "
                      "backlog while accepting pauses 100 ms at a time; raise the descriptor limit "
                      "(ulimit -n) or lower max_connections", what, errno.errorcode.get(error, error),
                      f", {new_episodes} episodes since the last report" if new_episodes > 1 else "")
        finally:
            self._exhaustion_report_lock.release()

    def stats(self) -> dict[str, Any]:
        """The engine's counters (requests, responses by status class, bytes, accepted, rejected_*,
        open_connections, sendfile_bytes, accept_pauses, accept_exhaustions and the errno of the
        latest, and per worker); {} when the server is not running."""
        core = self._core
        if core is None:
            return {}
        stats = core.stats()
        self._report_accept_exhaustion(stats)
        watchdog = self._watchdog
        stats["handlers_over_timeout"] = watchdog.count if watchdog is not None else 0
        return stats

    def process_stats(self) -> list[dict[str, Any]] | None:
        """With processes > 1, in a child of the supervisor: every process's counters, this one's
        current and the others' at most fastcore.process_stats.PUBLISH_INTERVAL old, one dict per
        process index ("process", "pid", "restarts" and stats()'s counters, which include the
        index's replaced children); fastcore.process_stats.aggregate(list) sums them. None
        otherwise (stats() is then the whole server)."""
        shared = self._process_stats
        return shared.snapshot() if shared is not None else None

    def __enter__(self) -> Self:
        if self._core is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"listening on {self.host}:{self.port}" if self.running else "stopped"
        return f"<fastcore.Server {state}, {self.config.threads} threads>"


class WSGIServer(Server):
    """A Server running a WSGI application through the adapter (fastcore.wsgi_adapter.WSGIHandler).

        server = WSGIServer(app, host="127.0.0.1", port=8000, threads=4, root_path="/app")
        server.serve_forever()          # or: with WSGIServer(app, port=0) as s: ... s.port ...

    Options are ServerConfig fields; root_path and access_log are the WSGI ones."""

    def __init__(self, app: WSGIApplication, config: ServerConfig | None = None,
                 **options: Unpack[ServerOptions]) -> None:
        super().__init__(None, config, **options)
        self.app = app
        self.handler = WSGIHandler(app, self.config, server=self)

    def start(self) -> Self:
        self.handler.reset()
        return super().start()

    def __repr__(self) -> str:
        return "<fastcore.WSGIServer " + super().__repr__()[len("<fastcore.Server "):]


class ASGIServer(Server):
    """A Server running an ASGI 3 application (FastAPI, Starlette, Django's ASGI handler, Quart)
    on one event loop per process: a thread of its own here, the caller's running loop in
    fastcore.AsyncServer.

        server = ASGIServer(app, host="127.0.0.1", port=8000, threads=2, lifespan="on")
        server.serve_forever()          # or: with Server.asgi(app, port=0) as s: ... s.port ...

    Options are ServerConfig fields; lifespan, loop and root_path are the ASGI ones. The loop is
    the executor: handler_threads is always 0, `threads` are the I/O workers. metrics_path and
    access_log wrap the app (fastcore.metrics.asgi_metrics_route, fastcore.access.asgi_access_logged)."""

    def __init__(self, app: ASGIAppCallable, config: ServerConfig | None = None,
                 **options: Unpack[ServerOptions]) -> None:
        if not callable(app):
            raise TypeError("an ASGI app is an async callable (scope, receive, send)")
        super().__init__(None, config, **options)
        if self.config.handler_threads:
            self.config = self.config.replace(handler_threads=0)
        ASGIApp(app, self.config.root_path)               # checks root_path now, not at start()
        self.app = app
        self._embedded_loop: asyncio.AbstractEventLoop | None = None  # AsyncServer: the caller's loop
        self._embedded_state: dict[str, Any] | None = None    # and the state its lifespan made
        self._loop_runner: LoopThread | CallerLoop | None = None
        self._lifespan: Lifespan | None = None
        self._asgi: ASGIApp | None = None
        self._cancel_at_deadline: asyncio.TimerHandle | None = None

    def _served_app(self) -> ASGIAppCallable:
        """The app under the metrics route and the access log, when the config asks for them."""
        app = self.app
        if self.config.metrics_path:
            app = metrics.asgi_metrics_route(app, self.config.metrics_path, self.stats, self.process_stats)
        if self.config.access_log:
            app = access.asgi_access_logged(app)
        return app

    def start(self) -> Self:
        if self._core is not None:
            raise ServerStateError("server already started")
        if self._embedded_loop is not None:
            runner: LoopThread | CallerLoop = CallerLoop(self._embedded_loop)
            state = self._embedded_state
        else:
            runner = LoopThread(self.config.loop, f"fastcore-asgi-loop:{self.config.port}")
            runner.start()
            lifespan = Lifespan(self.app, self.config.lifespan)
            try:
                state = runner.run(lifespan.startup())     # before the listener exists
            except BaseException:
                runner.stop()
                raise
            self._lifespan = lifespan
        self._loop_runner = runner
        self._asgi = ASGIApp(self._served_app(), self.config.root_path, state)
        self._asgi.loop = runner.loop
        try:
            super().start()
        except BaseException:
            self._finish_loop()
            raise
        if isinstance(runner, LoopThread):
            runner.rename(f"fastcore-asgi-loop:{self.port}")
        if self.config.timeout > 0 and runner.thread is not None:
            # `timeout` for an ASGI app: the loop blocked by it (fastcore/watchdog.py); stopped
            # and counted (handlers_over_timeout) as the handler watchdog is.
            self._watchdog = LoopWatchdog(self.config.timeout, runner.loop, runner.thread,
                                          f"fastcore-watchdog:{self.port}", self._on_handler_timeout).start()
        return self

    def _dispatch(self):
        return _core.Dispatch(None, asgi=self._asgi)

    def _build_core(self, listening):
        """The engine's core, with the loop watching its asgi_fd before any worker or listener runs."""
        asgi, runner = self._asgi, self._loop_runner
        address = listening.getsockname()
        asgi.server = (address[0], address[1]) if listening.family != socket.AF_UNIX else None
        core = super()._build_core(listening)
        try:
            if not hasattr(core, "asgi_drain"):
                raise ServerStateError(f"this engine ({type(core).__module__}) does not run ASGI apps")
            runner.call(asgi.loop.add_reader, core.asgi_fd, core.asgi_drain)
        except BaseException:
            core.release()
            raise
        return core

    def stop(self, timeout: float | None = None) -> bool | None:
        runner = self._loop_runner
        if runner is not None and runner.on_loop_thread():
            # From the app, on the loop: the stop waits for the loop, so it runs on another thread.
            threading.Thread(target=self.stop, args=(timeout,), name="fastcore-stop").start()
            return None
        if timeout is None:
            timeout = self.config.shutdown_timeout
        core = self._core
        if core is not None and runner is not None:
            deadline = time.monotonic() + timeout
            runner.call(self._arm_cancel, core, deadline)
        result = super().stop(timeout)
        self._finish_loop()
        return result

    def _arm_cancel(self, core, deadline):
        """On the loop: cancel the cycles still running at the stop's deadline."""
        loop = self._asgi.loop
        self._cancel_at_deadline = loop.call_later(max(0.0, deadline - time.monotonic()), core.asgi_cancel)

    def _core_stopped(self, core, graceful_deadline):
        """The workers are gone: let the cycles on the loop finish (a background task after its
        response, say) until the deadline, cancel what is left, stop watching the core."""
        runner = self._loop_runner
        if runner is None:
            return []
        asgi = self._asgi

        async def settle():
            if self._cancel_at_deadline is not None:
                self._cancel_at_deadline.cancel()
                self._cancel_at_deadline = None
            while core.asgi_in_flight() and time.monotonic() < graceful_deadline:
                await asyncio.sleep(0.01)
            if core.asgi_in_flight():
                core.asgi_cancel()
                grace = time.monotonic() + HANDLER_THREADS_GRACE
                while core.asgi_in_flight() and time.monotonic() < grace:
                    await asyncio.sleep(0.01)
            asgi.loop.remove_reader(core.asgi_fd)
            return core.asgi_in_flight()

        left = asyncio.run_coroutine_threadsafe(settle(), asgi.loop).result()
        return [f"{left} ASGI cycle(s) ignoring cancellation"] if left else []

    def _finish_loop(self):
        """After the core is gone: the lifespan shutdown, then the loop thread stops (an
        AsyncServer's caller runs its own lifespan and keeps its loop)."""
        runner, lifespan = self._loop_runner, self._lifespan
        self._loop_runner = self._lifespan = None
        if isinstance(runner, LoopThread):
            if lifespan is not None:
                try:
                    runner.run(lifespan.shutdown())
                except Exception:
                    log.exception("the ASGI app's lifespan shutdown failed")
            runner.stop()

    def __repr__(self) -> str:
        return "<fastcore.ASGIServer " + super().__repr__()[len("<fastcore.Server "):]


def _ignore_hangup(signum, frame):
    """SIGHUP with processes=1 (serve_forever installs this only over the default action, which
    would kill the process without a drain). A reload asked of a single process cannot be honoured
    without dropping the socket, and stopping on it would take down a service whose manager meant
    to reload it (systemd ExecReload), so it is ignored, and said so. With processes > 1 the
    supervisor restarts its children one at a time instead."""
    log.warning("SIGHUP ignored: with processes=1 there is nothing to reload into; "
                "restart the process, or run with processes > 1 for rolling restarts on SIGHUP")


def _stop_running_servers():
    for server in list(_running_servers):
        server.stop(timeout=1.0)


import atexit  # noqa: E402  (registered after the class it serves)

atexit.register(_stop_running_servers)

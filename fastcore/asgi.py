"""ASGI 3 on fastcore: what both engines share (the app, its loop, its lifespan, the response rules).

Theory of operation. An ASGI server (fastcore.server.ASGIServer) runs one event loop per process:
a LoopThread of its own, or the caller's running loop (fastcore.asgi_server.AsyncServer). Before
the listener accepts, the app's lifespan startup runs on that loop (Lifespan); its `state` dict is
kept on the ASGIApp the engine receives through Dispatch(asgi=...). The engine's I/O workers parse
requests and push those for Python into a bridge; the loop watches one descriptor of the core
(`core.asgi_fd`, add_reader) and its callback (`core.asgi_drain`) builds each scope and starts
`app(scope, receive, send)` as a task created from that neutral callback, so no request's
contextvars leak into another's. The compiled engine does the per-request work in C
(pyext/asgi.pxi); the pure engine in Python (fastcore/pure/asgi.py), with the rules written here:

  * check_start(): an `http.response.start` message checked and turned into header lines (names
    are tokens, values hold no CR, LF, NUL or other control byte: never a split response) plus the
    facts the framing needs (a declared Content-Length, Connection: close, the app's own Server and
    Date fields);
  * frame(): how the body is delimited: a body given whole in one final message gets a
    Content-Length; a body in several messages without a declared length is chunked (HTTP/1.1) or
    close-delimited (HTTP/1.0); HEAD, 204 and 304 send none.

Layering: shared rules (tests/test_imports.py), below the compiled core, which calls check_start
and scope_paths: it imports only the leaves (errors), so the compiled core and fastcore.server
(ASGIServer) both build on it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import re
import threading
import traceback
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, TypeVar
from urllib.parse import unquote

from .errors import ConfigError, LifespanFailed

log = logging.getLogger("fastcore.error")
T = TypeVar("T")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
LIFESPAN_MODES = ("auto", "on", "off")
LOOP_KINDS = ("auto", "asyncio", "uvloop")
# How long a stop waits for the app's lifespan shutdown, and for cancelled cycles to unwind.
LIFESPAN_SHUTDOWN_TIMEOUT = 10.0

# What an ASGI 3 app is to a type checker: called with (scope, receive, send), awaited. Loose on
# purpose: frameworks type the three differently (Starlette's Scope is a MutableMapping, a plain
# app may take a dict).
ASGIAppCallable = Callable[[Any, Any, Any], Awaitable[Any]]


def is_asgi_app(obj: object) -> bool:
    """True for an ASGI 3 application: a coroutine function, or an object whose __call__ is one
    (FastAPI, Starlette, Quart, Django's ASGIHandler), or a functools.partial of either, that can
    be called with (scope, receive, send). ASGI 2 double callables (a class called with the
    scope) are not supported, so not detected."""
    if not callable(obj):
        return False
    inner: Any = obj
    while isinstance(inner, functools.partial):
        inner = inner.func
    if not inspect.iscoroutinefunction(inner):
        if inspect.isfunction(inner) or inspect.ismethod(inner) or isinstance(inner, type):
            return False
        if not inspect.iscoroutinefunction(getattr(type(inner), "__call__", None)):
            return False
    try:
        inspect.signature(obj).bind(None, None, None)       # (scope, receive, send)
    except TypeError:
        return False                                        # an async WSGI-shaped function, say
    except ValueError:
        pass                                                # no signature to read: trust the async call
    return True


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's ("uvloop"; "auto" when uvloop is importable) or the standard
    library's selector loop ("asyncio"; "auto" without uvloop)."""
    if kind not in LOOP_KINDS:
        raise ConfigError(f"loop must be one of {', '.join(LOOP_KINDS)}, not {kind!r}")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ConfigError("loop='uvloop' needs uvloop, which is not installed: pip install uvloop") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.SelectorEventLoop()


class LoopThread:
    """One event loop running in a thread of its own (an ASGI server's executor: one per process,
    so what the app's lifespan creates, a database pool say, belongs to the loop every request
    runs on).

        thread = LoopThread("uvloop")
        loop = thread.start()
        thread.run(coroutine, timeout)      # its result, from any other thread
        thread.call(function, *args)        # run on the loop thread, wait for the result
        thread.stop()                       # cancel what is left, close the loop, join
    """

    def __init__(self, loop: str = "auto", name: str = "fastcore-asgi-loop") -> None:
        self.kind = loop
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> asyncio.AbstractEventLoop:
        loop = new_event_loop(self.kind)
        running = threading.Event()
        self.loop = loop
        self.thread = threading.Thread(target=self._run, args=(loop, running), name=self.name, daemon=True)
        self.thread.start()
        running.wait()
        return loop

    def rename(self, name: str) -> None:
        """The thread's name, once the port is known (fastcore-asgi-loop:PORT)."""
        self.name = name
        if self.thread is not None:
            self.thread.name = name

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, running: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(running.set)
        try:
            loop.run_forever()
            # Stopped: what is still pending (an app's background task) is cancelled and given
            # the chance to unwind, then the loop's own resources go.
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=LIFESPAN_SHUTDOWN_TIMEOUT))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the loop and return its result (raise its exception); from another thread."""
        assert self.loop is not None, "LoopThread.run before start()"
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the loop thread and return its result (at once when called there)."""
        return call_on_loop(self.loop, function, *args, here=self.on_loop_thread())

    def stop(self, timeout: float = LIFESPAN_SHUTDOWN_TIMEOUT + 5.0) -> None:
        loop, thread = self.loop, self.thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass                                # closed meanwhile
        if thread is not threading.current_thread():
            thread.join(timeout)
        self.loop = None
        self.thread = None


class CallerLoop:
    """The caller's running loop, with LoopThread's call() (fastcore.asgi_server.AsyncServer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.current_thread()

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def call(self, function: Callable[..., T], *args: Any) -> T:
        return call_on_loop(self.loop, function, *args, here=self.on_loop_thread())


def call_on_loop(loop: asyncio.AbstractEventLoop | None, function: Callable[..., T], *args: Any,
                 here: bool) -> T:
    """`function(*args)` run on `loop`'s thread (`here`: this is it, so at once), its result returned."""
    if here:
        return function(*args)
    assert loop is not None, "no event loop"
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as error:
            future.set_exception(error)

    loop.call_soon_threadsafe(run)
    return future.result()


class Lifespan:
    """The app's lifespan protocol (ASGI lifespan 2.0), run on the server's loop.

    mode "on": the app must support it; "auto": an app that raises in the lifespan scope (Django's
    ASGIHandler refuses it; a raw app reads it as a request), or returns without answering, is
    served without it (a failure it reports with lifespan.startup.failed, as Starlette does, still
    stops the start); "off": not run. startup() returns the `state` dict each request scope gets a
    shallow copy of (None when lifespan did not run), or raises LifespanFailed with the app's
    message. shutdown() after the in-flight requests have finished."""

    def __init__(self, app: Any, mode: str = "auto") -> None:
        if mode not in LIFESPAN_MODES:
            raise ConfigError(f"lifespan must be one of {', '.join(LIFESPAN_MODES)}, not {mode!r}")
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] | None = None
        self.running = False                    # startup completed: shutdown is owed
        self._task: asyncio.Task[None] | None = None
        self._incoming: asyncio.Queue[dict[str, Any]] | None = None
        self._answer: asyncio.Future[dict[str, Any]] | None = None
        self._received = False
        self._error: BaseException | None = None

    async def startup(self) -> dict[str, Any] | None:
        if self.mode == "off":
            return None
        loop = asyncio.get_running_loop()
        state: dict[str, Any] = {}
        self._incoming = asyncio.Queue()
        self._answer = loop.create_future()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
        self._task = loop.create_task(self._main(scope))
        await self._incoming.put({"type": "lifespan.startup"})
        message = await self._answer
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.running = True
            self.state = state
            return state
        if kind == "lifespan.startup.failed":
            raise LifespanFailed(f"the app's lifespan startup failed: {message.get('message') or '(no message)'}")
        # The app ended (returned or raised) without answering the startup event.
        error = self._error
        if error is not None and self.mode == "on":
            raise LifespanFailed(f"the app's lifespan startup raised {type(error).__name__}: {error}") from error
        if self.mode == "on":
            raise LifespanFailed("the app returned from the lifespan scope without completing its startup")
        if error is not None:
            # As uvicorn: under "auto" an app that raises in the lifespan scope is taken not to
            # support it (a raw app reading it as a request, Django's handler refusing it); one
            # that raised only after taking the startup event may have failed for real, so that
            # is said where the default log level shows it.
            log.log(logging.INFO if self._received else logging.DEBUG,
                    "the app does not support the ASGI lifespan protocol (%s: %s); serving without it "
                    "(lifespan=on makes this an error)", type(error).__name__, error)
        return None

    async def _main(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as error:
            self._error = error
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self._reply({"type": "lifespan.ended"})

    async def _receive(self) -> dict[str, Any]:
        assert self._incoming is not None
        self._received = True
        return await self._incoming.get()

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        kind = message.get("type")
        if kind not in ("lifespan.startup.complete", "lifespan.startup.failed",
                        "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise RuntimeError(f"unexpected ASGI lifespan message type {kind!r}")
        self._reply(dict(message))

    def _reply(self, message: dict[str, Any]) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(message)

    async def shutdown(self, timeout: float = LIFESPAN_SHUTDOWN_TIMEOUT) -> None:
        """Send lifespan.shutdown and wait (at most `timeout` s) for the app to answer; log a failure."""
        task = self._task
        if task is None:
            return
        self._task = None
        try:
            if self.running and not task.done():
                self.running = False
                assert self._incoming is not None
                self._answer = asyncio.get_running_loop().create_future()
                await self._incoming.put({"type": "lifespan.shutdown"})
                try:
                    message = await asyncio.wait_for(asyncio.shield(self._answer), timeout)
                except asyncio.TimeoutError:
                    log.error("the app's lifespan shutdown did not finish within %g s", timeout)
                    return
                if message.get("type") == "lifespan.shutdown.failed":
                    log.error("the app's lifespan shutdown failed: %s", message.get("message") or "(no message)")
                elif message.get("type") == "lifespan.ended" and self._error is not None:
                    log.error("the app's lifespan shutdown raised", exc_info=self._error)
        finally:
            if not task.done():
                await asyncio.wait([task], timeout=1.0)
                if not task.done():
                    task.cancel()


class ASGIApp:
    """What an engine receives (Dispatch(None, asgi=ASGIApp(...))): the app and what every scope
    carries besides the request. `loop` is set before the engine is attached; `server` is the
    bound (host, port), None on a unix socket."""

    __slots__ = ("app", "state", "root_path", "loop", "server")

    def __init__(self, app: Any, root_path: str = "", state: dict[str, Any] | None = None) -> None:
        if not callable(app):
            raise TypeError("an ASGI app is an async callable (scope, receive, send)")
        root = root_path.rstrip("/")
        if root and not root.startswith("/"):
            raise ConfigError(f"root_path must start with '/', not {root_path!r}")
        self.app = app
        self.state = state
        self.root_path = root
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: tuple[str, int] | None = None

    def log_failure(self, scope: MutableMapping[str, Any] | None, error: BaseException) -> None:
        """One line on "fastcore.error", with the traceback: the app failed on this request."""
        what = f"{scope.get('method', '?')} {scope.get('path', '?')}" if scope else "a request"
        log.error("ASGI app failed on %s", what, exc_info=error)
        # A handler may keep the record (and so the traceback) for long; its frames' locals would
        # keep this request's receive/send, and with them its cycle, alive until then.
        traceback.clear_frames(error.__traceback__)

    def __repr__(self) -> str:
        return f"<fastcore.asgi.ASGIApp {self.app!r}>"


# -- the response rules both engines follow -------------------------------------------------------

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")      # CR, LF, NUL, other controls, DEL
MAX_RESPONSE_FIELDS = 256

# How a response body is delimited (frame()).
FRAME_NONE = 0              # no body goes out: HEAD, 204, 304
FRAME_LENGTH = 1            # Content-Length
FRAME_CHUNKED = 2           # Transfer-Encoding: chunked (HTTP/1.1, length unknown)
FRAME_CLOSE = 3             # the connection's close ends it (HTTP/1.0, length unknown)


class ResponseStart:
    """An http.response.start message, checked: status, the app's header lines (serialized,
    without the fields the server decides: Content-Length, Transfer-Encoding, Connection), and the
    facts the framing needs."""

    __slots__ = ("status", "lines", "declared_length", "close", "own_server", "own_date")

    def __init__(self, status: int, lines: bytes, declared_length: int, close: bool,
                 own_server: bool, own_date: bool) -> None:
        self.status = status
        self.lines = lines
        self.declared_length = declared_length
        self.close = close
        self.own_server = own_server
        self.own_date = own_date


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise RuntimeError(f"ASGI response header {what} {value!r} is not latin-1") from None
    raise RuntimeError(f"ASGI response header {what}s are bytes, not {type(value).__name__}")


def checked_field(field: Any, what: str) -> tuple[bytes, bytes]:
    """One (name, value) header pair an app gives, as bytes, or RuntimeError: a name that is not a
    token, a value with CR, LF, NUL or another control byte (response splitting). `what` names it
    in the message ("ASGI response header", "websocket.accept header")."""
    try:
        raw_name, raw_value = field
    except (TypeError, ValueError):
        raise RuntimeError(f"each {what} is a (name, value) pair, not {field!r}") from None
    name = _as_bytes(raw_name, "name")
    value = _as_bytes(raw_value, "value")
    if _TOKEN.fullmatch(name) is None:
        raise RuntimeError(f"invalid {what} name {name!r}")
    if _BAD_VALUE_BYTE.search(value) is not None:
        raise RuntimeError(f"invalid byte (CR, LF, NUL or another control) in {what} {name!r}")
    return name, value


def check_start(message: MutableMapping[str, Any]) -> ResponseStart:
    """Check an http.response.start message; RuntimeError for what cannot be sent (a status outside
    200..999, a header name that is not a token, a value with CR, LF, NUL or another control byte,
    a malformed Content-Length), before anything is written."""
    status = message.get("status")
    if type(status) is not int or not 200 <= status <= 999:
        if type(status) is int and 100 <= status < 200:
            raise RuntimeError(f"an ASGI response cannot start with the interim status {status} (1xx)")
        raise RuntimeError(f"invalid ASGI response status {status!r}")
    headers = message.get("headers") or ()
    try:
        count = len(headers)
    except TypeError:
        count = 0
    if count > MAX_RESPONSE_FIELDS:
        raise RuntimeError(f"the response has {count} header fields, more than {MAX_RESPONSE_FIELDS}")
    lines = []
    declared = -1
    close = own_server = own_date = False
    for field in headers:
        name, value = checked_field(field, "ASGI response header")
        lowered = name.lower()
        if lowered == b"content-length":
            text = value.strip(b" \t")
            if not text.isdigit() or len(text) > 18 or (declared >= 0 and int(text) != declared):
                raise RuntimeError(f"invalid Content-Length {value!r} in the ASGI response")
            declared = int(text)
            continue
        if lowered == b"transfer-encoding":
            continue                            # framing is the server's to decide
        if lowered == b"connection":
            if b"close" in value.lower():
                close = True
            continue
        if lowered == b"server":
            own_server = True
        elif lowered == b"date":
            own_date = True
        lines.append(name + b": " + value + b"\r\n")
    return ResponseStart(status, b"".join(lines), declared, close, own_server, own_date)


def frame(start: ResponseStart, head_only: bool, http_minor: int, whole_body_length: int) -> tuple[int, int]:
    """(how the body is delimited, the Content-Length to write or -1). `whole_body_length`: the
    body's length when the app gave it in one final message, else -1 (more to come)."""
    status = start.status
    if status == 204 or status == 304:
        return FRAME_NONE, -1
    declared = start.declared_length
    if head_only:
        # What a GET would carry, when known; nothing is sent either way.
        length = declared if declared >= 0 else whole_body_length
        return FRAME_NONE, length
    if declared >= 0:
        return FRAME_LENGTH, declared
    if whole_body_length >= 0:
        return FRAME_LENGTH, whole_body_length
    if http_minor == 1:
        return FRAME_CHUNKED, -1
    return FRAME_CLOSE, -1


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never the empty last chunk: CHUNKED_END is)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED_END = b"0\r\n\r\n"


def body_bytes(message: MutableMapping[str, Any]) -> bytes:
    body = message.get("body", b"")
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise RuntimeError(f"an ASGI response body is bytes, not {type(body).__name__}")


def scope_paths(raw_path: bytes, root_path: str) -> tuple[str, bytes]:
    """(path, raw_path) of a request scope: the path percent-decoded as UTF-8 (as uvicorn), both
    including root_path. A request whose path does not start with root_path came through a proxy
    that stripped the prefix, so it is put back (the ASGI spec: `path` is the full path, and
    frameworks strip root_path themselves); one that starts with it already is left as is, as the
    WSGI adapter does with SCRIPT_NAME."""
    if root_path:
        root = root_path.encode("utf-8")
        if not (raw_path == root or raw_path.startswith(root + b"/")):
            raw_path = root + raw_path
    return unquote(raw_path.decode("latin-1")), raw_path


def client_address(peer: Any) -> tuple[str, int] | None:
    """The scope's client: (host, port) of a TCP peer (an IPv6 zone dropped), None on a unix socket."""
    if not isinstance(peer, tuple):
        return None
    return peer[0].partition("%")[0], peer[1]

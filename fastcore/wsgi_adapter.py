"""The WSGI (PEP 3333) adapter: WSGIHandler, a native handler that runs a WSGI application.

    server = fastcore.Server(fastcore.WSGIHandler(app, config), config=config)
    server = fastcore.Server.wsgi(app, port=0).start()      # the same, as a WSGIServer (fastcore.server)

Theory of operation. The adapter is a native handler: WSGIHandler(app)(request) -> Response. The
core calls it on a worker thread with the GIL held; it builds the environ from the Request, calls
the app, and turns what the app gave into a Response the core can frame. The status line carries
the app's reason phrase (Response(reason=...)), also for codes the core has no phrase for
("299 Custom"); the app's header list, Content-Length included, is handed over as is.

Layering. This module builds on the compiled core, the config and the access log only; the server
builds on it (fastcore.server.WSGIServer, Server.wsgi) and fastcore.wsgi gathers the entry points
(serve_wsgi, serve). Nothing below imports it.

Two implementations of the hot part. This module is plain Python and is what fastcore.pure runs.
On the compiled engine, WSGIHandler's base class WSGIAdapter lets the Core call pyext/wsgi.pxi
instead of __call__ (the server names the adapter in its Dispatch, fastcore.server.Server._dispatch):
the environ, start_response and the framing of list bodies in C, calling back into _respond /
_failed / _finish here for everything else. The validation caches both share live in the compiled
module (wsgi_environ_key, check_wsgi_response_head, wsgi_body_bytes, WSGIErrorStream), imported
here. The WSGI tests run on both engines and compare the two environ builders.

Framing. The core frames the body; an app-declared Content-Length is honoured by it:

  * a list or tuple (after any write() data): joined into bytes. Without a declared length it
    goes out with Content-Length: len(body). With one, that is the length sent: a longer body is
    cut to it, and a shorter one is an application error, answered 500 (nothing has been sent);
    HEAD carries the declared length with no body, so an app that declares the GET's length and
    gives no body for HEAD (werkzeug does) is answered right; a bodyless status (204, 304)
    gets neither body nor Content-Length. A 1xx status is refused by start_response (a 500).
  * a fastcore.FileWrapper (wsgi.file_wrapper) over a regular file, with no write() data and no
    declared length beyond what the file holds from its position: handed over as is, and the
    worker sends the rest of the file, or exactly the declared length, with sendfile(2) without
    the GIL. Any other FileWrapper is iterated like any iterable.
  * any other iterable: PEP 3333 lets headers go out only with the first non-empty body part, and
    a generator app calls start_response only when first iterated, so the adapter iterates it up
    to its first non-empty part here. If the iterable then is exhausted or has len() 1, the body
    is complete and goes out as a list would. Otherwise the rest is streamed: the Response body
    is a _StreamedBody over the app's iterator (write() data and the first part first), which
    the core pulls and sends part by part as the app yields them (a server-sent-events generator
    is not held back). With a declared Content-Length it goes out raw with that length, on
    HTTP/1.1 and 1.0 alike, and the connection can stay open; the core stops pulling once that many
    bytes are out (PEP 3333: never more than declared) and, if the iterable ends short, logs an
    error and closes the connection. Without one it goes out chunked on HTTP/1.1, close-delimited
    on HTTP/1.0. The core always close()s the _StreamedBody: at the end, on an error, when the
    client goes away, for HEAD; its close() calls the app iterable's close() and writes the
    access-log line.

"Headers sent" (start_response's exc_info re-raises from then on) is the PEP's moment: the first
write() call or the first non-empty body part. An exception from the app before the Response is
returned (nothing has reached the client yet) is logged with its traceback on "fastcore.error" and
answered 500; an exception while the core streams the rest propagates to the core, which logs it
and closes the connection without the rest of the body (no last chunk), so the client sees a
truncated body.

write() data is kept and goes out before the iterable's parts (the core sends nothing before the
handler returns); write() called while the core streams the iterable goes out before its next part.

wsgi.input is request.stream: the whole body for bodies up to body_buffer_size, else a reader that
pulls the body from the socket as the app reads (chunked bodies decoded, max_body_size enforced:
a RequestBodyError the app lets through becomes the core's 400/408/413 and a close). It reads
only while the app call runs: a body read lazily from a streamed response's iterator after the
app returned fails for streamed (large) bodies.
"""
from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from . import access
from ._core import (FileWrapper, RequestBodyError, Response, WSGIAdapter, WSGIErrorStream, check_wsgi_response_head,
                    wsgi_body_bytes, wsgi_environ_key, wsgi_server_from_host)
from .config import ServerConfig
from .errors import ConfigError
from .proxy import apply_to_environ

__all__ = ["WSGIHandler"]

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

_error_log = logging.getLogger("fastcore.error")

_INTERNAL_ERROR = b"Internal Server Error\n"


def _bodyless(code):
    """Statuses whose responses have no body (RFC 9110): the core sends no Content-Length for them."""
    return code < 200 or code == 204 or code == 304


class _Exchange:
    """The state of one WSGI call: what start_response and write() were given."""

    __slots__ = ("request", "status", "code", "reason", "headers", "declared", "committed", "written", "errors",
                 "wall", "started", "finished", "result_closed")

    def __init__(self, request, errors):
        self.request = request
        self.errors = errors
        self.status = None
        self.code = 500
        self.reason = None
        self.headers = None
        self.declared = None
        self.committed = False                          # headers "sent" in PEP 3333's sense
        self.written = []
        self.finished = False
        self.result_closed = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.committed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None                         # no reference cycle through the traceback
        elif self.status is not None:
            raise RuntimeError("start_response() was already called; call it again only with exc_info")
        code, reason, declared = check_wsgi_response_head(status, headers)
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = headers
        self.declared = declared
        return self.write

    def write(self, data):
        if self.status is None:
            raise RuntimeError("write() called before start_response()")
        data = wsgi_body_bytes(data)
        self.committed = True
        if data:
            self.written.append(data)


class _StreamedBody:
    """The rest of an app's iterable, pulled by the core part by part: the head (write() data and
    the first part already taken), then write() data and the iterator's parts. The core bounds it
    by a declared Content-Length. close() closes the app's iterable and writes the access-log line
    (once)."""

    __slots__ = ("_handler", "_exchange", "_head", "_iterator", "_result", "_sent", "_closed")

    def __init__(self, handler, exchange, head, iterator, result):
        self._handler = handler
        self._exchange = exchange
        self._head = head
        self._iterator = iterator
        self._result = result
        self._sent = 0
        self._closed = False

    def __iter__(self):
        return self

    def __next__(self):
        exchange = self._exchange
        if self._head is not None:
            part, self._head = self._head, None
        elif exchange.written:                          # write() called while the core iterates
            part = b"".join(exchange.written)
            exchange.written.clear()
        else:
            if self._iterator is None:
                raise StopIteration
            part = wsgi_body_bytes(next(self._iterator))
        self._sent += len(part)
        return part

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._iterator = None
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            exchange = self._exchange
            sent = self._sent
            if exchange.request.method == "HEAD":
                sent = 0
            elif exchange.declared is not None and sent > exchange.declared:
                sent = exchange.declared                # the core sends no more than declared
            self._handler._finish(exchange, sent)


def refuse_async_callable(target: object, expected: str) -> None:
    """Raise TypeError if calling `target` gives a coroutine (an `async def` function, an object
    whose __call__ is one, a partial of either), which would fail every request, one by one, with
    "coroutine object is not iterable". An ASGI application (FastAPI's, Starlette's) is named as
    one, with where it runs (fastcore.ASGIServer; the command line detects it). `expected`: what a usable
    callable is, for the message. Checked once, at construction (and by the command line)."""
    inner = target
    while isinstance(inner, functools.partial):
        inner = inner.func
    if not (inspect.iscoroutinefunction(inner)
            or inspect.iscoroutinefunction(getattr(type(inner), "__call__", None))):
        return
    try:
        parameters = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        parameters = []
    if len(parameters) == 3 or parameters[:1] == ["scope"]:
        raise TypeError("this is an ASGI application (async, with scope, receive, send), not a WSGI "
                        "application or native handler: serve it with fastcore.Server.asgi(app) (the "
                        "command line serves it as ASGI unless --interface says otherwise)")
    raise TypeError(f"this is an async function (async def); {expected}, not a coroutine function")


class WSGIHandler(WSGIAdapter):
    """A native handler that runs a WSGI application: `Server(WSGIHandler(app, config), config=config)`.

    `config` (a ServerConfig) gives SERVER_NAME (host), SCRIPT_NAME (root_path) and access_log;
    SERVER_PORT is the bound port of `server` when set (WSGIServer sets it), else config.port."""

    def __init__(self, app: WSGIApplication, config: ServerConfig | None = None, server: Any = None) -> None:
        if not callable(app):
            raise TypeError(f"a WSGI application is callable (environ, start_response), not {type(app).__name__}")
        refuse_async_callable(app, "a WSGI application is a plain callable (environ, start_response) "
                                   "returning an iterable of bytes")
        self.app = app
        self.config = config if config is not None else ServerConfig()
        root = self.config.root_path.rstrip("/")
        if root and not root.startswith("/"):
            raise ConfigError(f"root_path must start with '/', not {self.config.root_path!r}")
        # SCRIPT_NAME is a "bytes as latin-1" string like PATH_INFO: the UTF-8 of the configured path.
        self.script_name = root.encode("utf-8").decode("latin-1")
        self.access_log = self.config.access_log
        self.server = server
        self._base = None
        # The compiled engine's fast path (pyext/wsgi.pxi) stands in for these methods: a subclass
        # that overrides any of them declares compiled_fast_path false, so Server._dispatch does
        # not name it to the core, and its own methods are called.
        cls = type(self)
        self.compiled_fast_path = all(getattr(cls, name) is getattr(WSGIHandler, name)
                                      for name in ("__call__", "environ", "_complete", "_finish"))

    def _base_environ(self):
        base = self._base
        if base is None:
            port = self.server.port if self.server is not None else self.config.port
            # A unix socket's address has no host or port: environ() takes them from Host.
            url = self.server.url if self.server is not None else None
            self.server_from_host = url.startswith("unix:") if url else bool(self.config.uds)
            # The keys environ() sets for every request come first, as placeholders: a copy of
            # this dict then has room for them and the usual headers without growing.
            base = dict.fromkeys(("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "RAW_URI",
                                  "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "wsgi.input", "wsgi.errors"))
            base.update({
                "SCRIPT_NAME": self.script_name,
                "SERVER_NAME": self.config.host,
                "SERVER_PORT": str(port),
                "SERVER_SOFTWARE": "fastcore",
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                "wsgi.input_terminated": True,
                "wsgi.file_wrapper": FileWrapper,
            })
            self._base = base
        return base

    @property
    def logs_access(self) -> bool:
        """True when this handler writes the access log itself, so Server must not add it again."""
        return self.access_log

    def reset(self) -> None:
        """Forget the cached server address (the server is starting again, maybe on another port)."""
        self._base = None

    def environ(self, request: Any, errors: Any = None) -> dict[str, Any]:
        """The PEP 3333 environ for a fastcore Request."""
        environ = (self._base or self._base_environ()).copy()
        path = request.path
        if "%" in path:
            path = unquote_to_bytes(path).decode("latin-1")
        elif path == "*":                               # OPTIONS *: no path (CGI: "" or "/...")
            path = ""
        root = self.script_name
        if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
            path = path[len(root):]
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = path
        environ["QUERY_STRING"] = request.query_string
        environ["REQUEST_URI"] = environ["RAW_URI"] = request.target
        environ["SERVER_PROTOCOL"] = "HTTP/1.1" if request.http_version == "1.1" else "HTTP/1.0"
        environ["REMOTE_ADDR"] = request.remote_addr
        environ["REMOTE_PORT"] = str(request.remote_port)
        environ["wsgi.input"] = request.stream
        environ["wsgi.errors"] = errors if errors is not None else WSGIErrorStream()
        for name, value in request.headers.items():
            key = wsgi_environ_key(name)
            if key is None:
                continue
            if key in environ:
                environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
            else:
                environ[key] = value
        if self.server_from_host:
            wsgi_server_from_host(environ)
        proxied = request.proxied                       # trusted proxy headers (fastcore.proxy)
        if proxied is not None:
            apply_to_environ(environ, proxied)
        return environ

    # -- the native handler ----------------------------------------------------------------------

    def __call__(self, request: Any) -> Response:
        # The pure engine calls this. The compiled one calls pyext/wsgi.pxi's wsgi_answer(), this
        # method's compiled twin (which calls _respond and _failed below for all but list bodies),
        # when the server's Dispatch names this adapter; else (a subclass overriding what the twin
        # stands in for, an access-log wrapper around it) it calls this too.
        exchange = _Exchange(request, WSGIErrorStream())
        if self.access_log:
            exchange.wall = time.time()
            exchange.started = time.perf_counter()
        result = None
        try:
            result = self.app(self.environ(request, exchange.errors), exchange.start_response)
            return self._respond(exchange, result)
        except BaseException as error:
            return self._failed(exchange, result, error)

    def _failed(self, exchange, result, error):
        """The app (or the adapter on its behalf) raised `error`: re-raise what the core answers
        itself, else log it and answer 500 (nothing has reached the client yet)."""
        self._close_result(exchange, result)
        if isinstance(error, RequestBodyError):
            # The body could not be read (cut short, too slow, too large): the core answers with
            # error.status and closes; nothing of the app's response has gone out.
            exchange.code = error.status
            self._finish(exchange, 0)
            raise error
        if not isinstance(error, Exception):
            raise error                                 # KeyboardInterrupt, SystemExit: not ours
        _error_log.error("WSGI application %r failed on %r", self.app, exchange.request,
                         exc_info=(type(error), error, error.__traceback__))
        exchange.code = 500
        self._finish(exchange, 0)
        return Response(_INTERNAL_ERROR, 500, None, "text/plain; charset=utf-8")

    def _respond(self, exchange, result):
        kind = type(result)
        if kind is list or kind is tuple:
            if exchange.status is None:
                raise RuntimeError("the application returned without calling start_response()")
            if exchange.written:
                return self._complete(exchange, b"".join(exchange.written) + b"".join(result))
            return self._complete(exchange, b"".join(result))
        if kind is FileWrapper and not exchange.written and exchange.status is not None:
            size = access.file_span_length(result)
            declared = exchange.declared
            if size is not None and (declared is None or declared <= size):
                return self._send_file(exchange, result, size if declared is None else declared)
        if kind is bytes or kind is str:
            raise TypeError(f"a WSGI application returns an iterable of bytes (e.g. a list), not {kind.__name__}")

        iterator = iter(result)
        first = None
        for part in iterator:
            if type(part) is not bytes:
                part = wsgi_body_bytes(part)
            if part:
                first = part
                break
        if exchange.status is None:
            raise RuntimeError("the application returned without calling start_response()")
        if first is None:                                # exhausted without a non-empty part
            self._close_result(exchange, result, raising=True)
            return self._complete(exchange, b"".join(exchange.written))
        exchange.committed = True
        if exchange.written:
            first = b"".join(exchange.written) + first
            exchange.written.clear()
        try:
            single = len(result) == 1
        except Exception:
            single = False
        if single:
            self._close_result(exchange, result, raising=True)
            return self._complete(exchange, first)
        body = _StreamedBody(self, exchange, first, iterator, result)
        return Response(body, exchange.code, exchange.headers, None, exchange.reason)

    def _complete(self, exchange, body):
        """A body of known length, framed by the core with Content-Length (the app's declared one
        if any); the app's iterable is already closed."""
        declared = exchange.declared
        sent = len(body)
        head_request = exchange.request.method == "HEAD"
        if declared is not None and sent != declared:
            if sent > declared:
                sent = declared                         # the core cuts the body to it
            elif not head_request and not _bodyless(exchange.code):
                # HEAD carries the declared length without a body and bodyless statuses no body at
                # all; anything else would go out short of its Content-Length.
                raise ValueError(f"the application declared Content-Length: {declared} "
                                 f"but gave a {sent}-byte body")
        self._finish(exchange, 0 if head_request else sent)
        return Response(body, exchange.code, exchange.headers, None, exchange.reason)

    def _send_file(self, exchange, wrapper, size):
        """sendfile(2) of `size` bytes from the file's position (the rest of it, or the declared
        Content-Length, which the core honours)."""
        if self.access_log:
            # The core close()s the FileWrapper after sendfile: the hook in its file logs then.
            def file_done():
                self._finish(exchange, 0 if exchange.request.method == "HEAD" else size)
            wrapper = FileWrapper(access.FileClosedHook(wrapper.filelike, file_done), wrapper.block_size)
        else:
            self._finish(exchange, size)
        exchange.committed = True
        return Response(wrapper, exchange.code, exchange.headers, None, exchange.reason)

    def _close_result(self, exchange, result, raising=False):
        """PEP 3333: the iterable's close() is called however the response ends (once). With
        `raising`, an exception from close() propagates (it becomes a 500: nothing is sent yet)."""
        if exchange.result_closed:
            return
        exchange.result_closed = True
        close = getattr(result, "close", None)
        if close is None:
            return
        if raising:
            close()
            return
        try:
            close()
        except Exception:
            _error_log.exception("close() of the WSGI response iterable failed")

    def _finish(self, exchange, sent):
        """The response is done (or given up): flush wsgi.errors, write the access line."""
        if exchange.finished:
            return
        exchange.finished = True
        exchange.errors.flush()
        if self.access_log:
            access.write(exchange.request, exchange.code, sent, exchange.wall, exchange.started)

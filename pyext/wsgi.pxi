# wsgi.pxi: the compiled fast path of the WSGI adapter (fastcore.wsgi_adapter.WSGIHandler), and the
# caches and validators both of its implementations share.
#
# Theory of operation. fastcore/wsgi_adapter.py is the WSGI adapter: a native handler that turns a
# Request into an environ, calls the app, and turns what the app gives back into a Response. It is
# plain Python so that it runs on both engines (fastcore.pure uses it as is). On the compiled engine
# the per-request Python of that adapter cost more than everything else together (a hello-world
# app spent ~4 us per request in it), so WSGIHandler subclasses WSGIAdapter below, and when the
# server declares one in its Dispatch (dispatch.pxi), the batch calls wsgi_answer() instead of
# handler(request):
#
#   * the environ is built here from the head bytes and the parser's offsets (no Request
#     properties, no Headers object, header lines decoded straight into environ keys);
#   * start_response is WSGIExchange.start_response, a C method that validates with
#     check_wsgi_response_head, as the Python adapter's start_response does;
#   * a list or tuple body after start_response (the common case) becomes the Response here, as
#     WSGIHandler._complete would make it.
#
# Everything else (generators, write() data, file wrappers, errors, the access log) goes to the
# same WSGIHandler methods the pure engine uses, so the rules live in one place:
# fastcore/wsgi_adapter.py. The twins here (WSGIExchange of _Exchange, _complete's length checks,
# environ()) are checked against the Python ones by running tests/test_wsgi.py on both engines.
#
# What both share is defined here, at the bottom, and imported by the adapter: the validation
# caches (environ keys of header names, checked statuses and response fields), their functions
# (wsgi_environ_key, check_wsgi_response_head, wsgi_body_bytes) and wsgi.errors (WSGIErrorStream).
# Nothing here imports the adapter: the dependency runs one way, fastcore.wsgi_adapter -> _core.

from cpython.dict cimport PyDict_Copy
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeASCII

import logging
import re
from http import HTTPStatus
from urllib.parse import unquote_to_bytes
import time as _time_module

cdef enum:
    WSGI_HEADER_KEY_CACHE_SIZE = 1024   # request header names remembered (clients may send random ones)
    WSGI_CHECKED_CACHE_SIZE = 4096      # statuses and response fields remembered (ETags, cookies vary)

# The caches both adapters share. They live here, at the bottom, and fastcore/wsgi_adapter.py
# reaches them through the functions below, so the dependency runs adapter -> _core only. Bounded:
# what does not fit is validated again each time, never wrongly skipped.
cdef dict _wsgi_header_keys = {"Content-Type": "CONTENT_TYPE", "Content-Length": "CONTENT_LENGTH"}
cdef dict _wsgi_status_codes = {}           # status str -> (code, reason or None)
cdef set _wsgi_checked_fields = set()       # (name, value) tuples already validated
cdef dict _wsgi_declared_fields = {}        # validated Content-Length tuples -> int

_WSGI_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_WSGI_BAD_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")      # control bytes, or not latin-1
_wsgi_log = logging.getLogger("fastcore.wsgi")

cdef str _METHOD_GET = "GET", _METHOD_POST = "POST", _METHOD_HEAD = "HEAD"
cdef str _HTTP_11 = "HTTP/1.1", _HTTP_10 = "HTTP/1.0"


cpdef object wsgi_environ_key(str name):
    """The environ key of a request header name ("X-Forwarded-For" -> "HTTP_X_FORWARDED_FOR",
    Content-Type and Content-Length without HTTP_), or None for a name with "_", which is dropped:
    X-Forwarded_For must not pass as X-Forwarded-For."""
    key = _wsgi_header_keys.get(name, False)
    if key is False:
        if "_" in name:
            key = None
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            if key == "HTTP_CONTENT_TYPE" or key == "HTTP_CONTENT_LENGTH":
                key = key[5:]
        if len(_wsgi_header_keys) < WSGI_HEADER_KEY_CACHE_SIZE:
            _wsgi_header_keys[name] = key
    return key


cpdef void wsgi_server_from_host(dict environ):
    """For a server on a unix socket, whose bound address names no host or port: SERVER_NAME and
    SERVER_PORT from the request's Host, as gunicorn does ("example.com:8080", "[::1]:8000"; the
    port defaults to 80, the http scheme's; "localhost" when an HTTP/1.0 request has no Host). The
    peer of a unix socket has no address: REMOTE_ADDR stays "" and REMOTE_PORT is left out, as in
    gunicorn (uvicorn leaves out both)."""
    cdef str host = environ.get("HTTP_HOST") or ""
    cdef str name, port = ""
    if host.startswith("["):                            # an IPv6 literal keeps its brackets
        end = host.find("]")
        name = host[:end + 1] if end > 0 else host
        if end > 0 and host[end + 1:end + 2] == ":":
            port = host[end + 2:]
    else:
        name, colon, port = host.partition(":")
    environ["SERVER_NAME"] = name or "localhost"
    environ["SERVER_PORT"] = port or "80"
    environ.pop("REMOTE_PORT", None)


cpdef bytes wsgi_body_bytes(object part):
    """A part of a WSGI response body (or of write()) as bytes: bytes, bytearray or memoryview."""
    if type(part) is bytes:
        return <bytes>part
    if isinstance(part, (bytearray, memoryview)):
        return bytes(part)
    raise TypeError(f"a WSGI response body part must be bytes, not {type(part).__name__}")


cpdef tuple check_wsgi_response_head(object status, object headers):
    """Validate start_response's arguments (PEP 3333: errors surface while the app runs).
    Returns (status code, reason phrase for the core or None, declared Content-Length or None).
    What passed once is remembered (bounded), so the usual constant statuses and fields are
    checked once; what the caches miss is validated in full."""
    cdef object checked = _wsgi_status_codes.get(status) if type(status) is str else None
    cdef object declared = None, length
    if checked is None:
        checked = _check_wsgi_status(status)
    if type(headers) is not list:
        raise TypeError(f"response headers must be a list, not {type(headers).__name__}")
    for item in <list>headers:
        if type(item) is tuple:
            if item in _wsgi_checked_fields:
                continue
            length = _wsgi_declared_fields.get(item)
            if length is not None:
                declared = length
                continue
        if type(item) is not tuple or len(item) != 2:
            raise TypeError(f"a response header must be a (name, value) tuple, not {item!r}")
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"response header names and values must be str: {item!r}")
        if not _WSGI_TOKEN.match(name):
            raise ValueError(f"invalid response header name {name!r}")
        if _WSGI_BAD_VALUE.search(value):
            raise ValueError(f"invalid character in response header {name!r}: {value!r}")
        if len(name) == 14 and name.lower() == "content-length":
            if not value.isdigit() or not value.isascii() or len(value) > 18:    # the core's bound
                raise ValueError(f"invalid Content-Length {value!r}")
            declared = int(value)
            if len(_wsgi_declared_fields) < WSGI_CHECKED_CACHE_SIZE:
                _wsgi_declared_fields[item] = declared
        elif len(_wsgi_checked_fields) < WSGI_CHECKED_CACHE_SIZE:
            _wsgi_checked_fields.add(item)
    return ((<tuple>checked)[0], (<tuple>checked)[1], declared)


cdef tuple _check_wsgi_status(object status):
    """(code, reason phrase for the core or None) of a WSGI status line such as "200 OK"."""
    if type(status) is not str:
        raise TypeError(f"status must be str, not {type(status).__name__}")
    code_text = status[:3]
    if (len(code_text) != 3 or not code_text.isdigit() or (len(status) > 3 and status[3] != " ")
            or code_text[0] == "0"):
        raise ValueError(f"status must be a 3-digit code, a space and a reason phrase, not {status!r}")
    if _WSGI_BAD_VALUE.search(status):
        raise ValueError(f"invalid character in status {status!r}")
    code = int(code_text)
    if code < 200:          # interim: never the final response (_check_final_status, serializer.pxi)
        raise ValueError(f"a WSGI application cannot answer with the interim status {status!r} (1xx): "
                         f"start_response needs a final status, 200 or above")
    # The app's reason phrase goes to the core only when it differs from the standard one, so the
    # usual statuses keep the core's cached status lines. A bare code gets the standard phrase.
    reason = status[4:] or None
    if reason is not None:
        try:
            if reason == HTTPStatus(code).phrase:
                reason = None
        except ValueError:                              # a code without a standard phrase: "299 Custom"
            pass
    checked = (code, reason)
    if len(_wsgi_status_codes) < WSGI_CHECKED_CACHE_SIZE:
        _wsgi_status_codes[status] = checked
    return checked


@cython.auto_pickle(False)
@cython.final
cdef class WSGIErrorStream:
    """wsgi.errors: text written here goes to the "fastcore.wsgi" logger at ERROR level, one
    record per write of whole lines, so that a traceback written at once (as logging's handlers
    write one) stays one record; a partial line waits for the rest or for flush()."""
    cdef str _pending

    def __cinit__(self):
        self._pending = ""

    def write(self, text):
        if type(text) is not str:
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        cdef Py_ssize_t written = len(text)
        if self._pending:
            text = self._pending + text
            self._pending = ""
        if text.endswith("\n"):
            text = text.strip("\n")
            if text:
                _wsgi_log.error("%s", text)
        elif text:
            self._pending = text
        return written

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._pending:
            text = self._pending
            self._pending = ""
            _wsgi_log.error("%s", text)

    def close(self):
        raise ValueError("wsgi.errors must not be closed by the application")


cdef class WSGIAdapter:
    """Base of fastcore.wsgi_adapter.WSGIHandler: the attributes the compiled fast path reads
    without a Python attribute lookup. See fastcore/wsgi_adapter.py for what they mean; a server
    hands an adapter to the core through Dispatch.wsgi (dispatch.pxi)."""
    cdef public object app
    cdef public object config
    cdef public object server
    cdef public str script_name
    cdef public bint access_log
    cdef public dict _base
    cdef public bint compiled_fast_path   # False: a subclass overrides a method the fast path replaces
    cdef public bint server_from_host     # a unix socket: SERVER_NAME/PORT per request, from Host


@cython.auto_pickle(False)
@cython.final
cdef class WSGIExchange:
    """The compiled twin of fastcore.wsgi_adapter._Exchange (same attributes, same rules): what
    start_response and write() were given during one WSGI call."""
    cdef public object request, errors, status, reason, headers, declared, written, wall, started
    cdef public int code
    cdef public bint committed, finished, result_closed

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.committed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None                         # no reference cycle through the traceback
        elif self.status is not None:
            raise RuntimeError("start_response() was already called; call it again only with exc_info")
        checked = check_wsgi_response_head(status, headers)
        self.status = status
        self.code = checked[0]
        self.reason = checked[1]
        self.headers = headers
        self.declared = checked[2]
        return self.write

    def write(self, data):
        if self.status is None:
            raise RuntimeError("write() called before start_response()")
        if type(data) is not bytes:
            data = wsgi_body_bytes(data)
        self.committed = True
        if data:
            self.written.append(data)


cdef inline bint _is_head_request(Request request):
    return request._method_length == 4 and memcmp(PyBytes_AS_STRING(request._head), b"HEAD", 4) == 0


cdef str _method_text(const char* data, Py_ssize_t length):
    if length == 3 and memcmp(data, b"GET", 3) == 0:
        return _METHOD_GET
    if length == 4 and memcmp(data, b"POST", 4) == 0:
        return _METHOD_POST
    if length == 4 and memcmp(data, b"HEAD", 4) == 0:
        return _METHOD_HEAD
    return PyUnicode_DecodeASCII(data, length, NULL)


cdef dict wsgi_environ(WSGIAdapter handler, Request request, object errors):
    """The PEP 3333 environ of a compiled Request: what WSGIHandler.environ() gives, built from
    the head bytes and the parser's offsets."""
    cdef dict base = handler._base
    cdef dict environ
    cdef const char* data = PyBytes_AS_STRING(request._head)
    cdef Py_ssize_t head_length = PyBytes_GET_SIZE(request._head)
    cdef Py_ssize_t query_start, target_end, position, line_end, colon, value_start, value_end
    cdef const char* newline
    cdef str path, root, target, name, value
    if base is None:
        base = handler._base_environ()
    environ = PyDict_Copy(base)

    if request._path_length == 0:
        path = "/"
    elif memchr(data + request._path_offset, 37, request._path_length) != NULL:     # '%'
        path = unquote_to_bytes(PyUnicode_DecodeLatin1(data + request._path_offset, request._path_length,
                                                       NULL)).decode("latin-1")
    elif request._path_length == 1 and data[request._path_offset] == 42:             # OPTIONS *
        path = ""
    else:
        path = PyUnicode_DecodeLatin1(data + request._path_offset, request._path_length, NULL)
    root = handler.script_name
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root):]
    target = PyUnicode_DecodeLatin1(data + request._target_offset, request._target_length, NULL)
    query_start = request._path_offset + request._path_length
    target_end = request._target_offset + request._target_length

    environ["REQUEST_METHOD"] = _method_text(data, request._method_length)
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = (PyUnicode_DecodeLatin1(data + query_start + 1, target_end - query_start - 1, NULL)
                               if query_start < target_end and data[query_start] == 63 else "")
    environ["REQUEST_URI"] = target
    environ["RAW_URI"] = target
    environ["SERVER_PROTOCOL"] = _HTTP_11 if request._version_minor == 1 else _HTTP_10
    environ["REMOTE_ADDR"] = peer_host_text(&request._peer)
    environ["REMOTE_PORT"] = str(peer_port(&request._peer))
    environ["wsgi.input"] = request.stream
    environ["wsgi.errors"] = errors

    # Header lines: the parser guarantees CRLF line ends, a colon in each, no obs-fold.
    newline = <const char*>memchr(data, 10, head_length)
    position = newline - data + 1
    while position < head_length:
        newline = <const char*>memchr(data + position, 10, head_length - position)
        line_end = newline - data - 1                   # at the CR
        if line_end <= position:
            break                                       # the empty line that ends the head
        colon = (<const char*>memchr(data + position, 58, line_end - position)) - data
        name = PyUnicode_DecodeASCII(data + position, colon - position, NULL)
        key = _wsgi_header_keys.get(name, False)
        if key is False:
            key = wsgi_environ_key(name)
        position = line_end + 2
        if key is None:
            continue                                    # a name with "_": dropped
        value_start = colon + 1
        value_end = line_end
        while value_start < value_end and (data[value_start] == 32 or data[value_start] == 9):
            value_start += 1
        while value_end > value_start and (data[value_end - 1] == 32 or data[value_end - 1] == 9):
            value_end -= 1
        value = PyUnicode_DecodeLatin1(data + value_start, value_end - value_start, NULL)
        previous = environ.get(key)
        if previous is None:
            environ[key] = value
        else:
            environ[key] = previous + ("; " if key == "HTTP_COOKIE" else ",") + value
    if handler.server_from_host:
        wsgi_server_from_host(environ)
    if request._proxies is not None:
        proxied = request.proxied_view()
        if proxied is not None:
            _proxy_apply_to_environ(environ, proxied)
    return environ


cdef object wsgi_answer(WSGIAdapter handler, Request request):
    """WSGIHandler.__call__(request) for a compiled Request: returns the Response (or raises the
    RequestBodyError the core answers)."""
    cdef WSGIExchange exchange = WSGIExchange.__new__(WSGIExchange)
    cdef object result = None
    exchange.request = request
    exchange.errors = WSGIErrorStream.__new__(WSGIErrorStream)
    exchange.code = 500
    exchange.written = []
    if handler.access_log:
        exchange.wall = _time_module.time()
        exchange.started = _time_module.perf_counter()
    try:
        result = handler.app(wsgi_environ(handler, request, exchange.errors), exchange.start_response)
        if (type(result) is list or type(result) is tuple) and exchange.status is not None and not exchange.written:
            return _complete_sequence(handler, exchange, request, result)
        return handler._respond(exchange, result)
    except BaseException as error:
        return handler._failed(exchange, result, error)


cdef object _complete_sequence(WSGIAdapter handler, WSGIExchange exchange, Request request, object result):
    """The compiled twin of WSGIHandler._complete for a list or tuple body (nothing written, no
    close() to call): Content-Length framing, the declared length checked the same way."""
    cdef bytes body
    cdef Py_ssize_t sent
    cdef bint head_request = _is_head_request(request)
    cdef int code = exchange.code
    if len(result) == 1 and type(result[0]) is bytes:
        body = result[0]
    else:
        body = b"".join(result)
    sent = len(body)
    declared = exchange.declared
    if declared is not None and sent != declared:
        if sent > declared:
            sent = declared                             # the core cuts the body to it
        elif not head_request and not (code < 200 or code == 204 or code == 304):
            raise ValueError(f"the application declared Content-Length: {declared} "
                             f"but gave a {sent}-byte body")
    if handler.access_log:
        handler._finish(exchange, 0 if head_request else sent)
    else:
        exchange.finished = True
        exchange.errors.flush()
    return response_of(body, code, exchange.headers, exchange.reason)

# wsgi.pxi: the compiled fast path of fastcore.wsgi.WSGIHandler.
#
# Theory of operation. fastcore/wsgi.py is the WSGI adapter: a native handler that turns a Request
# into an environ, calls the app, and turns what the app gives back into a Response. It is plain
# Python so that it runs on both engines (fastcore.pure uses it as is). On the compiled engine
# the per-request Python of that adapter cost more than everything else together (a hello-world
# app spent ~4 us per request in it), so WSGIHandler subclasses WSGIAdapter below, and when the
# Core's handler is one, run_python_batch calls wsgi_answer() instead of handler(request):
#
#   * the environ is built here from the head bytes and the parser's offsets (no Request
#     properties, no Headers object, header lines decoded straight into environ keys);
#   * start_response is WSGIExchange.start_response, a C method that validates against the same
#     caches as fastcore.wsgi._check_response_head and calls it on a cache miss;
#   * a list or tuple body after start_response (the common case) becomes the Response here, as
#     WSGIHandler._complete would make it.
#
# Everything else (generators, write() data, file wrappers, errors, the access log) goes to the
# same WSGIHandler methods the pure engine uses, so the rules live in one place: fastcore/wsgi.py.
# The twins here (WSGIExchange of _Exchange, _complete's length checks, environ()) are checked
# against the Python ones by running tests/test_wsgi.py on both engines.

from cpython.dict cimport PyDict_Copy
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeASCII

from urllib.parse import unquote_to_bytes
import time as _time_module

# fastcore.wsgi's module-level caches and helpers, bound once by bind_wsgi_module() (fastcore.wsgi
# imports this module, so it cannot be imported at this module's load).
cdef dict _wsgi_header_keys = None          # request header name -> environ key (None: dropped)
cdef dict _wsgi_status_codes = None         # status str -> (code, reason or None)
cdef set _wsgi_checked_fields = None        # (name, value) tuples already validated
cdef dict _wsgi_declared_fields = None      # validated Content-Length tuples -> int
cdef object _wsgi_environ_key = None
cdef object _wsgi_check_response_head = None
cdef object _wsgi_as_bytes = None
cdef object _wsgi_error_stream = None

cdef str _METHOD_GET = "GET", _METHOD_POST = "POST", _METHOD_HEAD = "HEAD"
cdef str _HTTP_11 = "HTTP/1.1", _HTTP_10 = "HTTP/1.0"


def bind_wsgi_module(module):
    """Called by fastcore.wsgi once it is loaded: the caches and helpers the fast path shares."""
    global _wsgi_header_keys, _wsgi_status_codes, _wsgi_checked_fields, _wsgi_declared_fields
    global _wsgi_environ_key, _wsgi_check_response_head, _wsgi_as_bytes, _wsgi_error_stream
    _wsgi_header_keys = module._header_keys
    _wsgi_status_codes = module._status_codes
    _wsgi_checked_fields = module._checked_fields
    _wsgi_declared_fields = module._declared_fields
    _wsgi_environ_key = module._environ_key
    _wsgi_check_response_head = module._check_response_head
    _wsgi_as_bytes = module._as_bytes
    _wsgi_error_stream = module._ErrorStream


cdef class WSGIAdapter:
    """Base of fastcore.wsgi.WSGIHandler: the attributes the compiled fast path reads without a
    Python attribute lookup. See fastcore/wsgi.py for what they mean."""
    cdef public object app
    cdef public object config
    cdef public object server
    cdef public str script_name
    cdef public bint access_log
    cdef public dict _base
    cdef public bint compiled_fast_path   # False: a subclass overrides a method the fast path replaces


@cython.auto_pickle(False)
@cython.final
cdef class WSGIExchange:
    """The compiled twin of fastcore.wsgi._Exchange (same attributes, same rules): what
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
        checked = _checked_response_head(status, headers)
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
            data = _wsgi_as_bytes(data)
        self.committed = True
        if data:
            self.written.append(data)


cdef tuple _checked_response_head(object status, object headers):
    """(code, reason, declared) from the caches fastcore.wsgi._check_response_head fills; any
    miss asks it (it validates, raises, and caches what can be cached)."""
    cdef object checked, declared = None, length
    if type(status) is not str or type(headers) is not list:
        return _wsgi_check_response_head(status, headers)
    checked = _wsgi_status_codes.get(status)
    if checked is None:
        return _wsgi_check_response_head(status, headers)
    for item in <list>headers:
        if type(item) is not tuple:
            return _wsgi_check_response_head(status, headers)
        if item in _wsgi_checked_fields:
            continue
        length = _wsgi_declared_fields.get(item)
        if length is None:
            return _wsgi_check_response_head(status, headers)
        declared = length
    return ((<tuple>checked)[0], (<tuple>checked)[1], declared)


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
            key = _wsgi_environ_key(name)
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
    return environ


cdef object wsgi_answer(WSGIAdapter handler, Request request):
    """WSGIHandler.__call__(request) for a compiled Request: returns the Response (or raises the
    RequestBodyError the core answers)."""
    cdef WSGIExchange exchange = WSGIExchange.__new__(WSGIExchange)
    cdef object result = None
    exchange.request = request
    exchange.errors = _wsgi_error_stream()
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
    cdef Response response = Response.__new__(Response)
    response.body = body
    response.status = code
    response.headers = exchange.headers
    response.reason = exchange.reason
    return response

"""fastcore.pure.response: the bytes of every response: handler results, static routes, errors, 503.

Theory of operation. The same responses as pyext/response.pxi and the serializer in
pyext/serializer.pxi, byte for byte. A handler's response: status line, the handler's Content-Type
and fields, then Server and Date (a ready-made line, formatted at most once a second per thread by
DateCache) unless the handler set its own (its value wins, one field of each), then exactly one
framing field (Content-Length, or Transfer-Encoding: chunked for a streamed body on HTTP/1.1), then
Connection when the connection will close (or `keep-alive` for an HTTP/1.0 client that asked).
HEAD, 204 and 304 carry no body; a 1xx is refused (a handler gives the final status). Status and
Content-Type lines are cached per server.

A handler response is built in a local list and only appended to the connection's output once it is
complete, so a failure half-way (a CR in a header value, say) leaves nothing behind and becomes a
clean 500. Bodies of unknown length are pulled from their iterator by pull_stream() up to
STREAM_HIGH_WATER bytes of pending output at a time; close() of the iterable is always called.
"""
import email.utils
import io
import logging
import os
import re
import stat
import time
from http import HTTPStatus

from .._core import FileWrapper, Response
from .protocol import CLOSE_AFTER_RESPONSE, close_after

error_log = logging.getLogger("fastcore.error")

STREAM_HIGH_WATER = 65536               # bytes of a streamed body buffered before waiting for the socket
CONTENT_TYPE_CACHE_SIZE = 64
SMALL_BODY = 16384                      # bodies up to this are copied behind the head: one buffer to send
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CONNECTION_CLOSE = b"Connection: close\r\n"
CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
# Bounds on a handler's response head, as in serializer.pxi (which says why these numbers).
MAX_RESPONSE_HEAD_SIZE = 65536          # bytes, status line to the blank line, as serialized
MAX_RESPONSE_FIELDS = 256               # fields the handler gives
_END_OF_STREAM = object()

# Reason phrases of the statuses the server produces on its own (status_reason in response.pxi).
ERROR_REASONS = {
    200: b"OK", 400: b"Bad Request", 404: b"Not Found", 408: b"Request Timeout", 413: b"Content Too Large",
    414: b"URI Too Long", 417: b"Expectation Failed", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 501: b"Not Implemented", 503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}

# RFC 9110 5.6.2 token bytes for field names; field values must not hold CR, LF, NUL, other
# controls or DEL (HTAB, SP, VCHAR and obs-text are fine).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class DateCache:
    """The `Date: ...\\r\\n` line (IMF-fixdate, RFC 9110 5.6.7), reformatted when the second changes."""

    __slots__ = ("second", "line")

    def __init__(self):
        self.second = None
        self.line = b""
        self.refresh()

    def refresh(self):
        now = int(time.time())
        if now != self.second:
            self.line = b"Date: " + email.utils.formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
            self.second = now
        return self.line


class Formats:
    """Per-server response pieces: the Server line, static routes, cached status and type lines."""

    def __init__(self, server_name, static_routes):
        self.server_field = b"Server: " + server_name.encode("latin-1") + b"\r\n"
        self._status_lines = {}
        self._content_type_lines = {}
        self.routes = {}                # path bytes -> (head without Date, body, status)
        for path, status, content_type, body in static_routes:
            head = (self.status_line(status) + self.server_field
                    + b"Content-Type: " + content_type.encode("latin-1") + b"\r\n"
                    + b"Content-Length: %d\r\n" % len(body))
            self.routes[path.encode("latin-1")] = (head, body, status)

    def status_line(self, status):
        line = self._status_lines.get(status)
        if line is None:
            check_final_status(status)
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
            line = f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")
            self._status_lines[status] = line
        return line

    def content_type_line(self, content_type):
        line = self._content_type_lines.get(content_type)
        if line is None:
            value = as_latin1(content_type)
            check_field(b"Content-Type", value)
            line = b"Content-Type: " + value + b"\r\n"
            if len(self._content_type_lines) < CONTENT_TYPE_CACHE_SIZE:
                self._content_type_lines[content_type] = line
        return line

    def canned_503(self, date_line):
        """What the listener sends before closing a connection it refuses (queue full, too many open)."""
        return (b"HTTP/1.1 503 Service Unavailable\r\n"
                + (self.server_field if len(self.server_field) < 256 else b"") + date_line
                + b"Content-Type: text/plain\r\nContent-Length: 20\r\nRetry-After: 1\r\n"
                  b"Connection: close\r\n\r\nService Unavailable\n")


# -- small helpers (the same rules as python.pxi) ----------------------------------------------------

def as_latin1(text):
    if isinstance(text, bytes):
        return text
    return text.encode("latin-1")


def check_field(name, value):
    """Refuse response fields that would corrupt the framing (response splitting)."""
    if not name:
        raise ValueError("empty response header name")
    if _TOKEN.fullmatch(name) is None:
        raise ValueError(f"invalid response header name {name!r}")
    if _BAD_VALUE_BYTE.search(value) is not None:
        raise ValueError(f"invalid byte in response header {name!r}")


def as_body_bytes(part):
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode("utf-8")
    if isinstance(part, (bytearray, memoryview)):
        return bytes(part)
    raise TypeError(f"a response body part must be bytes or str, not {type(part).__name__}")


def regular_file_span(wrapper):
    """(fd, offset, length) to sendfile for a FileWrapper over a regular file, else None."""
    filelike = wrapper.filelike
    try:
        fd = filelike.fileno()
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            return None
        offset = filelike.tell() if hasattr(filelike, "tell") else 0
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd, offset, max(0, status.st_size - offset)


def close_iterable(iterable):
    """Call iterable.close() if it has one (PEP 3333 asks it always be called); log its errors."""
    try:
        close_method = getattr(iterable, "close", None)
        if close_method is not None:
            close_method()
    except BaseException:
        try:
            error_log.exception("closing a response body failed")
        except BaseException:
            pass


# -- responses the server writes on its own ----------------------------------------------------------

def connection_field(conn):
    """Connection: close when we will close; keep-alive spelled out only for HTTP/1.0 clients."""
    if not conn.keep_alive:
        return CONNECTION_CLOSE
    message = conn.parser.message
    if message is None or message.version_minor == 0:
        return CONNECTION_KEEP_ALIVE
    return b""


def append_error_response(conn, status, head_only):
    """A short text/plain response with the status's reason as body."""
    worker = conn.worker
    worker.count_response(status)
    reason = ERROR_REASONS.get(status, b"Error")
    conn.write(b"HTTP/1.1 %d %s\r\n%s%sContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s\r\n%s"
               % (status, reason, worker.formats.server_field, worker.date.line, len(reason) + 1,
                  connection_field(conn), b"" if head_only else reason + b"\n"))


def append_static_response(conn, route, head_only):
    head, body, status = route
    conn.worker.count_response(status)
    data = head + conn.worker.date.line + connection_field(conn) + b"\r\n"
    conn.write(data if head_only else data + body)


# -- handler results ---------------------------------------------------------------------------------

def declared_length(value):
    if not value.isdigit() or len(value) > 18:
        raise ValueError(f"invalid Content-Length {value!r}")
    return int(value)


def check_final_status(status):
    """A handler's response is the request's final response: a 1xx (interim, RFC 9110 15.2) would
    leave the client waiting for the real one and taking the next response as this request's; the
    server's own 100 Continue does not come through here, and fastcore never switches protocols
    (so no 101 either). As _check_final_status in serializer.pxi."""
    if not 100 <= status <= 999:
        raise ValueError(f"invalid HTTP status {status}")
    if status < 200:
        raise ValueError(f"a handler cannot answer with the interim status {status} (1xx): "
                         f"a response needs a final status, 200 or above")


def check_response_field_count(headers):
    """Refuse more than MAX_RESPONSE_FIELDS fields before any is serialized (one len(); an
    iterable without one is bounded by check_response_head_size alone)."""
    try:
        count = len(headers)
    except TypeError:
        return
    if count > MAX_RESPONSE_FIELDS:
        raise ValueError(f"the response has {count} header fields, more than the limit of "
                         f"{MAX_RESPONSE_FIELDS} (MAX_RESPONSE_FIELDS)")


def check_response_head_size(length):
    """Refuse a serialized head over MAX_RESPONSE_HEAD_SIZE (nothing is written yet: a 500 follows)."""
    if length > MAX_RESPONSE_HEAD_SIZE:
        raise ValueError(f"the response head is {length} bytes, more than the limit of "
                         f"{MAX_RESPONSE_HEAD_SIZE} (MAX_RESPONSE_HEAD_SIZE)")


def custom_status_line(status, reason):
    """A status line with the handler's own reason phrase (WSGI apps give one); not cached."""
    phrase = as_latin1(reason)
    check_final_status(status)
    check_field(b"Reason", phrase)
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


def append_handler_response(conn, result, head_only):
    """Serialize what the handler returned into the connection's output (ResponseSerializer.append_response in
    serializer.pxi). Raises on a result that cannot be sent; the output is then untouched.

    Framing: a body of known length gets Content-Length; an iterable is streamed, chunked on
    HTTP/1.1 and close-delimited on 1.0, unless the handler declared a Content-Length, which is
    then honoured (the stream is capped at it, and a stream that falls short closes the
    connection). A declared Content-Length on HEAD is what a GET would carry."""
    worker = conn.worker
    formats = worker.formats
    reason = None
    if type(result) is Response:
        status = result.status
        body = result.body
        headers = result.headers
        content_type = result.content_type
        reason = result.reason
    elif isinstance(result, (bytes, str)):
        status = 200
        body = result
        headers = content_type = None
    else:
        raise TypeError(f"a handler returns fastcore.Response, bytes or str, not {type(result).__name__}")
    stream = None
    file_span = None
    if isinstance(body, bytes):
        pass
    elif type(body) is FileWrapper and (file_span := regular_file_span(body)) is not None:
        pass                                        # sent with sendfile(2) once the head is out
    elif isinstance(body, str):
        body = body.encode("utf-8")
    elif isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    elif isinstance(body, (list, tuple)):
        body = b"".join([as_body_bytes(part) for part in body])    # known length
    else:
        stream = iter(body)                         # unknown length: streamed

    parts = [formats.status_line(status) if reason is None else custom_status_line(status, reason)]
    if content_type is not None:
        parts.append(formats.content_type_line(content_type))
    declared = -1
    server_field = formats.server_field             # left out if the handler sets its own
    date_field = worker.date.line                   # the same
    if headers:
        check_response_field_count(headers)
        for field_name, field_value in (headers.items() if isinstance(headers, dict) else headers):
            name = as_latin1(field_name)
            value = as_latin1(field_value)
            check_field(name, value)
            lowered = name.lower()
            if lowered == b"content-length":
                declared = declared_length(value)
                continue                            # written below, once, with the framing
            if lowered == b"transfer-encoding":
                continue                            # framing is ours to decide
            if lowered == b"connection":
                if b"close" in value.lower():
                    close_after(conn, CLOSE_AFTER_RESPONSE)
                continue
            if lowered == b"server":
                server_field = b""
            elif lowered == b"date":
                date_field = b""
            parts.append(name + b": " + value + b"\r\n")
    parts.append(server_field)
    parts.append(date_field)

    bodyless = status < 200 or status == 204 or status == 304
    stream_remaining = -1
    body_length = 0
    if bodyless:
        pass
    elif file_span is not None:
        body_length = file_span[2]
        if declared >= 0:
            if declared > body_length:
                raise ValueError(f"Content-Length {declared} is more than the file's {body_length} remaining bytes")
            body_length = declared
            file_span = (file_span[0], file_span[1], body_length)
    elif stream is not None:
        body_length = stream_remaining = declared
    else:
        body_length = len(body)
        if declared >= 0 and not head_only:
            if declared > body_length:
                raise ValueError(f"Content-Length {declared} is more than the body's {body_length} bytes")
            body = body[:declared]                  # never send more than was declared
            body_length = declared
        elif declared >= 0:
            body_length = declared                  # HEAD: what the GET would carry
    chunked = False
    if not bodyless:
        if body_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % body_length)
        elif conn.parser.message.version_minor == 1:
            parts.append(b"Transfer-Encoding: chunked\r\n")
            chunked = True
        else:
            close_after(conn, CLOSE_AFTER_RESPONSE)     # HTTP/1.0: the close delimits the body
    parts.append(connection_field(conn))
    parts.append(b"\r\n")
    head = b"".join(parts)
    check_response_head_size(len(head))
    worker.count_response(status)               # from here on nothing can fail: the response goes out

    if file_span is not None:
        conn.write(head)
        conn.stream_owner = body
        if bodyless or head_only or file_span[2] == 0:
            conn.release_stream()
        else:
            conn.sendfile_fd, conn.sendfile_offset, conn.sendfile_remaining = file_span
    elif stream is not None:
        conn.write(head)
        conn.stream = stream
        conn.stream_owner = body
        conn.stream_chunked = chunked
        conn.stream_remaining = stream_remaining
        if bodyless or head_only or stream_remaining == 0:
            conn.release_stream()                   # no body goes out; the iterable is closed
        else:
            pull_stream(conn)
    elif bodyless or head_only or not body:
        conn.write(head)
    elif len(body) <= SMALL_BODY:
        conn.write(head + body)
    else:
        conn.write(head)
        conn.write(body)                            # a second buffer of the same send: not copied


def pull_stream(conn):
    """Append the next parts of a streamed body to the output and send each as it comes (a
    server-sent-events generator must not wait for a buffer to fill), until the socket is full,
    STREAM_HIGH_WATER bytes wait, or the body ends. An exception mid-body cannot become a 500 any
    more: the connection closes without the last chunk, so the client sees the body is incomplete."""
    iterator = conn.stream
    try:
        while conn.out_size < STREAM_HIGH_WATER:
            item = next(iterator, _END_OF_STREAM)
            if item is _END_OF_STREAM:
                if conn.stream_chunked:
                    conn.write(b"0\r\n\r\n")
                elif conn.stream_remaining > 0:
                    error_log.error("a streamed body ended %d bytes short of its Content-Length; "
                                    "closing the connection", conn.stream_remaining)
                    close_after(conn, CLOSE_AFTER_RESPONSE)
                conn.release_stream()
                return
            part = as_body_bytes(item)
            if not part:
                continue
            if conn.stream_chunked:
                if len(part) <= SMALL_BODY:
                    conn.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    conn.write(b"%x\r\n" % len(part))
                    conn.write(part)
                    conn.write(b"\r\n")
            elif conn.stream_remaining >= 0:
                if len(part) >= conn.stream_remaining:
                    conn.write(part[:conn.stream_remaining])     # never more than declared
                    conn.stream_remaining = 0
                    conn.release_stream()
                    return
                conn.write(part)
                conn.stream_remaining -= len(part)
            else:
                conn.write(part)
            if not conn.send_available():
                return                              # the flush after the batch takes it from here
    except BaseException:
        try:
            error_log.exception("streamed response body failed; closing the connection")
        except BaseException:
            pass
        close_after(conn, CLOSE_AFTER_RESPONSE)
        conn.release_stream()

"""fastcore.pure.connection: one client connection inside its worker: read, answer, write, close.

Theory of operation (as pyext/connection.pxi and serve.pxi). Each readable event does one recv()
into the parser's input, then serve() answers every complete request found there, in order,
appending the responses to the output: static routes and errors at once; at the first request for
the handler it stops and the connection joins the worker's handler batch (batch.py; with handler
threads, the bridge: bridge.py), which calls the handler and resumes serving. flush() sends the
output (pipelined responses included, as separate buffers of one send / sendmsg), followed by a
file body through os.sendfile. What happens next (wait for the next request, for the socket, for
the handler; linger; close) is the state machine's to decide (protocol.py): the methods here report
events to it and never set a phase, a timer or the epoll interest themselves. A client that stops
reading stops being read (SENDING listens for EPOLLOUT only): backpressure.

Output is a deque of bytes-like buffers (`out`, `out_size` bytes): a big body is queued as it is,
never copied into a buffer, and a partial send keeps a memoryview of the rest.

Closing, lingering first after an error answer (half_close(), then discard_input() until the
client's FIN, an error or the LINGER timer): protocol.finish() says why.
"""
import collections
import os
import select
import socket
import time

from .. import access
from .._core import RequestBodyError
from . import protocol, response, timers, websocket_native
from .parser import Reject, RequestParser
from .protocol import (ANSWERED, CLOSE, CLOSE_AFTER_RESPONSE, CLOSE_LINGERING, CLOSE_NEVER, CLOSED, NEW,
                       OUTPUT_BLOCKED, OUTPUT_DRAINED, SENDING, TO_HANDLER, close_after, transition)
from .request import BodyReader, Request

SERVE_DONE = 0              # every complete request answered; waiting for more bytes
SERVE_NEEDS_PYTHON = 1      # stopped at a request for the handler
SERVE_CLOSE = 2             # answer written; close once output is flushed
SERVE_WEBSOCKET = 3         # a native WebSocket's 101 is written: the connection leaves HTTP

READ_SIZE = 65536
# recv calls per readable event of a lingering connection: the rest is reported again (epoll is
# level-triggered), so a fast uploader being discarded cannot hold the worker from its other connections.
LINGER_READS_PER_EVENT = 16
SENDFILE_STEP = 1 << 20     # bytes per sendfile call, so one big file cannot starve the loop
SENDMSG_BUFFERS = 512       # buffers per sendmsg call (IOV_MAX is 1024 on Linux)

_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)

# Where a lingering connection's input goes. Nothing ever reads it, so all workers share it (recv_into
# spares allocating a bytes object per read).
_DISCARD = bytearray(READ_SIZE)


class Conn:
    __slots__ = ("worker", "sock", "fd", "peer", "parser", "out", "out_size", "phase", "close_policy",
                 "interest", "head_complete", "keep_alive", "peer_closed", "body_streamed",
                 "continue_deferred", "serving_paused", "timer_kind", "home", "with_handler_thread",
                 "stream", "stream_owner", "stream_chunked", "stream_remaining",
                 "sendfile_fd", "sendfile_offset", "sendfile_remaining",
                 "bytes_in", "body_bytes_base", "body_started", "request_started", "websocket")

    def __init__(self, worker, sock, peer):
        self.worker = worker                # the I/O worker, or a handler thread's context while it has it
        self.home = worker                  # the I/O worker it lives in (handler threads hand it back there)
        self.with_handler_thread = False    # handed to the bridge: its worker reads nothing else of it (bridge.py)
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.parser = RequestParser(worker.limits)
        self.out = collections.deque()
        self.out_size = 0
        self.phase = NEW                    # written only by protocol.transition
        self.close_policy = CLOSE_NEVER     # written only by protocol.close_after
        self.interest = 0                   # the epoll events registered for fd (0: not registered)
        self.head_complete = False
        self.serving_paused = False         # complete requests wait: the output was over its high-water mark
        self.keep_alive = False             # the current response keeps the connection (no Connection: close)
        self.peer_closed = False            # recv returned 0 / failed: no more input will come
        self.body_streamed = False          # the handler reads this request's body as it arrives
        self.continue_deferred = False      # 100 Continue is owed when (if) the handler reads the body
        self.timer_kind = timers.NONE
        self.stream = None                  # iterator of a streamed response body
        self.stream_owner = None            # the iterable itself (its close() is called)
        self.stream_chunked = False         # chunked framing (HTTP/1.1), else Content-Length or close-delimited
        self.stream_remaining = -1          # bytes a streamed body still owes its declared Content-Length
        self.sendfile_fd = -1               # a file being sent with sendfile(2)
        self.sendfile_offset = 0
        self.sendfile_remaining = 0
        self.bytes_in = 0                   # bytes received on this connection (the body rate's measure)
        self.body_bytes_base = 0            # bytes_in less the current body's bytes so far
        self.body_started = 0.0             # when the current body's rate clock started (timers.py)
        self.request_started = 0.0          # access log: when the current head's first byte was seen
        self.websocket = None               # a native WebSocket (websocket_native.py) once upgraded

    def write(self, data):
        self.out.append(data)
        self.out_size += len(data)

    # -- serving -----------------------------------------------------------------------------------

    def serve(self):
        """Answer every complete request in the input, in order (serve_buffered_requests)."""
        parser = self.parser
        worker = self.worker
        self.serving_paused = False
        if self.websocket is not None:
            return SERVE_WEBSOCKET                      # upgraded: nothing after the handshake is HTTP
        while True:
            if self.close_policy != CLOSE_NEVER and not self.head_complete:
                return SERVE_CLOSE
            if self.stream is not None or self.sendfile_fd >= 0:
                return SERVE_DONE                       # the response being streamed comes first
            if not self.head_complete and parser.inbuf and protocol.pauses_serving(self):
                return SERVE_DONE                       # the output goes out first (protocol.py)
            try:
                if not self.head_complete:
                    if not self.request_started and worker.access_log and parser.inbuf:
                        self.request_started = time.perf_counter()
                    message = parser.parse_head()
                    if message is None:
                        return SERVE_DONE
                    worker.requests += 1
                    self.start_body(message)
                    self.head_complete = True
                else:
                    message = parser.message
                if not parser.feed_body():
                    if (message.body_size if message.chunked else message.content_length) > worker.body_buffer_size \
                            and self.goes_to_python(message):
                        self.body_streamed = True       # too big to hold: the handler reads it as it comes
                        return SERVE_NEEDS_PYTHON
                    return self.body_incomplete()
            except Reject as error:
                return self.fail(error.status, error.head_only)

            # A complete request: answer it.
            protocol.request_complete(self)
            if worker.ws_routes and message.is_get:
                ws_route = worker.ws_routes.get(message.path)
                if ws_route is not None and websocket_native.upgrade_requested(message):
                    if websocket_native.handshake(self, message, ws_route):
                        return SERVE_WEBSOCKET
                    transition(self, ANSWERED)          # refused (400, 426): closes after it
                    self.finish_request()
                    continue
            route = worker.static_route(message)
            if route is not None:
                response.append_static_response(self, route, message.is_head)
                if worker.access_log:
                    self.log_core_response(route[2], 0 if message.is_head else len(route[1]))   # (head, body, status)
            elif worker.serves_python:
                return SERVE_NEEDS_PYTHON
            else:
                response.append_error_response(self, 404, message.is_head)
                self.log_error_response(404, message.is_head)
            transition(self, ANSWERED)
            self.finish_request()

    def body_incomplete(self):
        """A body the worker buffers is not all in yet: wait for more, unless it has fallen below
        body_min_rate (timers.py), which is a 408 and a close (serve.pxi: body_incomplete)."""
        deadline = timers.body_rate_deadline(self)
        if deadline is not None and self.worker.now >= deadline:
            self.worker.body_rate_timeouts += 1
            return self.fail(408)
        return SERVE_DONE

    def goes_to_python(self, message):
        worker = self.worker
        return worker.serves_python and worker.static_route(message) is None

    def start_body(self, message):
        """The head is valid: decide keep-alive, check the body's size, answer Expect."""
        protocol.start_request(self)
        timers.body_rate_start(self, self.worker.now, len(self.parser.inbuf))
        if message.expect_unknown:
            raise Reject(417)
        if message.content_length > self.worker.limits.max_body_size:
            raise Reject(413)                           # refused before a byte of it is read
        if (message.expect_continue and message.version_minor == 1 and not self.parser.inbuf
                and (message.chunked or message.content_length > 0)):
            if message.content_length > self.worker.body_buffer_size and self.goes_to_python(message):
                self.continue_deferred = True           # streamed: sent only if the handler reads
                return
            self.write(response.CONTINUE)               # RFC 9110 10.1.1: the client waits for it

    def send_deferred_continue(self):
        if self.continue_deferred:
            self.continue_deferred = False
            self.write(response.CONTINUE)

    def fail(self, status, head_only=None):
        """Answer a protocol error with its status and close: the stream cannot be trusted after it."""
        if head_only is None:
            message = self.parser.message
            head_only = message is not None and message.is_head
        close_after(self, CLOSE_LINGERING)
        response.append_error_response(self, status, head_only)
        self.log_error_response(status, head_only)
        transition(self, ANSWERED)
        return SERVE_CLOSE

    def log_error_response(self, status, head_only):
        if self.worker.access_log:
            self.log_core_response(status, 0 if head_only else len(response.ERROR_REASONS.get(status, b"Error")) + 1)

    def log_core_response(self, status, body_bytes):
        """The access line of a response the engine wrote itself (pyext/access.pxi's twin): static
        routes, the 404 without a handler, protocol errors."""
        message = self.parser.message
        if message is not None:
            head = message.head
            request = "%s %s HTTP/1.%d" % (head[:message.method_end].decode("latin-1"),
                                           head[message.target_start:message.target_end].decode("latin-1"),
                                           message.version_minor)
        else:
            request = access.raw_request_line(bytes(self.parser.inbuf[:access.RAW_LINE_MAX]))
        elapsed = int((time.perf_counter() - self.request_started) * 1_000_000) if self.request_started else 0
        access.log.info(access.CORE_FORMAT, self.peer[0] if isinstance(self.peer, tuple) else "-",
                        access.clf_time(time.time()), request, status, body_bytes or "-", elapsed)

    def finish_request(self):
        """The current request is answered: get ready for the next one."""
        self.head_complete = False
        self.body_streamed = False
        self.continue_deferred = False
        self.request_started = 0.0
        self.parser.next_message()

    # -- the handler (called from the worker's batch) ------------------------------------------------

    def answer_with_handler(self):
        worker = self.worker
        message = self.parser.message
        head_only = message.is_head
        request = Request(message, self.peer, self.keep_alive)
        request._proxies = worker.proxies
        reader = None
        if self.body_streamed:
            reader = request._reader = BodyReader(self, message)
        else:
            request._body = message.body()
        try:
            result = worker.handler(request)
            if worker.stop_requested:
                close_after(self, CLOSE_AFTER_RESPONSE)     # stop() came while the handler ran
            if reader is not None:
                self.end_streamed_body(reader)
            response.append_handler_response(self, result, head_only)
        except BaseException as error:
            if reader is not None:
                self.end_streamed_body(reader)
            if isinstance(error, RequestBodyError):
                close_after(self, CLOSE_AFTER_RESPONSE)
                response.append_error_response(self, error.status, head_only)
            else:
                try:
                    response.error_log.exception("handler failed on %r", request)
                except BaseException:
                    pass
                response.append_error_response(self, 500, head_only)
        self.finish_request()

    def end_streamed_body(self, reader):
        """The handler is done with a streamed body. Unread body bytes cannot be told from the next
        request without reading them all, so a connection whose body was not read to the end closes
        after the response."""
        if reader.conn is None:
            return
        reader.detach()
        if not reader.finished:
            close_after(self, CLOSE_LINGERING)

    def release_stream(self):
        """Drop the streamed body (or file) and close it."""
        owner = self.stream_owner
        self.stream = None
        self.stream_owner = None
        if owner is not None:
            response.close_iterable(owner)

    # -- reading ---------------------------------------------------------------------------------------

    def on_readable(self):
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self.peer_closed = True
            self.close()
            return
        if data:
            self.parser.inbuf += data
            self.bytes_in += len(data)
            self.worker.bytes_received += len(data)
        else:
            self.peer_closed = True
        self.finish_turn(self.serve())

    def finish_turn(self, result):
        """After serving: queue for the handler, or flush what was answered (and close if that is the end),
        or, after a native WebSocket's handshake, give the connection to it."""
        if self.websocket is not None:
            self.websocket.begin()
            return
        if result == SERVE_NEEDS_PYTHON:
            protocol.queue_for_python(self, TO_HANDLER)
            return
        if self.peer_closed:
            # The client sent its last byte: what is complete has been answered; a partial request
            # can never complete.
            close_after(self, CLOSE_AFTER_RESPONSE)
        self.flush()

    def receive_blocking(self, timeout):
        """For a body reader inside a handler (the thread running it is busy there anyway): send what
        output is pending (a 100 Continue, earlier pipelined responses), then wait up to `timeout`
        seconds (None: no limit) for body bytes and add them to the input. Returns bytes received,
        0 on timeout, -1 when the client closed or failed."""
        waiting = select.poll()
        waiting.register(self.fd, select.POLLOUT)
        timeout_ms = -1 if timeout is None else max(1, int(timeout * 1000))
        while self.out:
            try:
                self.send_some()
            except BlockingIOError:
                if not waiting.poll(timeout_ms):
                    return 0
            except OSError:
                return -1
        waiting.modify(self.fd, select.POLLIN)
        while True:
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                if not waiting.poll(timeout_ms):
                    return 0
                continue
            except OSError:
                self.peer_closed = True
                return -1
            if not data:
                self.peer_closed = True
                return -1
            self.parser.inbuf += data
            self.bytes_in += len(data)
            self.worker.bytes_received += len(data)
            return len(data)

    # -- writing ---------------------------------------------------------------------------------------

    def send_some(self):
        """One send (or sendmsg of several buffers) of the pending output; returns bytes sent.
        Raises BlockingIOError when the socket takes nothing, OSError when the client is gone."""
        out = self.out
        if len(out) == 1:
            sent = self.sock.send(out[0], _MSG_NOSIGNAL)
        else:
            buffers = list(out) if len(out) <= SENDMSG_BUFFERS else [out[i] for i in range(SENDMSG_BUFFERS)]
            sent = self.sock.sendmsg(buffers, (), _MSG_NOSIGNAL)
        self.out_size -= sent
        self.worker.bytes_sent += sent
        remaining = sent
        while remaining:
            first = out[0]
            size = len(first)
            if size <= remaining:
                out.popleft()
                remaining -= size
            else:
                out[0] = memoryview(first)[remaining:]
                remaining = 0
        return sent

    def send_available(self):
        """Send what of the output the socket takes now, without waiting. Returns True when the
        output is empty, False when the socket is full or the client is gone (peer_closed)."""
        try:
            while self.out:
                self.send_some()
        except BlockingIOError:
            return False
        except OSError:
            self.peer_closed = True
            return False
        return True

    def flush(self):
        """Send the pending output (then a file); when it is all out, answer requests that were
        pipelined behind a file, then let the state machine say what next (conn_flush)."""
        progressed = False
        while True:
            file_pending = self.sendfile_fd >= 0
            while self.out:
                try:
                    self.send_some()
                    progressed = True
                except BlockingIOError:
                    transition(self, OUTPUT_BLOCKED, progressed)    # the client must keep taking bytes
                    return
                except OSError:
                    self.peer_closed = True             # EPIPE, ECONNRESET: the client is gone
                    self.close()
                    return
            if self.sendfile_fd >= 0 and not self.send_file(progressed):
                return
            if self.phase == SENDING:
                transition(self, OUTPUT_DRAINED)
            if not ((file_pending or self.serving_paused) and self.parser.inbuf
                    and self.close_policy == CLOSE_NEVER and self.stream is None):
                break
            # Requests pipelined behind a file, or behind a full output, waited for it: answer them
            # now (in this loop, not by recursion: a long pipeline of files must not grow the stack).
            result = self.serve()
            if result == SERVE_NEEDS_PYTHON:
                protocol.queue_for_python(self, TO_HANDLER)
                return
            if result == SERVE_WEBSOCKET:
                self.websocket.begin()
                return
            if self.peer_closed:
                close_after(self, CLOSE_AFTER_RESPONSE)
        protocol.output_drained(self)

    def send_file(self, progressed):
        """Send the rest of a file body with os.sendfile. Returns True when the file is done (and
        closed), False when the connection waits for EPOLLOUT or was closed."""
        worker = self.worker
        while self.sendfile_remaining:
            try:
                sent = os.sendfile(self.fd, self.sendfile_fd, self.sendfile_offset,
                                  min(self.sendfile_remaining, SENDFILE_STEP))
            except BlockingIOError:
                transition(self, OUTPUT_BLOCKED, progressed)
                return False
            except OSError:
                sent = 0
            if sent == 0:
                # The file shrank under us or the client went away: the promised length cannot be
                # delivered, so the connection ends here.
                self.sendfile_fd = -1
                self.close()
                return False
            self.sendfile_offset += sent
            self.sendfile_remaining -= sent
            worker.sendfile_bytes += sent
            worker.bytes_sent += sent
            progressed = True
        self.sendfile_fd = -1
        self.release_stream()                           # close the file wrapper
        return True

    # -- closing ---------------------------------------------------------------------------------------

    def half_close(self):
        """Our last answer is out: send FIN, drop what is buffered, keep reading (to discard)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass                                        # the client is gone: the recv that follows says so
        self.parser.inbuf.clear()                       # unanswered input: never to be parsed

    def discard_input(self):
        """A lingering connection is readable: drop what came; close at the client's FIN or an error.
        True when the connection was closed."""
        for _ in range(LINGER_READS_PER_EVENT):
            try:
                received = self.sock.recv_into(_DISCARD)
            except BlockingIOError:
                return False
            except OSError:
                received = 0
            if not received:
                self.peer_closed = True                 # FIN (0) or an error: done lingering
                self.close()
                return True
            self.worker.bytes_received += received
        return False

    def close(self):
        """Take the socket out of epoll, close it, and drop everything the connection owns."""
        if self.phase == CLOSED:
            return
        worker = self.worker
        if self.stream_owner is not None:
            self.release_stream()
        transition(self, CLOSE)                         # off its timer list
        if self.interest:
            try:
                worker.epoll.unregister(self.fd)        # explicitly: a fork()ed child may hold a copy of the fd
            except OSError:
                pass
            self.interest = 0
        self.sock.close()
        worker.closed_count += 1
        self.out.clear()
        self.out_size = 0
        del worker.connections[self.fd]

# core.pxi: Core, the Python object that owns one server's C state and runs its threads.
#
# fastcore.server creates the listening socket, builds a Core around its fd, and starts
# threading.Thread objects whose targets are run_listener() and run_worker(i): they drop the GIL
# and stay in C until stopped. Stopping is two steps so that no connection is stranded:
# stop_listener() (then join that thread), then stop_workers(timeout) (then join them), then
# close(), which frees what the threads used. Core never closes the listening socket: the Python
# socket object that made it does.

cdef enum:
    CONTENT_TYPE_CACHE_SIZE = 64
    FIELD_CACHE_SIZE = 4096           # response header lines remembered (ETags, cookies vary: bounded)
    STREAM_HIGH_WATER = 65536         # bytes of a streamed body buffered before waiting for the socket

cdef object _END_OF_STREAM = object()


cdef long long _declared_length(bytes value) except -2:
    if not value.isdigit() or len(value) > 18:
        raise ValueError(f"invalid Content-Length {value!r}")
    return int(value)


cdef bytes _custom_status_line(int status, object reason):
    """A status line with the handler's own reason phrase (WSGI apps give one); not cached."""
    cdef bytes phrase = _as_latin1(reason)
    if not 100 <= status <= 999:
        raise ValueError(f"invalid HTTP status {status}")
    _check_field(b"Reason", phrase)
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


cdef bytes _as_body_bytes(object part):
    if isinstance(part, bytes):
        return <bytes>part
    if isinstance(part, str):
        return (<str>part).encode("utf-8")
    if isinstance(part, (bytearray, memoryview)):
        return bytes(part)
    raise TypeError(f"a response body part must be bytes or str, not {type(part).__name__}")


cdef void _close_iterable(object iterable) noexcept:
    """Call iterable.close() if it has one (PEP 3333 asks it always be called); log its errors."""
    try:
        close_method = getattr(iterable, "close", None)
        if close_method is not None:
            close_method()
    except BaseException:
        try:
            _error_log.exception("closing a response body failed")
        except BaseException:
            pass


cdef void release_stream(long long* debug_counters, Conn* conn) noexcept:
    """Drop the connection's references to its streamed body and close it (GIL held)."""
    cdef PyObject* iterator = <PyObject*>conn.stream
    cdef PyObject* owner = <PyObject*>conn.stream_owner
    conn.stream = NULL
    conn.stream_owner = NULL
    if owner != NULL:
        fc_debug_count(debug_counters, FC_LIVE_PYTHON_BODIES, -1)
        _close_iterable(<object>owner)
        Py_DECREF(<object>owner)
    if iterator != NULL:
        Py_DECREF(<object>iterator)


cdef void release_orphaned_streams(Worker* worker) noexcept:
    """Close the bodies of connections that closed mid-stream (client gone, timeout, stop)."""
    cdef int i
    cdef Conn parked
    for i in range(0, worker.orphaned_count, 2):
        parked.stream = worker.orphaned_streams[i]
        parked.stream_owner = worker.orphaned_streams[i + 1]
        release_stream(worker.server.debug_counters, &parked)
    worker.orphaned_count = 0


cdef class Core:
    cdef ServerState state
    cdef Worker* workers
    cdef object handler
    cdef WSGIAdapter wsgi             # Dispatch.wsgi: the adapter whose requests wsgi.pxi answers, else None
    cdef bytes wsgi_bypass_path       # Dispatch.wrapper_path: a path the handler's wrapper answers itself
    cdef list _owned_bytes            # keeps the bytes behind StaticRoute pointers alive
    cdef dict _status_lines           # status -> b"HTTP/1.1 200 OK\r\n"
    cdef dict _content_type_lines     # content type -> b"Content-Type: ...\r\n"
    cdef dict _field_lines            # (name, value) -> b"Name: value\r\n", or a Content-Length's int
    cdef bytes _server_field
    cdef bint _released
    cdef bint _threads_started

    def __cinit__(self, config, int listen_fd, Dispatch dispatch not None, list static_routes):
        """`config`: the fastcore.ServerConfig (validated there); `listen_fd`: the listening socket;
        `dispatch`: how requests reach Python (dispatch.pxi); `static_routes`: (path, status,
        content_type, body) tuples as Server.add_static keeps them."""
        # The one place where the options cross into C: each is read here, once, from the config.
        cdef int threads = config.threads
        cdef int queue_size = config.queue_size
        cdef int python_batch = config.python_batch
        cdef int max_connections = config.max_connections
        cdef Py_ssize_t max_request_line = config.max_request_line
        cdef Py_ssize_t max_head_size = config.max_head_size
        cdef Py_ssize_t max_header_count = config.max_header_count
        cdef long long max_body_size = config.max_body_size
        cdef long long body_buffer_size = config.body_buffer_size
        cdef double header_timeout = config.header_timeout
        cdef double body_timeout = config.body_timeout
        cdef double keepalive_timeout = config.keepalive_timeout
        cdef double write_timeout = config.write_timeout
        cdef str server_name = config.server_name
        cdef epoll_event event
        cdef Worker* worker
        cdef int i
        cdef int nodelay_on = 1
        memset(&self.state, 0, sizeof(ServerState))
        self.state.listen_fd = listen_fd
        # Inherited by accepted sockets on Linux (listener.pxi: set_nodelay); fails harmlessly on a
        # unix socket.
        setsockopt(listen_fd, IPPROTO_TCP, TCP_NODELAY, &nodelay_on, sizeof(nodelay_on))
        self.state.listener_epoll_fd = -1
        self.state.listener_wake_fd = -1
        self.handler = dispatch.handler
        self.wsgi = dispatch.wsgi
        if dispatch.wsgi is not None and dispatch.wrapper_path is not None:
            self.wsgi_bypass_path = dispatch.wrapper_path.encode("latin-1")
        self._owned_bytes = []
        self._status_lines = {}
        self._content_type_lines = {}
        self._field_lines = {}
        if threads < 1 or queue_size < 1 or python_batch < 1:
            raise ConfigError("threads, queue_size and python_batch must be at least 1")

        self.state.limits.max_request_line = max_request_line
        self.state.limits.max_head_size = max_head_size
        self.state.limits.max_header_count = max_header_count
        self.state.limits.max_body_size = max_body_size
        self.state.limits.body_buffer_size = body_buffer_size if body_buffer_size > 0 else max_body_size
        self.state.has_python_handler = self.handler is not None
        self.state.python_batch = python_batch
        self.state.max_connections = max_connections
        self.state.core = <void*>self
        self._server_field = b"Server: " + server_name.encode("latin-1") + b"\r\n"
        self.state.server_field = PyBytes_AS_STRING(self._server_field)
        self.state.server_field_length = PyBytes_GET_SIZE(self._server_field)
        self._set_static_routes(static_routes)
        if queue_init(&self.state.queue, queue_size) != 0:
            raise MemoryError()

        self.state.listener_epoll_fd = epoll_create1(EPOLL_CLOEXEC)
        self.state.listener_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.state.listener_epoll_fd < 0 or self.state.listener_wake_fd < 0:
            raise OSError(errno, "cannot create the listener's epoll set")
        event.events = EPOLLIN
        event.data.fd = listen_fd
        if epoll_ctl(self.state.listener_epoll_fd, EPOLL_CTL_ADD, listen_fd, &event) != 0:
            raise OSError(errno, "cannot watch the listening socket")
        event.data.fd = self.state.listener_wake_fd
        epoll_ctl(self.state.listener_epoll_fd, EPOLL_CTL_ADD, self.state.listener_wake_fd, &event)

        self.workers = <Worker*>calloc(threads, sizeof(Worker))
        if self.workers == NULL:
            raise MemoryError()
        self.state.workers = self.workers
        self.state.worker_count = threads
        for i in range(threads):
            worker = &self.workers[i]
            worker.index = i
            worker.server = &self.state
            worker.epoll_fd = epoll_create1(EPOLL_CLOEXEC)
            worker.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            worker.flush_after_python = <Conn**>calloc(python_batch, sizeof(Conn*))
            if worker.epoll_fd < 0 or worker.wake_fd < 0 or worker.flush_after_python == NULL:
                raise OSError(errno, "cannot create a worker's epoll set")
            worker.timers[<int>TIMER_HEADER].duration_ms = <long long>(header_timeout * 1000)
            worker.timers[<int>TIMER_BODY].duration_ms = <long long>(body_timeout * 1000)
            worker.timers[<int>TIMER_IDLE].duration_ms = <long long>(keepalive_timeout * 1000)
            worker.timers[<int>TIMER_WRITE].duration_ms = <long long>(write_timeout * 1000)
            worker.timers[<int>TIMER_LINGER].duration_ms = LINGER_TIMEOUT_MS
            worker.input_bin.block_size = READ_CHUNK
            worker.output_bin.block_size = BUFFER_MIN_ALLOCATION
            worker.input_bin.debug_counters = worker.output_bin.debug_counters = self.state.debug_counters
            event.events = EPOLLIN
            event.data.ptr = NULL                       # NULL marks the wake-up eventfd
            epoll_ctl(worker.epoll_fd, EPOLL_CTL_ADD, worker.wake_fd, &event)

    cdef bint _for_wrapper(self, const char* data, ParsedRequest* parsed) noexcept:
        """Is this request for the path the handler's wrapper answers itself (as request.path)?"""
        cdef Py_ssize_t length
        if self.wsgi_bypass_path is None:
            return False
        length = PyBytes_GET_SIZE(self.wsgi_bypass_path)
        if parsed.path_length == 0:
            return length == 1 and PyBytes_AS_STRING(self.wsgi_bypass_path)[0] == 47      # "/"
        return (<Py_ssize_t>parsed.path_length == length
                and memcmp(data + parsed.path_offset, PyBytes_AS_STRING(self.wsgi_bypass_path), length) == 0)

    cdef _set_static_routes(self, list static_routes):
        cdef StaticRoute* route
        cdef bytes path, head, body
        self.state.routes = <StaticRoute*>calloc(max(1, len(static_routes)), sizeof(StaticRoute))
        if self.state.routes == NULL:
            raise MemoryError()
        for path_text, status, content_type, body in static_routes:
            path = path_text.encode("latin-1")
            head = (self._status_line(status) + self._server_field
                    + b"Content-Type: " + content_type.encode("latin-1") + b"\r\n"
                    + b"Content-Length: " + str(len(body)).encode() + b"\r\n")
            self._owned_bytes += [path, head, body]
            route = &self.state.routes[self.state.route_count]
            route.status = status
            route.path = PyBytes_AS_STRING(path)
            route.path_length = PyBytes_GET_SIZE(path)
            route.head = PyBytes_AS_STRING(head)
            route.head_length = PyBytes_GET_SIZE(head)
            route.body = PyBytes_AS_STRING(body)
            route.body_length = PyBytes_GET_SIZE(body)
            self.state.route_count += 1

    cdef bytes _status_line(self, int status):
        line = self._status_lines.get(status)
        if line is None:
            if not 100 <= status <= 999:
                raise ValueError(f"invalid HTTP status {status}")
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
            line = f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")
            self._status_lines[status] = line
        return line

    cdef bytes _content_type_line(self, object content_type):
        line = self._content_type_lines.get(content_type)
        if line is None:
            value = _as_latin1(content_type)
            _check_field(b"Content-Type", value)
            line = b"Content-Type: " + value + b"\r\n"
            if len(self._content_type_lines) < CONTENT_TYPE_CACHE_SIZE:
                self._content_type_lines[content_type] = line
        return line

    # -- threads --------------------------------------------------------------------------------

    def run_listener(self):
        self._threads_started = True
        with nogil:
            listener_loop(&self.state)

    def run_worker(self, int index):
        if not 0 <= index < self.state.worker_count:
            raise IndexError(index)
        self._threads_started = True
        with nogil:
            worker_loop(&self.workers[index])

    def stop_listener(self):
        cdef uint64_t one = 1
        fc_atomic_store(&self.state.listener_stop, 1)
        write(self.state.listener_wake_fd, &one, sizeof(one))

    def stop_workers(self, double timeout):
        """Graceful stop: finish in-flight requests, close idle connections, force-close at the deadline."""
        cdef uint64_t one = 1
        cdef long long deadline = fc_now_ms() + <long long>(timeout * 1000)
        cdef int i
        for i in range(self.state.worker_count):
            fc_atomic_store64(&self.workers[i].stop_deadline_ms, deadline)
            fc_atomic_store(&self.workers[i].stop_requested, 1)
            write(self.workers[i].wake_fd, &one, sizeof(one))

    def release(self):
        """Free the C state. Only once every thread has returned from run_listener/run_worker."""
        cdef int i
        if self._released:
            return
        self._released = True
        queue_destroy(&self.state.queue)
        if self.state.listener_epoll_fd >= 0:
            close(self.state.listener_epoll_fd)
        if self.state.listener_wake_fd >= 0:
            close(self.state.listener_wake_fd)
        if self.workers != NULL:
            for i in range(self.state.worker_count):
                worker_close_all_connections(&self.workers[i])
                release_orphaned_streams(&self.workers[i])
                buffer_bin_empty(&self.workers[i].input_bin)
                buffer_bin_empty(&self.workers[i].output_bin)
                free(self.workers[i].orphaned_streams)
                if self.workers[i].epoll_fd > 0:
                    close(self.workers[i].epoll_fd)
                if self.workers[i].wake_fd > 0:
                    close(self.workers[i].wake_fd)
                free(self.workers[i].flush_after_python)
            free(self.workers)
            self.workers = NULL
        free(self.state.routes)
        self.state.routes = NULL

    def stats(self):
        """Counters kept in C without the GIL: server-wide atomics, plus per-worker counters (each
        written only by its worker) summed here."""
        cdef int i, status_class
        cdef WorkerCounters* counters
        per_worker = []
        if self.workers != NULL:
            for i in range(self.state.worker_count):
                counters = &self.workers[i].counters
                per_worker.append({
                    "requests": fc_atomic_load64(&counters.requests),
                    "open_connections": <long long>self.workers[i].connection_count,
                    "bytes_received": fc_atomic_load64(&counters.bytes_received),
                    "bytes_sent": fc_atomic_load64(&counters.bytes_sent),
                    "responses": {("%dxx" % status_class if status_class else "other"):
                                  fc_atomic_load64(&counters.responses[status_class])
                                  for status_class in range(6)},
                })
        responses = {key: sum(worker["responses"][key] for worker in per_worker)
                     for key in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")}
        return {
            "requests": sum(worker["requests"] for worker in per_worker),
            "responses": responses,
            "bytes_received": sum(worker["bytes_received"] for worker in per_worker),
            "bytes_sent": sum(worker["bytes_sent"] for worker in per_worker),
            "workers": per_worker,
            "accepted": fc_atomic_load64(&self.state.accepted),
            "rejected_queue_full": fc_atomic_load64(&self.state.rejected_queue_full),
            "rejected_connection_limit": fc_atomic_load64(&self.state.rejected_connection_limit),
            "sendfile_bytes": fc_atomic_load64(&self.state.sendfile_bytes),
            "open_connections": fc_atomic_load64(&self.state.open_connections),
        }

    def debug_counters(self):
        """What a debug build counted for this server (testing.pxi: debug_counts); None in a
        release build. Readable after release(), so a test can name the server that leaked."""
        if not fc_debug_build:
            return None
        return debug_counts(self.state.debug_counters)

    def __dealloc__(self):
        # A Core whose threads never ran (start() failed half-way) is freed here. One whose threads
        # ran is freed by release() after they are joined; if one never returned (a handler stuck
        # forever), leaking is the safe choice.
        if not self._threads_started:
            self.release()

    # -- the Python batch (GIL held) --------------------------------------------------------------

    cdef void run_python_batch(self, Worker* worker) noexcept:
        cdef int budget = self.state.python_batch
        cdef Conn* conn
        cdef ServeResult result = SERVE_DONE
        worker.flush_after_python_count = 0
        release_orphaned_streams(worker)
        while worker.python_first != NULL and budget > 0:
            conn = worker.python_first
            while True:
                if conn.stream != NULL:
                    self.pull_stream(worker, conn)
                else:
                    self.answer_with_handler(worker, conn)
                conn_transition(worker, conn, EVENT_ANSWERED)
                budget -= 1
                result = serve_buffered_requests(worker, conn)
                if result != SERVE_NEEDS_PYTHON:
                    break
                conn_transition(worker, conn, EVENT_TO_HANDLER)     # the next pipelined request
                if budget == 0:
                    break
            if result == SERVE_NEEDS_PYTHON:
                break                                   # budget spent; this one goes first next turn
            worker.python_first = conn.next_awaiting_python
            if worker.python_first == NULL:
                worker.python_last = NULL
            conn.next_awaiting_python = NULL
            worker.flush_after_python[worker.flush_after_python_count] = conn
            worker.flush_after_python_count += 1

    cdef void answer_with_handler(self, Worker* worker, Conn* conn) noexcept:
        cdef const char* data = conn.input.data + conn.input.start
        cdef ParsedRequest* parsed = &conn.request
        cdef size_t body_length = parsed.body_length
        cdef size_t output_before = buffer_length(&conn.output)
        cdef bint head_only = parsed.is_head
        cdef Request request = Request.__new__(Request)
        cdef BodyReader reader = None
        cdef bint for_wrapper = self._for_wrapper(data, parsed)
        request._head = PyBytes_FromStringAndSize(data, parsed.head_length)
        if conn.body_streamed:
            reader = BodyReader.__new__(BodyReader)
            request._reader = reader
        else:
            request._body = PyBytes_FromStringAndSize(data + parsed.head_length, body_length) if body_length else _EMPTY
        request.keep_alive = conn.keep_alive
        request._method_length = parsed.method_length
        request._target_offset = parsed.target_offset
        request._target_length = parsed.target_length
        request._path_offset = parsed.path_offset
        request._path_length = parsed.path_length
        request._version_minor = parsed.version_minor
        request._peer = conn.peer
        if reader is not None:
            reader.attach(worker, conn)                 # the head leaves the buffer here
            conn.output_sent_early = 0
        try:
            if self.wsgi is not None and not for_wrapper:
                result = wsgi_answer(self.wsgi, request)
            else:
                result = self.handler(request)
            if fc_atomic_load(&worker.stop_requested):
                conn_close_after(conn, CLOSE_AFTER_RESPONSE)    # stop() came while the handler ran
            if reader is not None:
                self.end_streamed_body(conn, reader)
            self.append_handler_response(worker, conn, result, head_only)
        except BaseException as error:
            if reader is not None:
                self.end_streamed_body(conn, reader)
                output_before -= min(output_before, conn.output_sent_early)
            conn.output.end = conn.output.start + output_before     # drop a half-written response
            if isinstance(error, RequestBodyError):
                conn_close_after(conn, CLOSE_AFTER_RESPONSE)
                append_error_response(worker, conn, error.status)
            else:
                try:
                    _error_log.exception("handler failed on %r", request)
                except BaseException:
                    pass
                append_error_response(worker, conn, 500)
        finish_request(conn, 0 if reader is not None else parsed.request_length)

    cdef void end_streamed_body(self, Conn* conn, BodyReader reader) noexcept:
        """The handler is done with a streamed body. Unread body bytes cannot be told from the next
        request without reading them all, so a connection whose body was not read to the end closes
        after the response."""
        if reader.conn == NULL:
            return
        reader.detach()
        if not reader.finished:
            conn_close_after(conn, CLOSE_LINGERING)

    cdef int append_handler_response(self, Worker* worker, Conn* conn, object result, bint head_only) except -1:
        """Serialize what the handler returned into the output: status line, fields, framing, body.

        Framing: a body of known length gets Content-Length; an iterable is streamed, chunked on
        HTTP/1.1 and close-delimited on 1.0, unless the handler declared a Content-Length, which
        is then honoured (the stream is capped at it, and a stream that falls short closes the
        connection). A declared Content-Length on HEAD is what a GET would carry."""
        cdef Buffer* out = &conn.output
        cdef Response response
        cdef int status = 200
        cdef object body, headers = None, content_type = None, reason = None
        cdef bint bodyless
        cdef long long declared_length = -1, body_length = 0
        if type(result) is Response:
            response = <Response>result
            status = response.status
            body = response.body
            headers = response.headers
            content_type = response.content_type
            reason = response.reason
        elif isinstance(result, (bytes, str)):
            body = result
        else:
            raise TypeError(f"a handler returns fastcore.Response, bytes or str, not {type(result).__name__}")
        stream = None
        file_span = None
        if isinstance(body, bytes):
            pass
        elif type(body) is FileWrapper and (file_span := (<FileWrapper>body).regular_file_span()) is not None:
            pass                                        # sent with sendfile(2) once the head is out
        elif isinstance(body, str):
            body = (<str>body).encode("utf-8")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif isinstance(body, (list, tuple)):
            body = b"".join([_as_body_bytes(part) for part in body])    # known length
        else:
            stream = iter(body)                         # unknown length: streamed

        if reason is None:
            _append_bytes(out, self._status_line(status))
        else:
            _append_bytes(out, _custom_status_line(status, reason))
        if buffer_append(out, self.state.server_field, self.state.server_field_length) != 0:
            raise MemoryError()
        if buffer_append(out, worker.date.line, worker.date.length) != 0:
            raise MemoryError()
        if content_type is not None:
            _append_bytes(out, self._content_type_line(content_type))
        if headers:
            declared_length = self._append_fields(out, conn, headers)

        bodyless = status < 200 or status == 204 or status == 304
        conn.stream_remaining = -1
        if bodyless:
            pass
        elif file_span is not None:
            body_length = file_span[2]
            if declared_length >= 0:
                if declared_length > body_length:
                    raise ValueError(f"Content-Length {declared_length} is more than the file's "
                                     f"{body_length} remaining bytes")
                body_length = declared_length
                file_span = (file_span[0], file_span[1], body_length)
        elif stream is not None:
            body_length = declared_length
            conn.stream_remaining = declared_length
        else:
            body_length = len(body)
            if declared_length >= 0 and not head_only:
                if declared_length > body_length:
                    raise ValueError(f"Content-Length {declared_length} is more than the body's {body_length} bytes")
                body = (<bytes>body)[:declared_length]   # never send more than was declared
                body_length = declared_length
            elif declared_length >= 0:
                body_length = declared_length           # HEAD: what the GET would carry
        if not bodyless:
            if body_length >= 0:
                if (buffer_append(out, b"Content-Length: ", 16) != 0 or buffer_append_decimal(out, body_length) != 0
                        or buffer_append(out, b"\r\n", 2) != 0):
                    raise MemoryError()
            elif conn.request.version_minor == 1:
                _append_bytes(out, b"Transfer-Encoding: chunked\r\n")
            else:
                conn_close_after(conn, CLOSE_AFTER_RESPONSE)    # HTTP/1.0: the close delimits the body
        if append_connection_field(out, conn) != 0 or buffer_append(out, b"\r\n", 2) != 0:
            raise MemoryError()

        if file_span is not None:
            Py_INCREF(body)
            fc_debug_count(worker.server.debug_counters, FC_LIVE_PYTHON_BODIES, 1)
            conn.stream_owner = <void*>body
            if bodyless or head_only or file_span[2] == 0:
                release_stream(worker.server.debug_counters, conn)
            else:
                conn.sendfile_fd = file_span[0]
                conn.sendfile_offset = file_span[1]
                conn.sendfile_remaining = file_span[2]
        elif stream is not None:
            Py_INCREF(stream)
            conn.stream = <void*>stream
            Py_INCREF(body)
            fc_debug_count(worker.server.debug_counters, FC_LIVE_PYTHON_BODIES, 1)
            conn.stream_owner = <void*>body
            conn.stream_chunked = body_length < 0 and conn.request.version_minor == 1
            if bodyless or head_only or conn.stream_remaining == 0:
                release_stream(worker.server.debug_counters, conn)                    # no body goes out; the iterable is closed
            else:
                self.pull_stream(worker, conn)
        elif bodyless or head_only:
            pass
        elif body_length >= ZERO_COPY_BODY_MIN:
            # Sent from the bytes object itself, after the head, without the GIL: bytes are
            # immutable and the reference held here keeps the memory where it is.
            Py_INCREF(body)
            fc_debug_count(worker.server.debug_counters, FC_LIVE_PYTHON_BODIES, 1)
            conn.stream_owner = <void*>body
            conn.body_data = PyBytes_AS_STRING(<bytes>body)
            conn.body_remaining = <size_t>body_length
        else:
            _append_bytes(out, <bytes>body)
        count_response(worker, status)                  # only once the response is sure to go out
        return 0

    cdef long long _append_fields(self, Buffer* out, Conn* conn, object headers) except -2:
        """Append the handler's header fields; returns its Content-Length (-1 when none).
        Content-Length and Transfer-Encoding are left for the framing, Connection: close is
        obeyed. A (name, value) tuple of str or bytes seen before is not validated and encoded
        again: _field_lines maps it to its line (or, for Content-Length, to its value)."""
        cdef long long declared_length = -1
        cdef bytes name, value, lowered, line
        cdef bint cacheable
        for item in (headers.items() if isinstance(headers, dict) else headers):
            cacheable = (type(item) is tuple and PyTuple_GET_SIZE(item) == 2
                         and (type(item[0]) is str or type(item[0]) is bytes)
                         and (type(item[1]) is str or type(item[1]) is bytes))
            if cacheable:
                cached = self._field_lines.get(item)
                if cached is not None:
                    if type(cached) is bytes:
                        _append_bytes(out, <bytes>cached)
                    else:
                        declared_length = cached
                    continue
                cacheable = len(self._field_lines) < FIELD_CACHE_SIZE
            field_name, field_value = item
            name = _as_latin1(field_name)
            value = _as_latin1(field_value)
            _check_field(name, value)
            lowered = name.lower()
            if lowered == b"content-length":
                declared_length = _declared_length(value)
                if cacheable:
                    self._field_lines[item] = declared_length
                continue                                # written with the framing, once
            if lowered == b"transfer-encoding":
                continue                                # framing is ours to decide
            if lowered == b"connection":
                if b"close" in value.lower():
                    conn_close_after(conn, CLOSE_AFTER_RESPONSE)
                continue
            line = name + b": " + value + b"\r\n"
            _append_bytes(out, line)
            if cacheable:
                self._field_lines[item] = line
        return declared_length

    cdef void pull_stream(self, Worker* worker, Conn* conn) noexcept:
        """Append the next parts of a streamed body to the output and send each as it comes (a
        server-sent-events generator must not wait for a buffer to fill), until the socket is
        full, STREAM_HIGH_WATER bytes wait, or the body ends. An exception mid-body cannot become
        a 500 any more: the connection closes without the last chunk, so the client sees the body
        is incomplete."""
        cdef Buffer* out = &conn.output
        cdef object iterator = <object>conn.stream
        cdef bytes part
        cdef bint progressed = False
        cdef SendResult sent
        try:
            while buffer_length(out) < STREAM_HIGH_WATER:
                item = next(iterator, _END_OF_STREAM)
                if item is _END_OF_STREAM:
                    if conn.stream_chunked:
                        _append_bytes(out, b"0\r\n\r\n")
                    elif conn.stream_remaining > 0:
                        _error_log.error("a streamed body ended %d bytes short of its Content-Length; "
                                         "closing the connection", conn.stream_remaining)
                        conn_close_after(conn, CLOSE_AFTER_RESPONSE)
                    release_stream(worker.server.debug_counters, conn)
                    return
                part = _as_body_bytes(item)
                if not part:
                    continue
                if conn.stream_chunked:
                    _append_bytes(out, b"%x\r\n" % len(part))
                    _append_bytes(out, part)
                    _append_bytes(out, b"\r\n")
                elif conn.stream_remaining >= 0:
                    if len(part) >= conn.stream_remaining:
                        _append_bytes(out, part[:conn.stream_remaining])     # never more than declared
                        conn.stream_remaining = 0
                        release_stream(worker.server.debug_counters, conn)
                        return
                    _append_bytes(out, part)
                    conn.stream_remaining -= len(part)
                else:
                    _append_bytes(out, part)
                with nogil:
                    sent = conn_send_available(worker, conn, &progressed)
                if sent != SEND_DONE:
                    return                              # the flush after the batch takes it from here
        except BaseException:
            try:
                _error_log.exception("streamed response body failed; closing the connection")
            except BaseException:
                pass
            conn_close_after(conn, CLOSE_AFTER_RESPONSE)
            release_stream(worker.server.debug_counters, conn)


# core.pxi: Core, the Python object that owns one server's C state and runs its threads.
#
# fastcore.server creates the listening socket, builds a Core around its fd (with the ServerConfig,
# the Dispatch and the static routes: the one place options cross into C), and starts
# threading.Thread objects whose targets are run_listener() and run_worker(i): they drop the GIL
# and stay in C until stopped. Stopping strands no connection: stop_listener() (then join that
# thread; the Server closes the listening socket), then stop_workers(timeout) (then join them),
# then release(), which frees what the threads used. Core never closes the listening socket: the
# Python socket object that made it does. The batch (batch.pxi) and the serializer
# (serializer.pxi) work on a Core's state but live in their own files.

cdef class Core:
    cdef ServerState state
    cdef Worker* workers
    cdef Worker* handler_contexts     # handler-thread mode: one per handler thread (bridge.pxi)
    cdef object handler
    cdef WSGIAdapter wsgi             # Dispatch.wsgi: the adapter whose requests wsgi.pxi answers, else None
    cdef bytes wsgi_bypass_path       # Dispatch.wrapper_path: a path the handler's wrapper answers itself
    cdef ResponseSerializer serializer
    cdef list _owned_bytes            # keeps the bytes behind StaticRoute pointers alive
    cdef bint _released
    cdef bint _threads_started
    cdef object asgi                  # Dispatch.asgi: the fastcore.asgi.ASGIApp served, else None
    cdef object proxies               # fastcore.proxy.TrustedProxies of forwarded_allow_ips, None: none
    cdef object asgi_loop             # its event loop, known from the first asgi_drain()
    cdef bint asgi_plain_tasks        # the loop has no task factory (asgi_new_task), as of this drain
    cdef Worker* asgi_context         # the loop thread's own Worker (asgi.pxi)
    cdef set asgi_tasks               # the cycles' tasks not finished yet
    cdef dict asgi_checked_fields     # response header tuples already checked (asgi.pxi)
    cdef Conn* asgi_given_back        # connections the loop is done with, for asgi_flush()
    cdef Conn* asgi_given_back_last
    cdef list ws_routes               # Dispatch.websockets: native WebSocket routes (websocket_native.pxi)

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
        cdef long long body_min_rate = config.body_min_rate
        cdef double body_min_rate_grace = config.body_min_rate_grace
        cdef int handler_threads = config.handler_threads
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
        self.asgi = dispatch.asgi
        self.proxies = _trusted_proxies(config.forwarded_allow_ips)
        if dispatch.wsgi is not None and dispatch.wrapper_path is not None:
            self.wsgi_bypass_path = dispatch.wrapper_path.encode("latin-1")
        self._owned_bytes = []
        self.serializer = ResponseSerializer(server_name)
        if threads < 1 or queue_size < 1 or python_batch < 1:
            raise ConfigError("threads, queue_size and python_batch must be at least 1")

        self.state.limits.max_request_line = max_request_line
        self.state.limits.max_head_size = max_head_size
        self.state.limits.max_header_count = max_header_count
        self.state.limits.max_body_size = max_body_size
        self.state.limits.body_buffer_size = body_buffer_size if body_buffer_size > 0 else max_body_size
        self.state.body_min_rate = body_min_rate
        self.state.body_min_rate_grace_ms = <long long>(body_min_rate_grace * 1000)
        self.state.has_python_handler = self.handler is not None or self.asgi is not None
        self.state.python_batch = python_batch
        self.state.max_connections = max_connections
        self.state.core = <void*>self
        self.state.server_field = PyBytes_AS_STRING(self.serializer.server_field)
        self.state.server_field_length = PyBytes_GET_SIZE(self.serializer.server_field)
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

        if bridge_init(&self.state.bridge) != 0:
            raise MemoryError()
        self.state.handler_threads = handler_threads
        self.state.python_off_workers = handler_threads > 0 or self.asgi is not None
        self.state.access_log = config.access_log
        self.state.ws_max_size = config.ws_max_size
        self.state.ws_max_queue = config.ws_max_queue
        self.state.ws_deflate = config.ws_per_message_deflate
        self._set_websocket_routes(list(dispatch.websockets))
        if self.asgi is not None:
            if handler_threads:
                raise ConfigError("an ASGI app runs on its event loop: handler_threads must be 0")
            asgi_import_asyncio()
            asgi_import_websocket_rules()
            self.state.websockets = True
            self.asgi_tasks = set()
            self.asgi_checked_fields = {}
            self.state.bridge.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            self.asgi_context = <Worker*>calloc(1, sizeof(Worker))
            if self.state.bridge.notify_fd < 0 or self.asgi_context == NULL:
                raise OSError(errno, "cannot create the ASGI bridge")
            self.asgi_context.epoll_fd = -1
            self.asgi_context.wake_fd = -1
            self._init_worker(self.asgi_context, 0, header_timeout, body_timeout, keepalive_timeout,
                              write_timeout)
        self.workers = <Worker*>calloc(threads, sizeof(Worker))
        if self.workers == NULL:
            raise MemoryError()
        self.state.workers = self.workers
        self.state.worker_count = threads
        for i in range(threads):
            worker = &self.workers[i]
            self._init_worker(worker, i, header_timeout, body_timeout, keepalive_timeout, write_timeout)
            worker.timers[<int>TIMER_WS_PING].duration_ms = <long long>(config.ws_ping_interval * 1000)
            worker.timers[<int>TIMER_WS_PONG].duration_ms = <long long>(config.ws_ping_timeout * 1000)
            worker.epoll_fd = epoll_create1(EPOLL_CLOEXEC)
            worker.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            worker.flush_after_python = <Conn**>calloc(python_batch, sizeof(Conn*))   # the inline batch's
            if worker.epoll_fd < 0 or worker.wake_fd < 0 or worker.flush_after_python == NULL:
                raise OSError(errno, "cannot create a worker's epoll set")
            pthread_mutex_init(&worker.inbox_lock, NULL)
            pthread_mutex_init(&worker.access_lock, NULL)
            pthread_cond_init(&worker.access_taken, NULL)
            event.events = EPOLLIN
            event.data.ptr = NULL                       # NULL marks the wake-up eventfd
            epoll_ctl(worker.epoll_fd, EPOLL_CTL_ADD, worker.wake_fd, &event)
        # A handler thread's context: a Worker without epoll set or eventfd, for the Date line,
        # counters, bins and parked bodies that the thread keeps to itself (bridge.pxi).
        self.handler_contexts = <Worker*>calloc(max(1, handler_threads), sizeof(Worker))
        if self.handler_contexts == NULL:
            raise MemoryError()
        for i in range(handler_threads):
            self.handler_contexts[i].epoll_fd = -1
            self.handler_contexts[i].wake_fd = -1
            self._init_worker(&self.handler_contexts[i], i, header_timeout, body_timeout,
                              keepalive_timeout, write_timeout)

    cdef void _init_worker(self, Worker* worker, int index, double header_timeout, double body_timeout,
                           double keepalive_timeout, double write_timeout):
        """What an I/O worker and a handler context share: timeouts (a context's body reads use
        the body timeout), buffer bins, the server."""
        worker.index = index
        worker.server = &self.state
        worker.timers[<int>TIMER_HEADER].duration_ms = <long long>(header_timeout * 1000)
        worker.timers[<int>TIMER_BODY].duration_ms = <long long>(body_timeout * 1000)
        worker.timers[<int>TIMER_IDLE].duration_ms = <long long>(keepalive_timeout * 1000)
        worker.timers[<int>TIMER_WRITE].duration_ms = <long long>(write_timeout * 1000)
        worker.timers[<int>TIMER_LINGER].duration_ms = LINGER_TIMEOUT_MS
        worker.input_bin.block_size = READ_CHUNK
        worker.output_bin.block_size = BUFFER_MIN_ALLOCATION
        worker.input_bin.debug_counters = worker.output_bin.debug_counters = self.state.debug_counters

    cdef _set_websocket_routes(self, list routes):
        """Native WebSocket routes: their paths in C for the worker (ws_find_route)."""
        cdef bytes path
        cdef int i
        self.ws_routes = routes
        if not routes:
            return
        asgi_import_websocket_rules()
        self.state.websockets = True
        self.state.ws_native = True
        self.state.ws_route_paths = <const char**>calloc(len(routes), sizeof(char*))
        self.state.ws_route_lengths = <size_t*>calloc(len(routes), sizeof(size_t))
        if self.state.ws_route_paths == NULL or self.state.ws_route_lengths == NULL:
            raise MemoryError()
        for i, route in enumerate(routes):
            path = route.path.encode("latin-1")
            self._owned_bytes.append(path)
            self.state.ws_route_paths[i] = PyBytes_AS_STRING(path)
            self.state.ws_route_lengths[i] = PyBytes_GET_SIZE(path)
        self.state.ws_route_count = len(routes)

    cdef _set_static_routes(self, list static_routes):
        cdef StaticRoute* route
        cdef bytes path, head, body
        self.state.routes = <StaticRoute*>calloc(max(1, len(static_routes)), sizeof(StaticRoute))
        if self.state.routes == NULL:
            raise MemoryError()
        for path_text, status, content_type, body in static_routes:
            path = path_text.encode("latin-1")
            head = (self.serializer.status_line(status) + self.serializer.server_field
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

    def run_handler(self, int index):
        """A handler thread's loop (handler_threads > 0): returns after stop_handlers()."""
        if not 0 <= index < self.state.handler_threads:
            raise IndexError(index)
        self._threads_started = True
        handler_thread_run(self, &self.handler_contexts[index])

    # -- ASGI (asgi.pxi) ---------------------------------------------------------------------

    @property
    def asgi_fd(self):
        """An ASGI core's eventfd, readable when requests wait: loop.add_reader(core.asgi_fd,
        core.asgi_drain) on the event loop that runs the app."""
        return self.state.bridge.notify_fd

    def asgi_drain(self):
        """On the event loop: take every request waiting on the bridge and start its cycle."""
        if self.asgi is None:
            raise ServerStateError("this core serves no ASGI app")
        if self.asgi_loop is None:
            self.asgi_loop = asgi_running_loop()
        asgi_drain(self)

    def _asgi_flush(self):
        """(Scheduled by the loop itself: hands finished connections back to their workers.)"""
        asgi_flush(self)

    def asgi_in_flight(self):
        """How many ASGI cycles have a task that has not finished."""
        if not self.asgi_tasks:
            return 0
        for task in [task for task in self.asgi_tasks if task.done()]:
            self.asgi_tasks.discard(task)           # cancelled before it ever ran (a stop)
        return len(self.asgi_tasks)

    def asgi_cancel(self):
        """A stop's deadline: cancel every cycle still running (on the loop thread). Those that
        have not answered yet answer 503; a streamed response is cut."""
        for task in list(self.asgi_tasks or ()):
            task.cancel()

    def take_access_lines(self):
        """The access lines of the responses the workers wrote themselves since the last call
        (access.pxi), as bytes: one line per response, each ending in a newline."""
        cdef int i
        cdef Buffer taken
        parts = []
        if self.workers == NULL:
            return b""
        for i in range(self.state.worker_count):
            with nogil:
                pthread_mutex_lock(&self.workers[i].access_lock)
                taken = self.workers[i].access_lines
                memset(&self.workers[i].access_lines, 0, sizeof(Buffer))
                pthread_cond_signal(&self.workers[i].access_taken)
                pthread_mutex_unlock(&self.workers[i].access_lock)
            if buffer_length(&taken):
                parts.append(PyBytes_FromStringAndSize(taken.data + taken.start, buffer_length(&taken)))
            buffer_release(&taken)
        return b"".join(parts)

    def stop_handlers(self):
        """Let the handler threads return once the bridge is empty: after the workers have returned."""
        bridge_stop(&self.state.bridge)

    def stop_listener(self):
        cdef uint64_t one = 1
        fc_atomic_store(&self.state.listener_stop, 1)
        write(self.state.listener_wake_fd, &one, sizeof(one))

    def stop_workers(self, double timeout):
        """Graceful stop: finish in-flight requests, close idle connections, force-close at the deadline."""
        cdef uint64_t one = 1
        cdef long long deadline = fc_now_ms() + <long long>(timeout * 1000)
        cdef int i
        for i in range(self.state.handler_threads):
            fc_atomic_store64(&self.handler_contexts[i].stop_deadline_ms, deadline)
            fc_atomic_store(&self.handler_contexts[i].stop_requested, 1)
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
                worker_close_all_connections(&self.workers[i], True)
                ws_compressor_free(&self.workers[i].ws_compressor)
                if self.workers[i].ws_python_first != NULL:     # native WebSockets' last news: on_close
                    native_ws_deliver_list(self, self.workers[i].ws_python_first)
                    self.workers[i].ws_python_first = self.workers[i].ws_python_last = NULL
                ws_list_release(self.workers[i].ws_outbox_first, False)    # sent to after the worker ended
                self.workers[i].ws_outbox_first = self.workers[i].ws_outbox_last = NULL
                release_parked_bodies(&self.workers[i])
                pthread_mutex_destroy(&self.workers[i].inbox_lock)
                pthread_mutex_destroy(&self.workers[i].access_lock)
                pthread_cond_destroy(&self.workers[i].access_taken)
                buffer_release(&self.workers[i].access_lines)
                buffer_bin_empty(&self.workers[i].input_bin)
                buffer_bin_empty(&self.workers[i].output_bin)
                free(self.workers[i].parked_bodies)
                if self.workers[i].epoll_fd > 0:
                    close(self.workers[i].epoll_fd)
                if self.workers[i].wake_fd > 0:
                    close(self.workers[i].wake_fd)
                free(self.workers[i].flush_after_python)
            free(self.workers)
            self.workers = NULL
        if self.handler_contexts != NULL:
            for i in range(self.state.handler_threads):
                release_parked_bodies(&self.handler_contexts[i])
                buffer_bin_empty(&self.handler_contexts[i].input_bin)
                buffer_bin_empty(&self.handler_contexts[i].output_bin)
                free(self.handler_contexts[i].parked_bodies)
            free(self.handler_contexts)
            self.handler_contexts = NULL
        if self.asgi_context != NULL:
            release_parked_bodies(self.asgi_context)
            buffer_bin_empty(&self.asgi_context.input_bin)
            buffer_bin_empty(&self.asgi_context.output_bin)
            free(self.asgi_context.parked_bodies)
            free(self.asgi_context)
            self.asgi_context = NULL
        if self.state.ws_native:                    # news no handler thread took: on_close
            native_ws_deliver_list(self, self.state.bridge.ws_ready_first)
        else:
            ws_list_release(self.state.bridge.ws_ready_first, True)     # news the loop never took
        self.state.bridge.ws_ready_first = self.state.bridge.ws_ready_last = NULL
        for i in range(self.state.bridge.parked_count):
            held_body_release(self.state.debug_counters, &self.state.bridge.parked[i])
        bridge_destroy(&self.state.bridge)
        free(self.state.routes)
        self.state.routes = NULL
        free(self.state.ws_route_paths)
        free(self.state.ws_route_lengths)
        self.state.ws_route_paths = NULL
        self.state.ws_route_lengths = NULL

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
                    "open_connections": <long long>fc_relaxed_load_size(&self.workers[i].connection_count),
                    "bytes_received": fc_atomic_load64(&counters.bytes_received),
                    "bytes_sent": fc_atomic_load64(&counters.bytes_sent),
                    "responses": {("%dxx" % status_class if status_class else "other"):
                                  fc_atomic_load64(&counters.responses[status_class])
                                  for status_class in range(6)},
                })
        # Handler threads count the responses they write and the bytes they move (request.stream,
        # streamed bodies) in their own contexts: added to the totals, not listed per worker.
        handlers = []
        if self.handler_contexts != NULL:
            for i in range(self.state.handler_threads):
                counters = &self.handler_contexts[i].counters
                handlers.append({
                    "bytes_received": fc_atomic_load64(&counters.bytes_received),
                    "bytes_sent": fc_atomic_load64(&counters.bytes_sent),
                    "responses": [fc_atomic_load64(&counters.responses[status_class]) for status_class in range(6)],
                })
        if self.asgi_context != NULL:                   # the event loop counts as one of them
            counters = &self.asgi_context.counters
            handlers.append({
                "bytes_received": fc_atomic_load64(&counters.bytes_received),
                "bytes_sent": fc_atomic_load64(&counters.bytes_sent),
                "responses": [fc_atomic_load64(&counters.responses[status_class]) for status_class in range(6)],
            })
        responses = {key: sum(worker["responses"][key] for worker in per_worker)
                     for key in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")}
        for handler in handlers:
            for status_class in range(6):
                responses["%dxx" % status_class if status_class else "other"] += handler["responses"][status_class]
        return {
            "requests": sum(worker["requests"] for worker in per_worker),
            "responses": responses,
            "bytes_received": sum(worker["bytes_received"] for worker in per_worker + handlers),
            "bytes_sent": sum(worker["bytes_sent"] for worker in per_worker + handlers),
            "workers": per_worker,
            "handler_threads": self.state.handler_threads,
            "worker_gil_batches": sum(fc_atomic_load64(&self.workers[i].gil_batches)
                                      for i in range(self.state.worker_count)) if self.workers != NULL else 0,
            "accepted": fc_atomic_load64(&self.state.accepted),
            "rejected_queue_full": fc_atomic_load64(&self.state.rejected_queue_full),
            "rejected_connection_limit": fc_atomic_load64(&self.state.rejected_connection_limit),
            "sendfile_bytes": fc_atomic_load64(&self.state.sendfile_bytes),
            "requests_cut_at_stop": fc_atomic_load64(&self.state.requests_cut_at_stop),
            "handlers_past_deadline": fc_atomic_load64(&self.state.handlers_past_deadline),
            "header_timeouts": fc_atomic_load64(&self.state.header_timeouts),
            "body_timeouts": fc_atomic_load64(&self.state.body_timeouts),
            "body_rate_timeouts": fc_atomic_load64(&self.state.body_rate_timeouts),
            "queue_expired": fc_atomic_load64(&self.state.queue_expired),
            "open_connections": fc_atomic_load64(&self.state.open_connections),
            "accept_pauses": fc_atomic_load64(&self.state.accept_pauses),
            "access_lines_dropped": fc_atomic_load64(&self.state.access_lines_dropped),
            "accept_exhaustions": fc_atomic_load64(&self.state.accept_exhaustions),
            "accept_exhaustion_errno": fc_atomic_load(&self.state.accept_exhaustion_errno),
            "websockets_open": sum(fc_atomic_load64(&self.workers[i].ws_open)
                                   for i in range(self.state.worker_count)) if self.workers != NULL else 0,
            "websocket_messages_received": fc_atomic_load64(&self.state.ws_messages_received),
            "websocket_messages_sent": fc_atomic_load64(&self.state.ws_messages_sent),
            "websocket_pings_sent": fc_atomic_load64(&self.state.ws_pings_sent),
            "websocket_pongs_sent": fc_atomic_load64(&self.state.ws_pongs_sent),
            "websocket_closed_by_server": fc_atomic_load64(&self.state.ws_closed_by_server),
        }

    @property
    def released(self):
        """release() has run: the C state is freed."""
        return self._released

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

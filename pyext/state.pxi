# state.pxi: the C structs every thread works on, in one place so their relations read at a glance.
#
#   Core (Python object, core.pxi) owns one ServerState and an array of Worker.
#   ServerState: what all threads share: the connection queue, limits, static routes, the listener.
#   Worker: one worker thread's private world: its epoll set, wake-up eventfd, connections, batch.
#   Conn: one client connection; lives in exactly one worker and is touched only by that thread.
# Nothing here is global: two servers in one process have two of everything. (Module-level state
# elsewhere: the debug build's process-wide totals, python.pxi's last-peer-address text cache and
# the WSGI caches, all read-mostly or GIL-guarded.)

cdef enum:
    EPOLL_BATCH = 256                 # events taken per epoll_wait

cdef enum NodelayMode:
    NODELAY_UNKNOWN = 0               # no connection accepted yet: look at the first one
    NODELAY_INHERITED = 1             # set on the listening socket and inherited (Linux): nothing per accept
    NODELAY_PER_ACCEPT = 2            # not inherited: one setsockopt per accepted socket
    NODELAY_NOT_TCP = 3               # a unix socket: no such option

# A connection's phase, the events that move it, and its close policy: the vocabulary of the state
# machine. Their meanings, the transition table, and the one function that writes them: protocol.pxi.
cdef enum ConnPhase:
    PHASE_NEW = 0                     # allocated, not yet in the worker's epoll set
    PHASE_IDLE = 1
    PHASE_HEAD = 2
    PHASE_BODY = 3
    PHASE_HANDLER = 4
    PHASE_STREAMING = 5
    PHASE_FLUSHING = 6
    PHASE_SENDING = 7
    PHASE_LINGERING = 8
    PHASE_CLOSED = 9
    PHASE_WEBSOCKET = 10
    PHASE_WS_PAUSED = 11
    PHASE_COUNT = 12
    PHASE_ILLEGAL = 255               # in the table: this event cannot happen in this phase

cdef enum ConnEvent:
    EVENT_ACCEPTED = 0
    EVENT_WAIT_REQUEST = 1
    EVENT_HEAD_BYTES = 2
    EVENT_BODY_BYTES = 3
    EVENT_TO_HANDLER = 4
    EVENT_ANSWERED = 5
    EVENT_STREAM_MORE = 6
    EVENT_OUTPUT_BLOCKED = 7
    EVENT_OUTPUT_DRAINED = 8
    EVENT_LINGER = 9
    EVENT_CLOSE = 10
    EVENT_WEBSOCKET = 11
    EVENT_WS_QUEUE_FULL = 12
    EVENT_COUNT = 13

cdef enum ClosePolicy:                # only ever escalates within a connection's life
    CLOSE_NEVER = 0                   # keep-alive: read the next request after this response
    CLOSE_AFTER_RESPONSE = 1          # no further request is served: close once the output is out
    CLOSE_LINGERING = 2               # the same, but the client may still be sending: half-close, drain, close

cdef enum HeldKind:                   # a Python object C keeps for a response body (serializer.pxi)
    HELD_NONE = 0
    HELD_BYTES = 1                    # bytes sent from their own memory (body_data)
    HELD_FILE = 2                     # a FileWrapper sent with sendfile(2) (sendfile_fd)
    HELD_STREAM = 3                   # an iterable pulled part by part in the batch

ctypedef struct HeldBody:             # one reference on each non-NULL pointer; see serializer.pxi
    HeldKind kind
    void* owner                       # PyObject*: the body object (its close() is called at release)
    void* iterator                    # PyObject*: HELD_STREAM's iter(owner), else NULL

ctypedef struct DateCache:
    time_t second                     # the second `line` was formatted for
    char line[48]                     # "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    size_t length

ctypedef struct StaticRoute:
    int status
    const char* path
    size_t path_length
    const char* head                  # status line + fixed fields, without Date and the blank line
    size_t head_length
    const char* body
    size_t body_length

ctypedef union PeerAddress:          # what accept4 told us about the client (no extra syscall)
    sockaddr any
    sockaddr_in v4
    sockaddr_in6 v6

ctypedef struct AcceptedConn:
    int fd
    PeerAddress peer
    long long accepted_ms             # monotonic ms at accept: its first head is due header_timeout after it

ctypedef struct ConnQueue:
    pthread_mutex_t lock              # the only lock on the hot path
    AcceptedConn* fds                 # ring of accepted sockets, capacity slots
    size_t capacity
    size_t head
    size_t count

cdef enum TimerKind:
    TIMER_NONE = 0
    TIMER_HEADER = 1                  # a request head is due: armed once, never extended by trickling bytes
    TIMER_BODY = 2                    # the next bytes of a body are due (re-armed on each read)
    TIMER_IDLE = 3                    # keep-alive: the next request is due
    TIMER_WRITE = 4                   # the client must take more of the response (re-armed on progress)
    TIMER_LINGER = 5                  # lingering close (CLOSE_LINGERING): how long to discard what the client still sends;
                                      #   a WebSocket's close handshake: how long to wait for the client's close frame
    TIMER_WS_PING = 6                 # a WebSocket: the server's next ping is due (ws_ping_interval)
    TIMER_WS_PONG = 7                 # a WebSocket: the pong of our ping is due (ws_ping_timeout)
    TIMER_KINDS = 8

cdef struct Conn
cdef struct WsChannel                 # websocket.pxi

ctypedef struct TimerList:
    Conn* first                       # earliest deadline: every entry has the same duration, so
    Conn* last                        # appending at the tail keeps the list sorted (O(1) re-arm)
    long long duration_ms

cdef struct Worker
cdef struct ServerState

ctypedef struct WorkerCounters:     # written by the worker only (fc_counter_add), summed by stats()
    long long requests                # heads parsed
    long long responses[6]            # by status class: [1] 1xx ... [5] 5xx, [0] anything else
    long long bytes_received
    long long bytes_sent

cdef struct Conn:
    int fd
    PeerAddress peer
    const char* body_data             # a large body sent from where it lies (no copy), after `output`
    size_t body_remaining             #   (a Python bytes in `held`, or a static route's)
    int sendfile_fd                   # a file being sent with sendfile(2), or -1
    long sendfile_offset
    size_t sendfile_remaining
    ConnPhase phase                   # written only by conn_transition (protocol.pxi)
    ClosePolicy close_policy          # written only by conn_close_after (protocol.pxi)
    uint32_t interest                 # the epoll events registered for fd (0: not registered)
    Buffer input
    Buffer output
    HeadScan scan
    ParsedRequest request             # valid while head_complete
    ChunkedBody chunked_body          # decoder state while a chunked body arrives
    bint head_complete
    bint keep_alive                   # the current response keeps the connection (no Connection: close)
    bint peer_closed                  # recv returned 0: no more input will come
    bint body_streamed                # the handler reads this request's body as it arrives
    int empty_lines_before_request    # CRLFs skipped before the current request line
    bint serving_paused               # complete requests wait: the output was over its high-water mark
    bint with_handler_thread          # handed to the bridge: its worker reads nothing else of it (bridge.pxi)
    bint continue_deferred            # 100 Continue is owed when (if) the handler reads the body
    size_t output_sent_early          # output bytes a body reader flushed while the handler ran
    Conn* next_awaiting_python
    Conn* previous                    # the worker's list of all its connections
    Conn* next
    TimerKind timer_kind
    long long deadline_ms
    Conn* timer_previous
    Conn* timer_next
    HeldBody held                     # the Python body being sent, if any (serializer.pxi owns it)
    Worker* home                      # the I/O worker it lives in (handler threads hand it back there)
    bint stream_chunked               # chunked framing (HTTP/1.1) or close-delimited (HTTP/1.0)
    int64_t stream_remaining          # bytes still owed under a handler-declared Content-Length, or -1
    long long request_started_us      # access log: when the current request's first byte was seen
    long long bytes_in                # bytes received on this connection (the body rate's measure)
    long long body_bytes_base         # bytes_in less the current body's bytes: bytes_in - this = its bytes so far
    long long body_started_ms         # when the current body's rate clock started (timers.pxi)
    bint ws_upgrade                   # the current request is a valid WebSocket handshake (websocket.pxi)
    WsChannel* ws                     # upgraded: its WebSocket state, shared with Python (websocket.pxi)

ctypedef struct Bridge:               # handler-thread mode: connections handed to Python (bridge.pxi)
    pthread_mutex_t lock
    pthread_cond_t ready              # signalled when work arrives, broadcast at stop
    Conn* first                       # FIFO of connections whose request or stream pull waits for Python
    Conn* last
    HeldBody* parked                  # held bodies the I/O workers are done with: released by a
    int parked_count                  #   handler thread, under the GIL
    int parked_capacity
    int stop                          # handler threads return once set and the FIFO is empty
    int notify_fd                     # ASGI: an eventfd the event loop watches, written when the
                                      #   FIFO or the parked bodies go from empty to not (else -1)
    WsChannel* ws_ready_first         # WebSockets with news for Python (messages, their end, output
    WsChannel* ws_ready_last          #   drained): websocket.pxi

cdef struct ServerState:
    ConnQueue queue
    Bridge bridge
    int handler_threads               # 0: inline (each I/O worker runs its own Python batch)
    bint access_log                   # log the responses the core writes itself (access.pxi)
    bint python_off_workers           # handler threads or an ASGI event loop take requests through
                                      #   the bridge; the I/O workers never take the GIL
    Limits limits
    bint websockets                   # WebSocket handshakes are checked (ASGI app, or native routes)
    bint ws_native                    # native routes (Server.add_websocket): accepted by the worker
    const char** ws_route_paths       #   itself, their callbacks run in handler batches
    size_t* ws_route_lengths          #   (websocket.pxi, websocket_native.pxi)
    int ws_route_count
    size_t ws_max_size                # ws_* options (websocket.pxi)
    int ws_max_queue
    bint ws_deflate
    long long ws_messages_received    # atomic counters, summed for stats
    long long ws_messages_sent
    long long ws_pings_sent
    long long ws_pongs_sent
    long long ws_closed_by_server     # closes the server started (protocol errors, ping timeouts, stops)
    StaticRoute* routes
    size_t route_count
    bint has_python_handler
    int python_batch                  # handler calls per GIL acquisition, at most
    void* core                        # the Core object (borrowed; it outlives every thread)
    const char* server_field          # "Server: fastcore\r\n"
    size_t server_field_length
    int listen_fd
    int listener_epoll_fd
    int listener_wake_fd
    int listener_stop                 # atomic flag
    Worker* workers
    int worker_count
    int next_worker                   # round-robin start; listener thread only
    int nodelay                       # NodelayMode: how accepted sockets get TCP_NODELAY; listener thread only
    int max_connections
    DateCache listener_date           # for the listener's canned 503s
    long long open_connections        # atomic: accepted and not yet closed, across all workers
    long long accepted                # atomic counters, summed for stats
    long long rejected_queue_full
    long long rejected_connection_limit
    long long sendfile_bytes          # body bytes sent with sendfile(2)
    long long requests_cut_at_stop    # refused (503) or closed mid-way by a stop's deadline
    long long handlers_past_deadline  # handler calls that returned after a stop's deadline
    long long body_min_rate           # bytes/s a body must keep up after its grace (0: not checked; timers.pxi)
    long long body_min_rate_grace_ms
    long long header_timeouts         # atomic: 408s for a head not complete within header_timeout
    long long body_timeouts           # atomic: 408s for a body with no byte within body_timeout
    long long body_rate_timeouts      # atomic: 408s for a body slower than body_min_rate
    long long queue_expired           # atomic: connections that waited in the queue past header_timeout (closed unread)
    long long access_lines_dropped    # atomic: access lines lost because the logger fell behind (access.pxi)
    long long accept_pauses           # atomic: times accepting stopped for ACCEPT_PAUSE_MS (out of fds or memory)
    long long accept_exhaustions      # atomic: episodes of those pauses (listener.pxi); Python logs each
    int accept_exhaustion_errno       # atomic: the errno of the latest pause (EMFILE, ENFILE, ENOBUFS, ENOMEM)
    bint accept_exhausted             # listener thread only: in an episode (no accept has succeeded since)
    long long debug_counters[FC_DEBUG_COUNTERS]     # debug builds: this server's live counts (system.pxi)

cdef struct Worker:
    int index
    int epoll_fd
    int wake_fd                       # eventfd: written when the listener queues for us while we sleep (stop too)
    int idle                          # atomic: 1 while blocked in epoll_wait with no work in hand
    long long owed                    # atomic: connections queued on our account, not taken yet (queue.pxi)
    int stop_requested                # atomic: graceful stop asked for
    long long stop_deadline_ms        # atomic: force-close everything after this (monotonic ms)
    bint stopping                     # this thread's own copy of stop_requested, once seen
    ServerState* server
    DateCache date
    Conn* connections
    size_t connection_count
    Conn* python_first                # FIFO of connections waiting for a Python handler call
    Conn* python_last
    Conn** flush_after_python         # connections answered in the last batch, flushed after the GIL
    long long now_ms                  # monotonic clock, read once per loop turn
    WorkerCounters counters
    HeldBody* parked_bodies           # held bodies done with (sent, or their connection closed),
    int parked_count                  #   released at the next GIL batch (serializer.pxi)
    int parked_capacity
    TimerList timers[TIMER_KINDS]
    BufferBin input_bin               # READ_CHUNK blocks for connections' input
    BufferBin output_bin              # BUFFER_MIN_ALLOCATION blocks for their output
    int flush_after_python_count
    pthread_mutex_t inbox_lock        # handler-thread mode: connections handed back after Python
    Conn* inbox_first                 #   (bridge.pxi), drained when wake_fd fires
    Conn* inbox_last
    WsChannel* ws_outbox_first        # WebSockets Python sent to (or wants read again): drained with
    WsChannel* ws_outbox_last         #   the inbox, under inbox_lock (websocket.pxi)
    long long ws_open                 # atomic: upgraded connections open in this worker
    WsCompressor ws_compressor        # permessage-deflate: the stream every message this worker sends is compressed with
    WsChannel* ws_python_first        # inline mode, native WebSockets: channels with news for this
    WsChannel* ws_python_last         #   worker's own handler batch (worker thread only)
    long long gil_batches             # atomic: times this thread took the GIL for a batch
    pthread_mutex_t access_lock       # access log (access.pxi): lines of the core's own responses,
    Buffer access_lines               #   taken by a Python thread (Core.take_access_lines), which
    pthread_cond_t access_taken       #   signals this when it took them
    time_t access_second              # the second access_time was formatted for
    char access_time[40]              # "01/Dec/2026:15:27:44 +0000"
    epoll_event events[EPOLL_BATCH]

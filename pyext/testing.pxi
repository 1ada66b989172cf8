# testing.pxi: test-only entry points: the nogil parser (unit, differential and fuzz tests) and the
# debug build's leak counters.

def parse_request(bytes data, *, Py_ssize_t max_request_line=8190, Py_ssize_t max_head_size=32768,
                  Py_ssize_t max_header_count=100, long long max_body_size=1 << 40):
    """Parse one request from `data`, as if it had arrived in one read, with the same functions
    the workers use (head_scan, parse_head, chunked_decode).

    Returns ("need-more", None), ("error", status) or ("ok", fields): fields is a dict with
    method, target, path, version, headers (list of (name, value) bytes pairs), content_length
    (None if absent), chunked, body (decoded), head_length, request_length, connection_close,
    connection_keep_alive, expect_continue."""
    cdef Limits limits
    cdef HeadScan scan
    cdef ParsedRequest request
    cdef ChunkedBody chunked
    cdef Py_ssize_t result
    cdef bytearray work = bytearray(data)              # chunked bodies are decoded in place
    cdef char* raw = work
    cdef size_t available = len(data)
    limits.max_request_line = max_request_line
    limits.max_head_size = max_head_size
    limits.max_header_count = max_header_count
    limits.max_body_size = max_body_size
    memset(&scan, 0, sizeof(scan))
    result = head_scan(raw, available, &scan, &limits)
    if result == 0:
        return ("need-more", None)
    if result < 0:
        return ("error", -result)
    result = parse_head(raw, <size_t>result, &request, &limits)
    if result < 0:
        return ("error", -result)
    if request.expect_unknown:
        return ("error", 417)
    if request.content_length > max_body_size:
        return ("error", 413)
    if request.chunked:
        memset(&chunked, 0, sizeof(chunked))
        chunked.body_start = chunked.read_offset = chunked.decoded_end = request.head_length
        result = chunked_decode(raw, available, &chunked, &limits)
        if result == 0:
            return ("need-more", None)
        if result < 0:
            return ("error", -result)
        request.request_length = <size_t>result
        request.body_length = chunked.decoded_end - request.head_length
    else:
        request.body_length = request.content_length if request.content_length > 0 else 0
        request.request_length = request.head_length + request.body_length
        if available < request.request_length:
            return ("need-more", None)
    head = bytes(work[:request.head_length])
    headers = []
    for line in head.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        headers.append((name, value.strip(b" \t")))
    return ("ok", {
        "method": head[:request.method_length].decode("ascii"),
        "target": head[request.target_offset:request.target_offset + request.target_length].decode("latin-1"),
        "path": head[request.path_offset:request.path_offset + request.path_length].decode("latin-1"),
        "version": "1.%d" % request.version_minor,
        "headers": headers,
        "content_length": None if request.content_length < 0 else request.content_length,
        "chunked": bool(request.chunked),
        "body": bytes(work[request.head_length:request.head_length + request.body_length]),
        "head_length": request.head_length,
        "request_length": request.request_length,
        "connection_close": bool(request.connection_close),
        "connection_keep_alive": bool(request.connection_keep_alive),
        "expect_continue": bool(request.expect_continue),
    })


cdef dict debug_counts(const long long* counters):
    return {
        "connections": fc_debug_counter(counters, FC_LIVE_CONNECTIONS),
        "buffers": fc_debug_counter(counters, FC_LIVE_BUFFERS),
        "python_bodies": fc_debug_counter(counters, FC_LIVE_PYTHON_BODIES),
        "open_fds": fc_debug_counter(counters, FC_OPEN_FDS),
        "epoll_registrations": fc_debug_counter(counters, FC_EPOLL_REGISTRATIONS),
        "illegal_transitions": fc_debug_counter(counters, FC_ILLEGAL_TRANSITIONS),
        "asgi_cycles": fc_debug_counter(counters, FC_LIVE_ASGI_CYCLES),
        "ws_channels": fc_debug_counter(counters, FC_LIVE_WS_CHANNELS),
    }


def debug_counters():
    """What a debug build (FASTCORE_DEBUG=1) counted for every server of this process together:
    live connections, buffers and response bodies held for streaming, descriptors and epoll
    registrations the core holds, and state machine events that were illegal in their phase
    (Core.debug_counters() gives one server's). None in a release build, which does not count."""
    if not fc_debug_build:
        return None
    return debug_counts(NULL)


# -- the connection state machine, without sockets (tests/test_state_machine.py) -----------------

def protocol_table():
    """The compiled transition table, read back from its C array: {(phase, event): next phase or
    None when the event is illegal in that phase}, with phase and event names as in protocol.pxi."""
    cdef int phase, event
    table = {}
    for phase in range(<int>PHASE_COUNT):
        for event in range(<int>EVENT_COUNT):
            target = protocol_next_phase(<ConnPhase>phase, <ConnEvent>event)
            table[PHASE_NAMES[phase], EVENT_NAMES[event]] = None if target == PHASE_ILLEGAL else PHASE_NAMES[target]
    return table


_TIMER_NAMES = ("NONE", "HEADER", "BODY", "IDLE", "WRITE", "LINGER")


@cython.auto_pickle(False)
cdef class ProtocolHarness:
    """One worker and one connection for driving the state machine by hand: the connection's fd is
    an eventfd, not a socket, so epoll accepts it and nothing is ever sent or received. Events go
    through conn_transition(), the same function the workers call, so the phase, the epoll
    interest and the timer seen here are the ones a real connection would get."""
    cdef ServerState state
    cdef Worker worker
    cdef Conn conn

    def __cinit__(self, bint python_off_workers=False):
        """`python_off_workers`: as with handler threads or an ASGI app (Python beside the I/O)."""
        cdef int kind
        memset(&self.state, 0, sizeof(ServerState))
        memset(&self.worker, 0, sizeof(Worker))
        memset(&self.conn, 0, sizeof(Conn))
        self.state.python_off_workers = python_off_workers
        self.worker.server = &self.state
        self.worker.now_ms = 1000
        for kind in range(1, <int>TIMER_KINDS):
            self.worker.timers[kind].duration_ms = kind * 1000       # distinct, to tell them apart
        self.worker.epoll_fd = epoll_create1(EPOLL_CLOEXEC)
        self.conn.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.conn.sendfile_fd = -1
        if self.worker.epoll_fd < 0 or self.conn.fd < 0:
            raise OSError(errno, "cannot create the harness's epoll set or eventfd")

    def __dealloc__(self):
        timer_unlink(&self.worker, &self.conn)
        if self.conn.interest:                          # as conn_close would: the count goes with it
            fc_debug_count(self.state.debug_counters, FC_EPOLL_REGISTRATIONS, -1)
        if self.conn.fd >= 0:
            close(self.conn.fd)
        if self.worker.epoll_fd >= 0:
            close(self.worker.epoll_fd)

    def fire(self, str event, bint progressed=False):
        """Report `event` (a name from EVENT_NAMES); True when it was legal in the current phase. An
        illegal event changes nothing; the debug count it makes is taken back here, since the test
        fired it on purpose."""
        cdef int index = EVENT_NAMES.index(event)
        cdef int result = conn_transition(&self.worker, &self.conn, <ConnEvent>index, progressed)
        if result == -1:
            fc_debug_count(self.state.debug_counters, FC_ILLEGAL_TRANSITIONS, -1)
        elif result != 0:
            raise OSError(errno, "epoll refused the harness's eventfd")
        return result == 0

    def hand_away(self, bint away=True):
        """Mark the connection as with a handler thread (bridge_push), or back (worker_drain_inbox)."""
        self.conn.with_handler_thread = away

    def event_while_away(self):
        """What the worker does with an epoll event for a connection that is away."""
        conn_event_while_away(&self.worker, &self.conn)

    def adopt(self):
        """What conn_adopt does before its first read (conn_accepted): HEAD, its header timer running,
        and not in the epoll set yet (protocol.pxi (3))."""
        conn_accepted(&self.worker, &self.conn, self.worker.now_ms)

    def watch(self):
        """What the first read does when nothing has come yet (conn_watch); True when registered."""
        return conn_watch(&self.worker, &self.conn) == 0

    def advance(self, long long milliseconds):
        """Move the worker's clock (timer deadlines are computed from it)."""
        self.worker.now_ms += milliseconds

    def close_after(self, str policy):
        cdef int index = ("NEVER", "AFTER_RESPONSE", "LINGERING").index(policy)
        conn_close_after(&self.conn, <ClosePolicy>index)

    def start_request(self, int version_minor, bint connection_close=False, bint connection_keep_alive=False,
                      bint stopping=False):
        """As if a head with these facts was parsed (conn_start_request) and, later, completed."""
        self.conn.request.version_minor = version_minor
        self.conn.request.connection_close = connection_close
        self.conn.request.connection_keep_alive = connection_keep_alive
        self.worker.stop_requested = stopping
        conn_start_request(&self.worker, &self.conn)

    def complete_request(self):
        conn_request_complete(&self.conn)

    @property
    def phase(self):
        return PHASE_NAMES[<int>self.conn.phase]

    @property
    def interest(self):
        """What epoll watches for the fd: "IN", "OUT", or None when not registered."""
        if self.conn.interest == 0:
            return None
        return "OUT" if self.conn.interest == EPOLLOUT else "IN"

    @property
    def timer(self):
        return _TIMER_NAMES[<int>self.conn.timer_kind]

    @property
    def deadline_ms(self):
        return self.conn.deadline_ms if self.conn.timer_kind != TIMER_NONE else None

    @property
    def close_policy(self):
        return ("NEVER", "AFTER_RESPONSE", "LINGERING")[<int>self.conn.close_policy]

    @property
    def keep_alive(self):
        return bool(self.conn.keep_alive)

    @property
    def serves_more_requests(self):
        return bool(conn_serves_more_requests(&self.conn))

    @property
    def epoll_fd(self):
        return self.worker.epoll_fd

    @property
    def fd(self):
        """The connection's fd (an eventfd): /proc/self/fdinfo/<epoll_fd> shows what the kernel
        has registered for it."""
        return self.conn.fd


# -- the parser over input that ends at an unreadable page (tests/test_parser_guard_page.py) -------
#
# picohttpparser's way of proving "never reads past the input": the input is copied so that its
# last byte is the last byte of a readable page and the next page is PROT_NONE, so a read of even
# one byte too many is a SIGSEGV. (parse_request's bytearray always has a NUL after its data, so an
# over-read of one byte goes unseen there.) Test-only, so the mmap interface is declared here.

cdef extern from "<sys/mman.h>" nogil:
    enum:
        PROT_NONE
        PROT_READ
        PROT_WRITE
        MAP_PRIVATE
        MAP_ANONYMOUS
    void* MAP_FAILED
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int mprotect(void* addr, size_t length, int prot)
    int munmap(void* addr, size_t length)

cdef extern from "<unistd.h>" nogil:
    enum:
        _SC_PAGESIZE
    long sysconf(int name)


def parse_request_at_guard_page(bytes data, *, size_t step=0, bint at_page_start=False,
                                Py_ssize_t max_request_line=8190, Py_ssize_t max_head_size=32768,
                                Py_ssize_t max_header_count=100, long long max_body_size=1 << 40):
    """Run head_scan, parse_head and chunked_decode as parse_request does, over a copy of `data`
    that ends exactly where a PROT_NONE page begins: reading one byte past the input crashes.

    step=0: all bytes at once. step=n: the bytes arrive n at a time, as from a socket, and the
    scanner and the chunked decoder resume from their saved state, as the workers do; before every
    call the bytes received so far are moved to end at the guard page again (legal: the parser
    keeps offsets, never pointers). at_page_start=True puts the input right after a PROT_NONE page
    instead (catches reads before the input; the end then has readable slack).

    Returns ("need-more", None), ("error", status), or ("ok", {"head_length", "request_length",
    "body"}), the same verdict and values as parse_request for the same bytes and limits."""
    cdef Limits limits
    cdef HeadScan scan
    cdef ParsedRequest request
    cdef ChunkedBody chunked
    cdef Py_ssize_t result
    cdef size_t total = len(data), received = 0, previous, page = <size_t>sysconf(_SC_PAGESIZE)
    cdef size_t data_pages = (total + page - 1) // page
    cdef size_t mapped = (data_pages + 2) * page          # guard, data pages, guard
    cdef bint head_complete = False
    cdef char* region
    cdef char* data_start
    cdef char* guard_after
    cdef char* base
    memset(&limits, 0, sizeof(limits))
    limits.max_request_line = max_request_line
    limits.max_head_size = max_head_size
    limits.max_header_count = max_header_count
    limits.max_body_size = max_body_size
    memset(&scan, 0, sizeof(scan))
    region = <char*>mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if <void*>region == MAP_FAILED:
        raise MemoryError("mmap failed")
    try:
        data_start = region + page
        guard_after = data_start + data_pages * page
        if mprotect(region, page, PROT_NONE) != 0 or mprotect(guard_after, page, PROT_NONE) != 0:
            raise OSError(errno, "mprotect failed")
        while True:
            previous = received
            received = total if step == 0 or total - received <= step else received + step
            if at_page_start:
                base = data_start
            else:
                base = guard_after - received
                memmove(base, guard_after - previous, previous)   # keeps what the decoder rewrote
            memcpy(base + previous, <const char*>data + previous, received - previous)
            if not head_complete:
                result = head_scan(base, received, &scan, &limits)
                if result < 0:
                    return ("error", -result)
                if result > 0:
                    result = parse_head(base, <size_t>result, &request, &limits)
                    if result < 0:
                        return ("error", -result)
                    if request.expect_unknown:
                        return ("error", 417)
                    if request.content_length > max_body_size:
                        return ("error", 413)
                    if request.chunked:
                        memset(&chunked, 0, sizeof(chunked))
                        chunked.body_start = chunked.read_offset = chunked.decoded_end = request.head_length
                    else:
                        request.body_length = request.content_length if request.content_length > 0 else 0
                        request.request_length = request.head_length + request.body_length
                    head_complete = True
            if head_complete:
                if request.chunked:
                    result = chunked_decode(base, received, &chunked, &limits)
                    if result < 0:
                        return ("error", -result)
                    if result > 0:
                        request.request_length = <size_t>result
                        request.body_length = chunked.decoded_end - request.head_length
                        break
                elif received >= request.request_length:
                    break
            if received == total:
                return ("need-more", None)
        return ("ok", {
            "head_length": request.head_length,
            "request_length": request.request_length,
            "body": base[request.head_length:request.head_length + request.body_length],
        })
    finally:
        munmap(region, mapped)


# WebSocket primitives (websocket_frames.pxi, websocket_handshake.pxi, websocket_deflate.pxi), for
# tests/test_websocket_frames.py.

def ws_parse_frame_head_for_test(bytes data, bint rsv1_allowed):
    """ws_parse_frame_head on data: 0 (need more), -1 (protocol error), or the head as a dict."""
    cdef WsFrameHead head
    cdef int result = ws_parse_frame_head(<const unsigned char*><const char*>data, len(data), &head,
                                          rsv1_allowed)
    if result != 1:
        return result
    return {"fin": bool(head.fin), "rsv1": bool(head.rsv1), "opcode": head.opcode,
            "payload_length": head.payload_length, "mask": (<const char*>head.mask)[:4],
            "head_length": head.head_length}


def ws_write_frame_head_for_test(int opcode, bint fin, bint rsv1, uint64_t length):
    cdef unsigned char out[WS_FRAME_HEAD_MAX]
    cdef size_t size = ws_write_frame_head(out, opcode, fin, rsv1, length)
    return (<const char*>out)[:size]


def ws_unmask_for_test(bytes data, bytes mask, size_t mask_offset):
    """ws_unmask on a copy of data (mask: 4 bytes)."""
    cdef bytearray work = bytearray(data)
    cdef unsigned char* raw = <unsigned char*><char*>work
    if len(mask) != 4:
        raise ValueError("the mask is 4 bytes")
    ws_unmask(raw, len(work), <const unsigned char*><const char*>mask, mask_offset)
    return bytes(work)


def utf8_valid_for_test(bytes data, chunk_sizes=()):
    """Feed data to one Utf8Validator in chunks of the given sizes (the rest in a last chunk).
    Returns (index of the byte it rejected, or None; utf8_complete at the end, or False)."""
    cdef Utf8Validator validator, before
    cdef const unsigned char* raw = <const unsigned char*><const char*>data
    cdef size_t total = len(data), position = 0, size, i
    utf8_reset(&validator)
    sizes = list(chunk_sizes) + [total]
    for chunk in sizes:
        size = min(<size_t>chunk, total - position)
        before = validator
        if not utf8_feed(&validator, raw + position, size):
            # Find the byte that failed by replaying the chunk one byte at a time.
            for i in range(size):
                if not utf8_feed(&before, raw + position + i, 1):
                    return (position + i, False)
            raise AssertionError("utf8_feed failed a chunk whose bytes pass one by one")
        position += size
        if position == total:
            break
    return (None, bool(utf8_complete(&validator)))


def ws_close_payload_for_test(bytes payload):
    """(status, code): ws_close_payload's result and the code it set (None when it set none)."""
    cdef int code = -1
    cdef int status = ws_close_payload(<const unsigned char*><const char*>payload, len(payload), &code)
    return (status, None if code == -1 else code)


def sha1_for_test(bytes data):
    cdef unsigned char digest[SHA1_DIGEST_LENGTH]
    sha1_digest(<const unsigned char*><const char*>data, len(data), digest)
    return (<const char*>digest)[:SHA1_DIGEST_LENGTH]


def ws_key_valid_for_test(bytes key):
    return bool(ws_key_valid(key, len(key)))


def ws_accept_for_test(bytes key):
    cdef char out[WS_ACCEPT_LENGTH]
    ws_accept_value(key, len(key), out)
    return out[:WS_ACCEPT_LENGTH]


def ws_handshake_for_test(bytes head, bint is_get, int version_minor, bint has_body):
    """ws_handshake_check: {"status", "key" (bytes or None), "extensions" (bytes or None)}."""
    cdef WsHandshake result
    cdef const char* raw = head
    ws_handshake_check(raw, len(head), is_get, version_minor, has_body, &result)
    return {"status": result.status,
            "key": result.key[:result.key_length] if result.key != NULL else None,
            "extensions": result.extensions[:result.extensions_length] if result.extensions != NULL else None}


def ws_negotiate_for_test(bytes head, size_t capacity=256):
    """ws_deflate_negotiate: None when no offer is accepted, else (response value, params dict)."""
    cdef WsDeflateParams params
    cdef size_t length = 0
    cdef bytearray response = bytearray(capacity + 1)
    memset(&params, 0, sizeof(params))
    if not ws_deflate_negotiate(head, len(head), &params, <char*>response, capacity, &length):
        return None
    return (bytes(response[:length]), {
        "client_no_context_takeover": bool(params.client_no_context_takeover),
        "client_max_window_bits": params.client_max_window_bits,
        "server_window_bits": params.server_window_bits})


cdef class WsDeflateForTest:
    """One connection's WsDeflate: inflate() one received message from its frames' payloads,
    deflate() one message to send (with a compressor of its own, as a worker has one)."""
    cdef WsDeflate state
    cdef WsCompressor compressor

    def __init__(self, bint client_no_context_takeover=False, int client_max_window_bits=15,
                 int server_window_bits=DEFLATE_WINDOW_BITS):
        cdef WsDeflateParams params
        ws_deflate_free(&self.state)
        params.client_no_context_takeover = client_no_context_takeover
        params.client_max_window_bits = client_max_window_bits
        params.server_window_bits = server_window_bits
        ws_deflate_init(&self.state, &params)

    def __dealloc__(self):
        ws_deflate_free(&self.state)
        ws_compressor_free(&self.compressor)

    def inflate(self, frames, size_t max_size):
        """Inflate a message given as a list of frame payloads (the last is final): (status, output)."""
        cdef Buffer out
        cdef int status = 0
        cdef Py_ssize_t index
        cdef bytes payload
        memset(&out, 0, sizeof(out))
        try:
            for index in range(len(frames)):
                payload = frames[index]
                status = ws_inflate(&self.state, <const unsigned char*><const char*>payload, len(payload),
                                    index == len(frames) - 1, &out, max_size)
                if status != 0:
                    break
            return (status, out.data[out.start:out.end] if out.data != NULL else b"")
        finally:
            buffer_release(&out)

    def deflate(self, bytes message):
        cdef Buffer out
        memset(&out, 0, sizeof(out))
        try:
            if ws_deflate(&self.compressor, &self.state, <const unsigned char*><const char*>message, len(message),
                          &out) != 0:
                raise MemoryError()
            return out.data[out.start:out.end] if out.data != NULL else b""
        finally:
            buffer_release(&out)


def struct_sizes():
    """sizeof() of the per-connection C structs, for the memory figures README and the bench state."""
    return {"Conn": sizeof(Conn), "WsChannel": sizeof(WsChannel), "WsDeflate": sizeof(WsDeflate),
            "ParsedRequest": sizeof(ParsedRequest), "HeadScan": sizeof(HeadScan), "ChunkedBody": sizeof(ChunkedBody)}


def ws_receive_for_test(bytes stream, chunk_sizes=(), size_t max_size=1 << 20, bint deflate=False,
                        bint client_no_context_takeover=False, int client_max_window_bits=15):
    """The worker's WebSocket receive path (websocket.pxi: ws_read_frames) over `stream`, fed in
    pieces of `chunk_sizes` (cycled; empty: all at once), on a connection without a socket: what a
    worker would hand the app. Returns (messages, code, output): messages as (kind, code, payload)
    with kind "text", "binary" or "closed" (code and reason of the client's close frame); code 0,
    or the close code the connection fails with; output, the frames the worker answered with
    (pongs, the close). For tests/test_websocket_receive.py and the coverage-guided fuzzing."""
    cdef ServerState* state = <ServerState*>calloc(1, sizeof(ServerState))
    cdef Worker* worker = <Worker*>calloc(1, sizeof(Worker))
    cdef Conn* conn = <Conn*>calloc(1, sizeof(Conn))
    cdef WsChannel* ws = NULL
    cdef WsChannel* ready
    cdef WsChannel* following
    cdef WsMessage* message
    cdef WsDeflateParams params
    cdef size_t position = 0, size, length = len(stream)
    cdef int result = 0, index = 0
    cdef list sizes = [int(n) for n in chunk_sizes if int(n) > 0] or [max(1, length)]
    messages = []
    try:
        if state == NULL or worker == NULL or conn == NULL:
            raise MemoryError()
        state.ws_max_size = max_size
        state.ws_max_queue = 1 << 30
        worker.server = state
        conn.home = worker
        conn.fd = -1
        conn.sendfile_fd = -1
        conn.phase = PHASE_WEBSOCKET
        ws = ws_channel_new(conn, state)
        if ws == NULL:
            raise MemoryError()
        conn.ws = ws
        if deflate:
            memset(&params, 0, sizeof(params))
            params.client_no_context_takeover = client_no_context_takeover
            params.client_max_window_bits = client_max_window_bits
            params.server_window_bits = 12
            if ws_channel_deflate(ws, &params) != 0:
                raise MemoryError()
        while position < length and result <= 0 and not ws.close_received:
            size = min(<size_t>sizes[index % len(sizes)], length - position)
            index += 1
            if buffer_append(&conn.input, PyBytes_AS_STRING(stream) + position, size) != 0:
                raise MemoryError()
            position += size
            result = ws_read_frames(worker, conn)
        while True:
            message = ws_take_message(ws)
            if message == NULL:
                break
            kind = {WS_OP_TEXT: "text", WS_OP_BINARY: "binary"}.get(message.kind, "closed")
            messages.append((kind, message.code, PyBytes_FromStringAndSize(<const char*>(message + 1), message.length)))
            free(message)
        output = PyBytes_FromStringAndSize(conn.output.data + conn.output.start, buffer_length(&conn.output))
        return messages, (result if result > 0 else 0), output
    finally:
        if ws != NULL:
            ready = worker.ws_python_first                  # the references of its ready list
            while ready != NULL:
                following = ready.next_ready
                ws_channel_release(ready)
                ready = following
            buffer_release(&ws.message)
            if ws.deflate != NULL:
                ws_deflate_free(ws.deflate)
                free(ws.deflate)
                ws.deflate = NULL
            ws_channel_release(ws)
            ws_channel_release(ws)
        if conn != NULL:
            buffer_release(&conn.input)
            buffer_release(&conn.output)
        free(conn)
        free(worker)
        free(state)


from time import perf_counter as _perf_counter


def asgi_scope_for_test(bytes head, object app_info, int repeat=1):
    """The ASGI scope the loop builds for `head` (a complete request head, no body) from a client
    at 127.0.0.1:40000, and the seconds `repeat` builds took: a unit test's view of asgi_scope(),
    and a way to time it alone."""
    cdef Conn conn
    cdef Limits limits
    cdef HeadScan scan
    cdef Py_ssize_t result
    cdef int i
    memset(&conn, 0, sizeof(Conn))
    memset(&scan, 0, sizeof(scan))
    limits.max_request_line = 8190
    limits.max_head_size = 32768
    limits.max_header_count = 100
    limits.max_body_size = 1 << 40
    result = head_scan(head, len(head), &scan, &limits)
    if result <= 0:
        raise ValueError("not a complete, valid head")
    if parse_head(head, <size_t>result, &conn.request, &limits) < 0:
        raise ValueError("not a valid head")
    conn.input.data = <char*>head
    conn.input.end = len(head)
    conn.peer.v4.sin_family = AF_INET
    conn.peer.v4.sin_port = htons(40000)
    conn.peer.v4.sin_addr.s_addr = htonl(0x7f000001)
    asgi_import_asyncio()
    scope = None
    started = _perf_counter()
    for i in range(repeat):
        scope = asgi_scope(app_info, &conn, None)
    return scope, _perf_counter() - started

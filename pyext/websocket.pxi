# websocket.pxi: an upgraded connection in its I/O worker, and the channel it shares with Python.
#
# Theory of operation. A request that is a valid WebSocket handshake (ws_check_upgrade, from
# serve.pxi; refused ones get 400 or 426 here, in C) goes to the ASGI loop like any request. If the
# app accepts, the loop (asgi_websocket.pxi) writes the 101 into the output, gives the connection a
# WsChannel (conn.ws) and hands it back. From then on the connection stays in its worker for good:
#
#   * the worker reads frames (WEBSOCKET phase), unmasks them, checks UTF-8 as they come, inflates
#     compressed messages (never past ws_max_size), and answers pings, pongs and closes itself:
#     control frames never reach Python and never take the GIL;
#   * a complete message is copied into a WsMessage and appended to the channel's `received` list;
#     when the channel was not already waiting for the loop, it goes on the bridge's ws_ready list
#     (one eventfd write when the bridge was empty), and the loop wakes the app's receive();
#   * at ws_max_queue messages not yet taken the worker stops reading the socket (WS_PAUSED, out
#     of the epoll set): the client's sends wait in TCP. The app's receive() that takes the queue
#     below the limit asks the worker to read again (through the outbox, below);
#   * what the app sends is appended by the loop to the channel's `outgoing` records (kind, length,
#     payload), and the channel goes on the worker's ws_outbox (under inbox_lock, with a wake-up
#     when the worker's inbox and outbox were both empty). The worker frames (and compresses) the
#     records into the connection's output and sends them as any output: FLUSHING, SENDING when
#     the socket is full. The app's send() completes at once while less than WS_WRITE_LIMIT bytes
#     wait; beyond, it waits until the worker has sent everything (`want_drained`, answered through
#     the ready list);
#   * the end: the client's close frame (answered with the same code), a protocol error (close
#     1002/1007/1009, then a lingering close), a missing pong (1011), the app's close (the worker
#     waits for the client's answer up to the LINGER timer), a stop (1001), or the socket failing
#     (1006). Whichever comes first queues one last message of kind WS_EVENT_CLOSED with the code
#     the app's websocket.disconnect carries; nothing is queued after it.
#
# Timers (the WEBSOCKET phase leaves the choice to ws_arm_timer): the next ping
# (ws_ping_interval), the pong of the last ping (ws_ping_timeout), or, once our close frame is
# out, the client's close frame (LINGER_TIMEOUT_MS).
#
# Ownership. A channel has two owners, counted in `refs`: the connection (until conn_close calls
# ws_detach) and the app's cycle on the loop (until it ends). Being on the bridge's ready list or
# on a worker's outbox holds one more reference each, so neither list can point at freed memory.
# The fields under "shared" are read and written under the channel's lock; "worker" fields only by
# the connection's worker; "loop" fields only on the loop thread. Locks are never nested: the
# channel's lock is released before the bridge's or the inbox's is taken.

cdef enum:
    WS_WRITE_LIMIT = 65536            # unsent bytes beyond which the app's send() waits
    WS_EVENT_CLOSED = 0x100           # a WsMessage kind: the connection ended (code, reason)
    WS_EVENT_OPEN = 0x101             # native routes: accepted (code: the route; payload: WsOpenInfo + head)
    WS_RECORD_HEAD = 8                # an outgoing record: kind (4 bytes), payload length (4 bytes)
    WS_SERVER_HEAD_MAX = 10           # a server frame's head at most (unmasked, 64-bit length)

ctypedef struct WsMessage:
    WsMessage* next
    int kind                          # WS_OP_TEXT, WS_OP_BINARY or WS_EVENT_CLOSED
    int code                          # WS_EVENT_CLOSED: the code of websocket.disconnect
    size_t length
    # the payload follows the struct (text: valid UTF-8; closed: the reason)

ctypedef struct WsOpenInfo:            # a native WebSocket's handshake, for its ws.request
    ParsedRequest request
    PeerAddress peer
    # the request head follows

ctypedef struct WsRecordHead:
    uint32_t kind                     # WS_OP_TEXT, WS_OP_BINARY or WS_OP_CLOSE (payload: a close payload)
    uint32_t length

cdef struct WsChannel:
    pthread_mutex_t lock
    int refs                          # atomic
    long long* debug_counters
    Worker* home
    # shared (under lock)
    WsMessage* received_first
    WsMessage* received_last
    int received_count
    int max_queue
    bint ended                        # the WS_EVENT_CLOSED message is queued: nothing follows it
    bint reading_paused               # the worker stopped reading: the queue was full
    bint resume_asked                 # the loop took messages since: the worker may read again
    bint detached                     # the worker closed the connection: outgoing is not sent
    bint close_queued                 # the app sent its close: it sends nothing after
    Buffer outgoing                   # WsRecordHead + payload, as the app sent them
    bint want_drained                 # the app's send() waits for the output to be sent
    size_t unsent                     # output the socket has not taken: set after the worker frames
                                      #   the app's records, 0 once all is out (ws_output_drained)
    bint on_ready                     # on the bridge's ws_ready list
    bint on_outbox                    # on the home worker's ws_outbox
    WsChannel* next_ready
    WsChannel* next_outbox
    # worker
    Conn* conn
    WsFrameHead frame                 # the frame being read, while in_frame
    bint in_frame
    uint64_t frame_remaining
    size_t mask_offset
    int message_opcode                # WS_OP_TEXT or WS_OP_BINARY while a message is assembled, else 0
    bint message_compressed
    Buffer message
    Utf8Validator utf8
    bint close_sent
    bint close_received
    bint ping_outstanding
    bint deflate_on
    WsDeflate* deflate                # only when permessage-deflate was agreed (ws_channel_deflate)
    TimerKind timer                   # what the armed timer waits for (conn.timer_kind is cleared when it fires)
    bint opened                       # counted in the worker's ws_open
    bint in_python                    # native: a thread is delivering its messages (websocket_native.pxi)
    # loop
    void* owner                       # the WebSocketCycle (borrowed; it clears this before it goes)


cdef WsChannel* ws_channel_new(Conn* conn, ServerState* server) noexcept nogil:
    """For the loop, when the app accepts: a channel owned by the connection and the cycle."""
    cdef WsChannel* ws = <WsChannel*>calloc(1, sizeof(WsChannel))
    if ws == NULL:
        return NULL
    if pthread_mutex_init(&ws.lock, NULL) != 0:
        free(ws)
        return NULL
    ws.refs = 2
    ws.debug_counters = server.debug_counters
    ws.home = conn.home
    ws.conn = conn
    ws.max_queue = server.ws_max_queue
    fc_debug_count(server.debug_counters, FC_LIVE_WS_CHANNELS, 1)
    return ws


cdef int ws_channel_deflate(WsChannel* ws, const WsDeflateParams* params) noexcept nogil:
    """permessage-deflate was agreed: its state (allocated only then, so a connection without it
    does not carry two z_streams). 0, or -1 out of memory."""
    ws.deflate = <WsDeflate*>calloc(1, sizeof(WsDeflate))
    if ws.deflate == NULL:
        return -1
    ws_deflate_init(ws.deflate, params)
    ws.deflate_on = True
    return 0


cdef void ws_channel_release(WsChannel* ws) noexcept nogil:
    """Drop one reference; the last frees the channel and what it still holds."""
    cdef WsMessage* message
    cdef WsMessage* following
    if fc_atomic_add_fetch(&ws.refs, -1) != 0:
        return
    message = ws.received_first
    while message != NULL:
        following = message.next
        free(message)
        message = following
    buffer_release(&ws.outgoing)
    buffer_release(&ws.message)
    pthread_mutex_destroy(&ws.lock)
    fc_debug_count(ws.debug_counters, FC_LIVE_WS_CHANNELS, -1)
    free(ws)


# -- the handshake (serve.pxi) ---------------------------------------------------------------------

cdef int ws_check_upgrade(Worker* worker, Conn* conn) noexcept nogil:
    """The complete request at the input's start: 0 when it is no WebSocket handshake, 101 when it
    is a valid one (conn.ws_upgrade set: the loop starts a websocket cycle), or the status that
    refuses it (400, 426)."""
    cdef WsHandshake handshake
    cdef ParsedRequest* request = &conn.request
    cdef int route = -1
    if worker.server.ws_native:
        route = ws_find_route(worker.server, conn.input.data + conn.input.start + request.path_offset,
                              request.path_length)
        if route < 0:
            return 0                                # not a WebSocket path: the handler's request
    ws_handshake_check(conn.input.data + conn.input.start, request.head_length,
                       request_method_is(conn, "GET", 3), request.version_minor,
                       request.chunked or request.body_length > 0, &handshake)
    if handshake.status == 101:
        if route >= 0:
            return ws_accept_native(worker, conn, route, &handshake)
        conn.ws_upgrade = True
    return handshake.status


cdef int ws_find_route(const ServerState* server, const char* path, size_t length) noexcept nogil:
    cdef int i
    if length == 0:
        path = "/"
        length = 1
    for i in range(server.ws_route_count):
        if server.ws_route_lengths[i] == length and memcmp(server.ws_route_paths[i], path, length) == 0:
            return i
    return -1


cdef int ws_accept_native(Worker* worker, Conn* conn, int route, WsHandshake* handshake) noexcept nogil:
    """A native route's valid handshake, accepted here without Python: the 101, the channel, and the
    open event for the handler batch. Returns 1 (serve.pxi: the connection is a WebSocket now), or
    500 when memory runs out."""
    cdef const char* head = conn.input.data + conn.input.start
    cdef size_t head_length = conn.request.head_length
    cdef char accept[28]
    cdef char extension[256]
    cdef size_t extension_length = 0
    cdef WsDeflateParams params
    cdef bint deflate = False
    cdef WsChannel* ws
    cdef WsOpenInfo* info
    cdef int failed = 0
    ws_accept_value(handshake.key, handshake.key_length, accept)
    if worker.server.ws_deflate:
        deflate = ws_deflate_negotiate(head, head_length, &params, extension, sizeof(extension),
                                       &extension_length) == 1
    ws = ws_channel_new(conn, worker.server)
    info = <WsOpenInfo*>malloc(sizeof(WsOpenInfo) + head_length)
    if ws == NULL or info == NULL:
        free(info)
        if ws != NULL:
            ws_channel_release(ws)
            ws_channel_release(ws)
        return 500
    failed |= buffer_append(&conn.output, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: ", 97)
    failed |= buffer_append(&conn.output, accept, 28)
    failed |= buffer_append(&conn.output, b"\r\n", 2)
    if deflate:
        failed |= buffer_append(&conn.output, b"Sec-WebSocket-Extensions: ", 26)
        failed |= buffer_append(&conn.output, extension, extension_length)
        failed |= buffer_append(&conn.output, b"\r\n", 2)
        if ws_channel_deflate(ws, &params) != 0:
            failed = -1
    failed |= buffer_append(&conn.output, worker.server.server_field, worker.server.server_field_length)
    failed |= buffer_append(&conn.output, worker.date.line, worker.date.length)
    failed |= buffer_append(&conn.output, b"\r\n", 2)
    count_response(worker, 101)
    access_log_core_response(worker, conn, 101, 0)      # (with access_log on; before the head goes)
    info.request = conn.request
    info.peer = conn.peer
    memcpy(<char*>(info + 1), head, head_length)
    conn.ws = ws
    ws.opened = True
    fc_atomic_add64(&worker.ws_open, 1)
    ws_queue_message(worker, ws, WS_EVENT_OPEN, route, <const char*>info, sizeof(WsOpenInfo) + head_length)
    free(info)
    finish_request(conn, conn.request.request_length)   # what follows the head is frames
    conn_transition(worker, conn, EVENT_ANSWERED)
    if failed:
        ws_fail(worker, conn, 1011)
    return 1


cdef ServeResult ws_refuse_upgrade(Worker* worker, Conn* conn, int status) noexcept nogil:
    """A handshake that cannot be accepted: its status (426 says which version we speak), and a close."""
    conn_close_after(conn, CLOSE_LINGERING)
    if status == 426:
        append_error_response_with(worker, conn, status, b"Sec-WebSocket-Version: 13\r\n", 27)
    else:
        append_error_response(worker, conn, status)
    access_log_error_response(worker, conn, status)
    conn_transition(worker, conn, EVENT_ANSWERED)
    return SERVE_CLOSE


# -- telling the loop ----------------------------------------------------------------------------

cdef void ws_notify_python(Worker* worker, WsChannel* ws) noexcept nogil:
    """Put `ws` on the ready list of whoever runs its Python, unless it is there already: the
    bridge's (the ASGI loop, or native callbacks on handler threads), or the worker's own (native
    callbacks in its inline batch)."""
    cdef Bridge* bridge = &worker.server.bridge
    cdef bint was_empty
    pthread_mutex_lock(&ws.lock)
    if ws.on_ready:
        pthread_mutex_unlock(&ws.lock)
        return
    ws.on_ready = True
    fc_atomic_add_fetch(&ws.refs, 1)                # the list's reference
    pthread_mutex_unlock(&ws.lock)
    if not worker.server.python_off_workers:
        ws.next_ready = NULL
        if worker.ws_python_last != NULL:
            worker.ws_python_last.next_ready = ws
        else:
            worker.ws_python_first = ws
        worker.ws_python_last = ws
        return
    pthread_mutex_lock(&bridge.lock)
    was_empty = bridge_empty(bridge)
    ws.next_ready = NULL
    if bridge.ws_ready_last != NULL:
        bridge.ws_ready_last.next_ready = ws
    else:
        bridge.ws_ready_first = ws
    bridge.ws_ready_last = ws
    pthread_cond_signal(&bridge.ready)              # native callbacks: a handler thread takes it
    pthread_mutex_unlock(&bridge.lock)
    bridge_notify(bridge, was_empty)


cdef bint ws_queue_message(Worker* worker, WsChannel* ws, int kind, int code, const char* data,
                           size_t length) noexcept nogil:
    """Queue a received message (or the end) for the app and tell the loop. Returns True when the
    queue is now full (the caller stops reading). Out of memory: the connection fails (1011)."""
    cdef WsMessage* message
    cdef bint full
    message = <WsMessage*>malloc(sizeof(WsMessage) + length)
    if message == NULL:
        return True
    message.next = NULL
    message.kind = kind
    message.code = code
    message.length = length
    if length:
        memcpy(<char*>(message + 1), data, length)
    pthread_mutex_lock(&ws.lock)
    if ws.ended:
        pthread_mutex_unlock(&ws.lock)
        free(message)
        return False
    if kind == WS_EVENT_CLOSED:
        ws.ended = True
    if ws.received_last != NULL:
        ws.received_last.next = message
    else:
        ws.received_first = message
    ws.received_last = message
    ws.received_count += 1
    full = kind < WS_EVENT_CLOSED and ws.received_count >= ws.max_queue
    if full:
        ws.reading_paused = True
        ws.resume_asked = False
    pthread_mutex_unlock(&ws.lock)
    if kind < WS_EVENT_CLOSED:
        fc_atomic_add64(&worker.server.ws_messages_received, 1)
    ws_notify_python(worker, ws)
    return full


cdef void ws_end(Worker* worker, WsChannel* ws, int code, const char* reason, size_t length) noexcept nogil:
    """The connection is over for the app: its websocket.disconnect carries `code` (once)."""
    ws_queue_message(worker, ws, WS_EVENT_CLOSED, code, reason, length)


# -- frames out ------------------------------------------------------------------------------------

cdef int ws_append_frame(Worker* worker, Conn* conn, int opcode, const char* data, size_t length) noexcept nogil:
    """Frame one message (compressed when agreed and it is data) into the output."""
    cdef WsChannel* ws = conn.ws
    cdef unsigned char head[WS_FRAME_HEAD_MAX]
    cdef size_t head_length, head_at, compressed
    cdef char* frame
    cdef int failed = 0
    # Every data message is compressed once it was agreed, short ones too: RFC 7692 allows sending
    # some uncompressed, but clients differ in how well they take that (kosoku, the Autobahn
    # client of our tests, fails on them).
    if ws.deflate_on and (opcode == WS_OP_TEXT or opcode == WS_OP_BINARY):
        # Compressed straight into the output after room for the longest head; the head's length
        # depends on the compressed size, so the payload moves down onto the room it leaves unused.
        head_at = buffer_length(&conn.output)           # (an offset from start: reserve may slide)
        if buffer_reserve(&conn.output, WS_SERVER_HEAD_MAX) != 0:
            return -1
        conn.output.end += WS_SERVER_HEAD_MAX
        if ws_deflate(&worker.ws_compressor, ws.deflate, <const unsigned char*>data, length, &conn.output) != 0:
            buffer_truncate(&conn.output, head_at)
            return -1
        compressed = buffer_length(&conn.output) - head_at - WS_SERVER_HEAD_MAX
        head_length = ws_write_frame_head(head, opcode, True, True, compressed)
        frame = conn.output.data + conn.output.start + head_at
        memmove(frame + head_length, frame + WS_SERVER_HEAD_MAX, compressed)
        memcpy(frame, head, head_length)
        conn.output.end -= WS_SERVER_HEAD_MAX - head_length
        return 0
    head_length = ws_write_frame_head(head, opcode, True, False, length)
    failed |= buffer_append(&conn.output, <const char*>head, head_length)
    if length:
        failed |= buffer_append(&conn.output, data, length)
    return failed


cdef void ws_send_close(Worker* worker, Conn* conn, int code, const char* reason, size_t length) noexcept nogil:
    """Our close frame (code 1005: an empty one), once; the client's answer is then due."""
    cdef WsChannel* ws = conn.ws
    cdef char payload[125]
    if ws.close_sent:
        return
    ws.close_sent = True
    if code == 1005:
        ws_append_frame(worker, conn, WS_OP_CLOSE, NULL, 0)
        return
    if length > 123:
        length = 123
    payload[0] = <char>(code >> 8)
    payload[1] = <char>(code & 0xFF)
    if length:
        memcpy(payload + 2, reason, length)
    ws_append_frame(worker, conn, WS_OP_CLOSE, payload, 2 + length)


cdef void ws_fail(Worker* worker, Conn* conn, int code) noexcept nogil:
    """_Fail the WebSocket Connection_ (RFC 6455 7.1.7): our close with `code`, the app told the
    same code, and a lingering close (the client may still be sending)."""
    fc_atomic_add64(&worker.server.ws_closed_by_server, 1)
    ws_send_close(worker, conn, code, NULL, 0)
    ws_end(worker, conn.ws, code, NULL, 0)
    conn_close_after(conn, CLOSE_LINGERING)


cdef void ws_arm_timer(Worker* worker, Conn* conn) noexcept nogil:
    """The timer a WebSocket waits on now: the client's close, the pong, or the next ping."""
    cdef WsChannel* ws = conn.ws
    cdef TimerKind kind = TIMER_WS_PING
    if ws.close_sent:
        kind = TIMER_LINGER
    elif ws.ping_outstanding and worker.timers[<int>TIMER_WS_PONG].duration_ms > 0:
        kind = TIMER_WS_PONG
    if conn.timer_kind != kind or kind == TIMER_WS_PING and conn.timer_kind == TIMER_NONE:
        timer_arm(worker, conn, kind)
    ws.timer = conn.timer_kind


cdef void ws_send_output(Worker* worker, Conn* conn) noexcept nogil:
    """After frames were read or written: send what is in the output (or end the connection when
    it is over), else wait for more frames."""
    if buffer_length(&conn.output) or not conn_serves_more_requests(conn):
        if conn.phase != PHASE_SENDING:
            conn_transition(worker, conn, EVENT_ANSWERED)
        conn_flush(worker, conn)
    elif conn.phase == PHASE_WEBSOCKET:
        ws_arm_timer(worker, conn)


# -- frames in -------------------------------------------------------------------------------------

cdef int ws_control_frame(Worker* worker, Conn* conn, unsigned char* payload, size_t length) noexcept nogil:
    """A complete control frame. Returns 0, or the close code that fails the connection."""
    cdef WsChannel* ws = conn.ws
    cdef int code = 1005, result
    if ws.frame.opcode == WS_OP_PING:
        if not ws.close_sent:
            ws_append_frame(worker, conn, WS_OP_PONG, <const char*>payload, length)
            fc_atomic_add64(&worker.server.ws_pongs_sent, 1)
        return 0
    if ws.frame.opcode == WS_OP_PONG:
        ws.ping_outstanding = False             # (an unsolicited pong is a heartbeat: RFC 6455 5.5.3)
        return 0
    # WS_OP_CLOSE: answer it (with its code), tell the app, and close once our answer is out.
    result = ws_close_payload(payload, length, &code)
    if result != 0:
        return result
    ws.close_received = True
    if code == 1005:
        ws_send_close(worker, conn, 1005, NULL, 0)
        ws_end(worker, ws, 1005, NULL, 0)
    else:
        ws_send_close(worker, conn, code, NULL, 0)
        ws_end(worker, ws, code, <const char*>payload + 2, length - 2)
    conn_close_after(conn, CLOSE_AFTER_RESPONSE)    # RFC 6455 7.1.1: the server closes TCP first
    return 0


cdef int ws_data_payload(Worker* worker, Conn* conn, unsigned char* payload, size_t length,
                         bint frame_ends) noexcept nogil:
    """Part of a data frame's payload (unmasked): add it to the message. Returns 0 or a close code."""
    cdef WsChannel* ws = conn.ws
    cdef size_t before = buffer_length(&ws.message)
    cdef size_t max_size = worker.server.ws_max_size
    cdef int result
    if ws.message_compressed:
        result = ws_inflate(ws.deflate, payload, length, frame_ends and ws.frame.fin, &ws.message, max_size)
        if result == -1:
            return 1011
        if result != 0:
            return result
    else:
        if before + length > max_size:
            return 1009
        if buffer_append(&ws.message, <const char*>payload, length) != 0:
            return 1011
    if ws.message_opcode == WS_OP_TEXT and buffer_length(&ws.message) > before:
        if not utf8_feed(&ws.utf8, <const unsigned char*>(ws.message.data + ws.message.start + before),
                         buffer_length(&ws.message) - before):
            return 1007
    return 0


cdef int ws_message_complete(Worker* worker, Conn* conn) noexcept nogil:
    """The message's last frame is in: hand it to the app. Returns 0, -1 (queue now full) or a code."""
    cdef WsChannel* ws = conn.ws
    cdef int kind = ws.message_opcode
    cdef bint full
    if kind == WS_OP_TEXT and not utf8_complete(&ws.utf8):
        return 1007
    ws.message_opcode = 0
    if ws.close_sent:                                # closing: the app is not given more messages
        buffer_release(&ws.message)
        return 0
    full = ws_queue_message(worker, ws, kind, 0, ws.message.data + ws.message.start, buffer_length(&ws.message))
    buffer_release(&ws.message)
    return -1 if full else 0


cdef inline bint ws_frame_is_whole_message(WsChannel* ws, size_t available) noexcept nogil:
    """The frame just parsed is a whole uncompressed message, all of it in the input."""
    return (ws.frame.fin and ws.frame.opcode != WS_OP_CONTINUATION and not ws.message_compressed
            and available >= ws.frame.head_length + ws.frame.payload_length)


cdef int ws_whole_message(Worker* worker, Conn* conn) noexcept nogil:
    """A message in one frame, all of it in the input: unmasked in place and handed to the app
    from there, without the reassembly buffer (one copy and its allocation less per message).
    Returns 0, -1 (the queue is now full) or a close code."""
    cdef WsChannel* ws = conn.ws
    cdef size_t length = <size_t>ws.frame.payload_length
    cdef unsigned char* payload
    cdef bint full
    buffer_consume(&conn.input, ws.frame.head_length)
    payload = <unsigned char*>(conn.input.data + conn.input.start)
    ws_unmask(payload, length, ws.frame.mask, 0)
    ws.message_opcode = 0
    if ws.frame.opcode == WS_OP_TEXT and not (utf8_feed(&ws.utf8, payload, length) and utf8_complete(&ws.utf8)):
        return 1007
    if ws.close_sent:                                # closing: the app is not given more messages
        buffer_consume(&conn.input, length)
        return 0
    full = ws_queue_message(worker, ws, ws.frame.opcode, 0, <const char*>payload, length)
    buffer_consume(&conn.input, length)
    return -1 if full else 0


cdef int ws_read_frames(Worker* worker, Conn* conn) noexcept nogil:
    """Take every whole frame (and the available part of a data frame) from the input. Returns 0
    (need more bytes), -1 (the app's queue is full: stop reading) or a close code."""
    cdef WsChannel* ws = conn.ws
    cdef unsigned char* data
    cdef size_t available, take
    cdef int result
    cdef bint control
    while not ws.close_received:
        available = buffer_length(&conn.input)
        data = <unsigned char*>(conn.input.data + conn.input.start)
        if not ws.in_frame:
            result = ws_parse_frame_head(data, available, &ws.frame, ws.deflate_on)
            if result == 0:
                return 0
            if result < 0:
                return 1002
            control = ws.frame.opcode >= WS_OP_CLOSE
            if not control:
                if ws.frame.opcode == WS_OP_CONTINUATION:
                    if ws.message_opcode == 0:
                        return 1002                 # a continuation with nothing to continue
                else:
                    if ws.message_opcode != 0:
                        return 1002                 # a new message inside a fragmented one
                    ws.message_opcode = ws.frame.opcode
                    ws.message_compressed = ws.frame.rsv1
                    utf8_reset(&ws.utf8)
                if (not ws.message_compressed
                        and buffer_length(&ws.message) + ws.frame.payload_length > worker.server.ws_max_size):
                    return 1009                     # refused before a byte of it is held
                if ws_frame_is_whole_message(ws, available):
                    result = ws_whole_message(worker, conn)
                    if result != 0:
                        return result
                    continue
            elif available < ws.frame.head_length + ws.frame.payload_length:
                return 0                            # a control frame is handled whole (<= 125 bytes)
            buffer_consume(&conn.input, ws.frame.head_length)
            ws.in_frame = True
            ws.frame_remaining = ws.frame.payload_length
            ws.mask_offset = 0
            available = buffer_length(&conn.input)
            data = <unsigned char*>(conn.input.data + conn.input.start)
        control = ws.frame.opcode >= WS_OP_CLOSE
        take = available if available < ws.frame_remaining else <size_t>ws.frame_remaining
        if take == 0 and ws.frame_remaining:
            return 0
        ws_unmask(data, take, ws.frame.mask, ws.mask_offset)
        ws.mask_offset += take
        ws.frame_remaining -= take
        if control:
            result = ws_control_frame(worker, conn, data, take)
        else:
            result = ws_data_payload(worker, conn, data, take, ws.frame_remaining == 0)
        buffer_consume(&conn.input, take)
        if result != 0:
            return result
        if ws.frame_remaining:
            return 0
        ws.in_frame = False
        if not control and ws.frame.fin:
            result = ws_message_complete(worker, conn)
            if result != 0:
                return result
    return 0


cdef void ws_process_input(Worker* worker, Conn* conn) noexcept nogil:
    """Act on the frames buffered, then send what that produced (pongs, closes)."""
    cdef int result = ws_read_frames(worker, conn)
    buffer_release_if_empty(&conn.input)
    if result > 0:
        ws_fail(worker, conn, result)
    elif result == -1 and conn.phase == PHASE_WEBSOCKET:
        conn_transition(worker, conn, EVENT_WS_QUEUE_FULL)  # the app takes some first
    ws_send_output(worker, conn)


cdef void ws_on_readable(Worker* worker, Conn* conn) noexcept nogil:
    cdef ssize_t received
    if buffer_reserve(&conn.input, READ_CHUNK) != 0:
        conn_close(worker, conn)
        return
    received = recv(conn.fd, conn.input.data + conn.input.end, conn.input.capacity - conn.input.end, 0)
    if received > 0:
        conn.input.end += <size_t>received
        conn.bytes_in += received
        fc_counter_add(&worker.counters.bytes_received, received)
        conn.ws.ping_outstanding = False            # the client is alive (RFC 6455 5.5.3)
        ws_process_input(worker, conn)
    elif received < 0 and (errno == EAGAIN or errno == EINTR):
        buffer_release_if_empty(&conn.input)
    else:
        conn.peer_closed = True                     # gone without a close frame: 1006 (ws_detach)
        conn_close(worker, conn)


# -- the connection's turns ----------------------------------------------------------------------

cdef void ws_opened(Worker* worker, Conn* conn) noexcept nogil:
    """The loop gave back a connection whose app accepted: its 101 is in the output."""
    conn.ws.opened = True
    fc_atomic_add64(&worker.ws_open, 1)
    conn_flush(worker, conn)


cdef void ws_output_drained(Worker* worker, Conn* conn) noexcept nogil:
    """Everything is sent (protocol.pxi: conn_output_drained): release an app that waits in send(),
    then read frames again (or not, while the app's queue is full)."""
    cdef WsChannel* ws = conn.ws
    cdef bint waiting, paused
    buffer_release_if_empty(&conn.output)
    pthread_mutex_lock(&ws.lock)
    ws.unsent = 0
    waiting = ws.want_drained
    ws.want_drained = False
    paused = ws.reading_paused and not ws.resume_asked
    pthread_mutex_unlock(&ws.lock)
    if waiting:
        ws_notify_python(worker, ws)
    if paused:
        conn_transition(worker, conn, EVENT_WS_QUEUE_FULL)
        return
    conn_transition(worker, conn, EVENT_WEBSOCKET)
    if buffer_length(&conn.input):
        ws_process_input(worker, conn)              # frames that came with the handshake or while paused
    else:
        ws_arm_timer(worker, conn)


cdef void ws_drain_outbox(Worker* worker, WsChannel* ws) noexcept nogil:
    """The channels the loop put on our outbox: frame what their apps sent, read again where the
    app took messages."""
    cdef WsChannel* following
    cdef Buffer records
    cdef bint resume
    cdef Conn* conn
    while ws != NULL:
        following = ws.next_outbox
        pthread_mutex_lock(&ws.lock)
        ws.on_outbox = False
        records = ws.outgoing
        memset(&ws.outgoing, 0, sizeof(Buffer))
        resume = ws.resume_asked
        if resume:
            ws.reading_paused = False
            ws.resume_asked = False
        pthread_mutex_unlock(&ws.lock)
        conn = ws.conn
        if conn != NULL and conn.phase != PHASE_LINGERING and conn.phase != PHASE_CLOSED:
            ws_frame_records(worker, conn, &records)
            if conn.phase == PHASE_WS_PAUSED and resume:
                conn_transition(worker, conn, EVENT_WEBSOCKET)
                ws_process_input(worker, conn)
            elif conn.phase == PHASE_WEBSOCKET or conn.phase == PHASE_WS_PAUSED or conn.phase == PHASE_SENDING:
                ws_send_output(worker, conn)
            conn = ws.conn                          # (NULL if that closed it)
            if conn != NULL:
                # What the socket did not take is the app's backlog now: its next send() waits
                # while this is past WS_WRITE_LIMIT, until ws_output_drained says all is out.
                pthread_mutex_lock(&ws.lock)
                ws.unsent = buffer_length(&conn.output)
                pthread_mutex_unlock(&ws.lock)
        buffer_release(&records)
        ws_channel_release(ws)                      # the outbox's reference
        ws = following


cdef void ws_frame_records(Worker* worker, Conn* conn, Buffer* records) noexcept nogil:
    """Frame the app's records into the output. A close record is our close frame; nothing the app
    sends after it is framed (the loop refuses it anyway)."""
    cdef WsRecordHead head
    cdef const char* payload
    cdef size_t position = records.start
    cdef int code
    while position + WS_RECORD_HEAD <= records.end:
        memcpy(&head, records.data + position, WS_RECORD_HEAD)
        payload = records.data + position + WS_RECORD_HEAD
        position += WS_RECORD_HEAD + head.length
        if conn.ws.close_sent:
            continue
        if head.kind == WS_OP_CLOSE:
            code = 1005 if head.length < 2 else ((<unsigned char>payload[0]) << 8) | <unsigned char>payload[1]
            ws_send_close(worker, conn, code, payload + 2 if head.length >= 2 else NULL,
                          head.length - 2 if head.length >= 2 else 0)
            if conn.ws.close_received:
                conn_close_after(conn, CLOSE_AFTER_RESPONSE)
        else:
            if ws_append_frame(worker, conn, <int>head.kind, payload, head.length) != 0:
                ws_fail(worker, conn, 1011)
                return
            fc_atomic_add64(&worker.server.ws_messages_sent, 1)


cdef void ws_on_timeout(Worker* worker, Conn* conn) noexcept nogil:
    """The WEBSOCKET phase's timer fired (ws_arm_timer said which)."""
    cdef WsChannel* ws = conn.ws
    cdef TimerKind kind = ws.timer
    ws.timer = TIMER_NONE
    if kind == TIMER_LINGER:                        # our close was not answered
        conn_close(worker, conn)
        return
    if kind == TIMER_WS_PONG:
        ws_fail(worker, conn, 1011)                 # no pong: the client (or the path to it) is dead
    elif kind == TIMER_WS_PING:
        ws_append_frame(worker, conn, WS_OP_PING, b"fastcore", 8)
        ws.ping_outstanding = True
        fc_atomic_add64(&worker.server.ws_pings_sent, 1)
    ws_send_output(worker, conn)


cdef void ws_close_for_stop(Worker* worker, Conn* conn) noexcept nogil:
    """A stopping server: close 1001 (going away), once; the client's answer ends it (or LINGER)."""
    cdef WsChannel* ws = conn.ws
    if ws.close_sent or (conn.phase != PHASE_WEBSOCKET and conn.phase != PHASE_WS_PAUSED):
        return
    fc_atomic_add64(&worker.server.ws_closed_by_server, 1)
    ws_send_close(worker, conn, 1001, NULL, 0)
    if conn.phase == PHASE_WS_PAUSED:
        conn_transition(worker, conn, EVENT_WEBSOCKET)      # to read the client's answer
    ws_send_output(worker, conn)


cdef void ws_detach(Worker* worker, Conn* conn) noexcept nogil:
    """conn_close of an upgraded connection: the app is told (1006 unless it knows better), the
    worker lets go of the channel."""
    cdef WsChannel* ws = conn.ws
    conn.ws = NULL
    ws_end(worker, ws, 1006, NULL, 0)
    pthread_mutex_lock(&ws.lock)
    ws.detached = True
    ws.conn = NULL
    pthread_mutex_unlock(&ws.lock)
    buffer_release(&ws.message)
    if ws.deflate != NULL:
        ws_deflate_free(ws.deflate)
        free(ws.deflate)
        ws.deflate = NULL
    if ws.opened:
        fc_atomic_add64(&worker.ws_open, -1)
    ws_channel_release(ws)                          # the connection's reference


# -- for the loop (asgi_websocket.pxi) -------------------------------------------------------------

cdef int ws_queue_send(WsChannel* ws, uint32_t kind, const char* data, size_t length) noexcept nogil:
    """The app sends a message (or its close): append the record and put the channel on its
    worker's outbox. Returns 0 (sent on), 1 (sent on; the caller waits for the output to drain,
    then is told through the ready list), -1 (the connection is over, or closing: not sent),
    -2 (out of memory)."""
    cdef WsRecordHead head
    cdef Worker* home = ws.home
    cdef bint wake = False, push
    cdef int result = 0
    cdef uint64_t one = 1
    head.kind = kind
    head.length = <uint32_t>length
    pthread_mutex_lock(&ws.lock)
    if ws.detached or ws.close_queued or ws.ended and kind != WS_OP_CLOSE:
        pthread_mutex_unlock(&ws.lock)
        return -1
    if (buffer_append(&ws.outgoing, <const char*>&head, WS_RECORD_HEAD) != 0
            or (length and buffer_append(&ws.outgoing, data, length) != 0)):
        pthread_mutex_unlock(&ws.lock)
        return -2
    if kind == WS_OP_CLOSE:
        ws.close_queued = True
    if ws.unsent + buffer_length(&ws.outgoing) > WS_WRITE_LIMIT:
        ws.want_drained = True
        result = 1
    push = not ws.on_outbox
    if push:
        ws.on_outbox = True
        fc_atomic_add_fetch(&ws.refs, 1)            # the outbox's reference
    pthread_mutex_unlock(&ws.lock)
    if push:
        wake = ws_outbox_push(home, ws)
        if wake:
            write(home.wake_fd, &one, sizeof(one))
    return result


cdef bint ws_outbox_push(Worker* home, WsChannel* ws) noexcept nogil:
    """Append to the worker's outbox; True when its inbox and outbox were both empty (wake it)."""
    cdef bint was_empty
    ws.next_outbox = NULL
    pthread_mutex_lock(&home.inbox_lock)
    was_empty = home.inbox_first == NULL and home.ws_outbox_first == NULL
    if home.ws_outbox_last != NULL:
        home.ws_outbox_last.next_outbox = ws
    else:
        home.ws_outbox_first = ws
    home.ws_outbox_last = ws
    pthread_mutex_unlock(&home.inbox_lock)
    return was_empty


cdef WsMessage* ws_take_message(WsChannel* ws) noexcept nogil:
    """The app's receive(): the oldest message, or NULL. When that takes a full queue below its
    limit, the worker is asked to read the socket again. The caller frees the message."""
    cdef WsMessage* message
    cdef bint push = False
    cdef uint64_t one = 1
    pthread_mutex_lock(&ws.lock)
    message = ws.received_first
    if message != NULL:
        ws.received_first = message.next
        if ws.received_first == NULL:
            ws.received_last = NULL
        ws.received_count -= 1
        if ws.reading_paused and not ws.resume_asked and ws.received_count < ws.max_queue and not ws.detached:
            ws.resume_asked = True
            if not ws.on_outbox:
                ws.on_outbox = True
                fc_atomic_add_fetch(&ws.refs, 1)
                push = True
    pthread_mutex_unlock(&ws.lock)
    if push and ws_outbox_push(ws.home, ws):
        write(ws.home.wake_fd, &one, sizeof(one))
    return message


cdef bint ws_output_waits(WsChannel* ws) noexcept nogil:
    """The app's send() should still wait: the output is not drained and the connection lives."""
    cdef bint waits
    pthread_mutex_lock(&ws.lock)
    waits = ws.want_drained and not ws.detached
    pthread_mutex_unlock(&ws.lock)
    return waits


cdef void ws_taken_from_ready(WsChannel* ws) noexcept nogil:
    """The loop took `ws` off the bridge's ready list: news from now on put it there again."""
    pthread_mutex_lock(&ws.lock)
    ws.on_ready = False
    pthread_mutex_unlock(&ws.lock)


cdef void ws_list_release(WsChannel* ws, bint ready_list) noexcept nogil:
    """Core.release(): drop the references of a list nobody will drain any more (a worker's outbox,
    filled after the worker ended, or the bridge's ready list after the loop stopped)."""
    cdef WsChannel* following
    while ws != NULL:
        following = ws.next_ready if ready_list else ws.next_outbox
        ws_channel_release(ws)
        ws = following


cdef bint ws_begin_python(WsChannel* ws) noexcept nogil:
    """Native callbacks: this thread delivers the channel's messages, unless another one is at it
    (it takes the new ones too: ws_take_or_end_python)."""
    cdef bint mine
    pthread_mutex_lock(&ws.lock)
    mine = not ws.in_python
    ws.in_python = True
    pthread_mutex_unlock(&ws.lock)
    return mine


cdef WsMessage* ws_take_or_end_python(WsChannel* ws) noexcept nogil:
    """ws_take_message for the delivering thread; when none is left, it stops delivering (in the
    same lock, so a message queued meanwhile is either taken now or notified anew)."""
    cdef WsMessage* message
    pthread_mutex_lock(&ws.lock)
    if ws.received_first == NULL:
        ws.in_python = False
        pthread_mutex_unlock(&ws.lock)
        return NULL
    pthread_mutex_unlock(&ws.lock)
    return ws_take_message(ws)

# websocket_native.pxi: native WebSockets (Server.add_websocket): callbacks in handler batches.
#
# Theory of operation. For a path registered with Server.add_websocket, the I/O worker accepts a
# valid handshake itself (websocket.pxi: ws_accept_native): no Python runs for the upgrade. From
# then on the connection lives in its worker exactly as an ASGI WebSocket does (frames, control
# frames, UTF-8, deflate, pings, the queue limit: websocket.pxi); only the consumer of its channel
# differs. Instead of an event loop, the channel's news go where native handlers run:
#
#   * inline mode: onto the worker's own list (ws_python_first), and the worker's handler batch
#     (batch.pxi) calls the callbacks under the GIL it takes anyway, at the end of the loop turn;
#   * handler threads: onto the bridge's ready list, and a handler thread takes the list.
#
# native_ws_deliver() takes a channel's messages in order and calls on_open (the first message,
# WS_EVENT_OPEN, carries the handshake for ws.request), on_message, and on_close (the last,
# WS_EVENT_CLOSED), so one connection's callbacks never overlap (`in_python`, websocket.pxi, keeps a
# second handler thread out). The WebSocket object is the channel's owner: C holds a reference to
# it from on_open until on_close. ws.send() only queues a record and wakes the worker
# (ws_queue_send), so it never blocks, from any thread; it returns False when more than
# WS_WRITE_LIMIT bytes wait unsent (a slow client: the app decides what to drop).

from cpython.ref cimport Py_INCREF, Py_DECREF


@cython.auto_pickle(False)
@cython.final
cdef class WebSocket:
    """A native WebSocket connection (Server.add_websocket): given to on_open, on_message and
    on_close. send() and close() may be called from any thread."""
    cdef WsChannel* channel           # until on_close has run
    cdef object route                 # fastcore.websocket.WebSocketRoute
    cdef readonly Request request     # the handshake: path, query, headers, remote_addr
    cdef readonly bint closed         # close() was called, or the connection ended
    cdef dict _state                  # the app's own, per connection (made at first use)

    def __dealloc__(self):
        if self.channel != NULL:
            ws_channel_release(self.channel)
            self.channel = NULL

    @property
    def state(self):
        """A dict of the app's own, per connection (made at first use: an idle connection that
        never uses it does not carry one)."""
        if self._state is None:
            self._state = {}
        return self._state

    def send(self, message):
        """Queue a message (str: text, bytes-like: binary). True, or False when more than 64 KiB
        of this connection's output waits unsent. ClientDisconnected once it is closing or closed."""
        cdef int sent
        cdef const char* data
        cdef Py_ssize_t length
        cdef uint32_t kind = WS_OP_TEXT
        if self.channel == NULL or self.closed:
            raise _errors.ClientDisconnected("the WebSocket is closed")
        if type(message) is str:
            data = PyUnicode_AsUTF8AndSize(message, &length)
        else:
            if type(message) is not bytes:
                if not isinstance(message, (bytes, bytearray, memoryview)):
                    raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
                message = bytes(message)
            data = PyBytes_AS_STRING(message)
            length = PyBytes_GET_SIZE(message)
            kind = WS_OP_BINARY
        sent = ws_queue_send(self.channel, kind, data, length)
        if sent == -1:
            raise _errors.ClientDisconnected("the WebSocket is closed")
        if sent == -2:
            raise MemoryError()
        return sent == 0

    def close(self, int code=1000, str reason=""):
        """Start the close handshake with `code` and `reason`; on_close follows with the client's
        answer. Closing a closed WebSocket does nothing."""
        cdef bytes payload
        _ws_check_close({"type": "websocket.close", "code": code, "reason": reason})
        if self.channel == NULL or self.closed:
            return
        self.closed = True
        payload = code.to_bytes(2, "big") + reason.encode("utf-8")
        ws_queue_send(self.channel, WS_OP_CLOSE, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))

    def __repr__(self):
        return f"<fastcore.WebSocket {self.route.path!r}{' closed' if self.closed else ''}>"


cdef WebSocket native_ws_opened(Core core, WsChannel* ws, WsMessage* message):
    """WS_EVENT_OPEN: the WebSocket object, with the handshake as its request; C owns a reference."""
    cdef WsOpenInfo* info = <WsOpenInfo*>(message + 1)
    cdef WebSocket socket_object = WebSocket.__new__(WebSocket)
    cdef Request request = Request.__new__(Request)
    cdef ParsedRequest* parsed = &info.request
    request._head = PyBytes_FromStringAndSize(<const char*>(info + 1), parsed.head_length)
    request._body = _EMPTY
    request._method_length = parsed.method_length
    request._target_offset = parsed.target_offset
    request._target_length = parsed.target_length
    request._path_offset = parsed.path_offset
    request._path_length = parsed.path_length
    request._version_minor = parsed.version_minor
    request._peer = info.peer
    request._proxies = core.proxies
    socket_object.request = request
    socket_object.route = core.ws_routes[message.code]
    socket_object.channel = ws
    ws.owner = <void*>socket_object
    Py_INCREF(socket_object)
    return socket_object


cdef void native_ws_event(Core core, WsChannel* ws, WsMessage* message) noexcept:
    """One message of a native WebSocket: its callback. A callback that raises is logged and the
    connection is closed with 1011."""
    cdef WebSocket socket_object = None
    cdef const char* data = <const char*>(message + 1)
    cdef int kind = message.kind
    try:
        if kind == WS_EVENT_OPEN:
            socket_object = native_ws_opened(core, ws, message)
            if socket_object.route.on_open is not None:
                socket_object.route.on_open(socket_object)
            return
        if ws.owner == NULL:
            return
        socket_object = <WebSocket>ws.owner
        if kind == WS_OP_TEXT:
            socket_object.route.on_message(socket_object, _decode_utf8(data, message.length, NULL))
        elif kind == WS_OP_BINARY:
            socket_object.route.on_message(socket_object, PyBytes_FromStringAndSize(data, message.length))
        else:                                       # WS_EVENT_CLOSED: the last one
            socket_object.closed = True
            ws.owner = NULL
            try:
                if socket_object.route.on_close is not None:
                    socket_object.route.on_close(socket_object, message.code,
                                                 _decode_utf8(data, message.length, "replace"))
            finally:
                socket_object.channel = NULL
                ws_channel_release(ws)              # the Python side's reference
                Py_DECREF(socket_object)            # C's, from on_open
    except BaseException as error:
        try:
            _error_log.exception("WebSocket callback failed on %s",
                                 socket_object.route.path if socket_object is not None else "?")
            if kind != WS_EVENT_CLOSED and socket_object is not None and not socket_object.closed:
                socket_object.closed = True
                ws_queue_send(ws, WS_OP_CLOSE, b"\x03\xf3", 2)             # 1011
        except BaseException:
            pass
    finally:
        free(message)


cdef void native_ws_deliver(Core core, WsChannel* ws) noexcept:
    """A channel taken from a ready list: its callbacks, in order, unless another thread is
    delivering it (which then takes these messages too). Drops the list's reference."""
    cdef WsMessage* message
    if ws_begin_python(ws):
        while True:
            message = ws_take_or_end_python(ws)
            if message == NULL:
                break
            native_ws_event(core, ws, message)
    ws_channel_release(ws)


cdef void native_ws_deliver_list(Core core, WsChannel* ws) noexcept:
    cdef WsChannel* following
    while ws != NULL:
        following = ws.next_ready
        ws_taken_from_ready(ws)
        native_ws_deliver(core, ws)
        ws = following

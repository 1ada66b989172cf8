# asgi_websocket.pxi: the ASGI websocket scope on the compiled core: one cycle per connection.
#
# Theory of operation. The worker checked the handshake in C (websocket.pxi: ws_check_upgrade) and
# handed the request over as any other (asgi.pxi: asgi_drain); asgi_start_websocket builds the
# scope and starts the app's task. Until the app answers, the cycle holds the connection, as an
# HTTP cycle does, and the answer is written here into the output:
#
#   * websocket.accept: the 101 (Sec-WebSocket-Accept computed in C, permessage-deflate negotiated
#     in C, the app's subprotocol and headers checked by fastcore.websocket's rules), a WsChannel
#     for the connection, and the connection goes back to its worker for good;
#   * websocket.close before accepting: 403; websocket.http.response.*: that response (the denial
#     extension); an app that fails or returns first: 500. The connection then closes.
#
# After the accept the cycle never touches the connection: receive() takes messages from the
# channel (ws_take_message) and waits, when there are none, until the loop is told through the
# bridge's ready list (asgi_websockets_ready, from asgi_drain); send() appends a record to the
# channel for the worker to frame, and waits only beyond WS_WRITE_LIMIT unsent bytes. The worker
# does all the protocol; the last message it queues is the end (WS_EVENT_CLOSED), which receive()
# turns into websocket.disconnect, once.

from cpython.unicode cimport PyUnicode_DecodeUTF8 as _decode_utf8, PyUnicode_AsUTF8AndSize

cdef str _TYPE_WEBSOCKET = "websocket"
cdef dict _WS_CONNECT = {"type": "websocket.connect"}
cdef str _WS_RECEIVE = "websocket.receive"
cdef bytes _WS_101_HEAD = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"

cdef enum WebSocketAnswer:
    WS_UNANSWERED = 0                 # the app has not accepted or refused yet (the cycle holds the connection)
    WS_DENYING = 1                    # websocket.http.response.start came; its body is awaited
    WS_ACCEPTED = 2                   # the channel carries everything now
    WS_REFUSED = 3                    # 403, a denial response, or 500: the connection is closing


@cython.auto_pickle(False)
@cython.final
@cython.no_gc_clear                   # __dealloc__ counts the cycle out on its core: keep `core` till then
cdef class WebSocketCycle:
    """One WebSocket connection's ASGI cycle: receive() and send() of the app's call."""
    cdef Core core
    cdef Conn* conn                   # valid only while the answer is WS_UNANSWERED or WS_DENYING
    cdef WsChannel* channel           # after the accept, until the app's call ends
    cdef WebSocketAnswer answer
    cdef bint connect_given
    cdef bint disconnect_given
    cdef list subprotocols
    cdef object denial_status, denial_headers
    cdef list denial_body
    cdef object readable              # receive() waits here for a message (Future)
    cdef object drained               # send() waits here for the output to drain (Future)
    cdef object task

    def __dealloc__(self):
        if self.channel != NULL:
            self.channel.owner = NULL
            ws_channel_release(self.channel)
            self.channel = NULL
        if self.core is not None:
            fc_debug_count(self.core.state.debug_counters, FC_LIVE_ASGI_CYCLES, -1)

    # -- receive ------------------------------------------------------------------------------

    async def receive(self):
        cdef WsMessage* message
        if not self.connect_given:
            self.connect_given = True
            return _WS_CONNECT.copy()
        if self.disconnect_given:
            raise _errors.ClientDisconnected("websocket.disconnect was received already")
        if self.channel == NULL:
            if self.answer != WS_REFUSED:
                raise RuntimeError("receive() before websocket.accept: accept (or close) first")
            self.disconnect_given = True
            return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        while True:
            message = ws_take_message(self.channel)
            if message != NULL:
                return self._message(message)
            self.readable = self.core.asgi_loop.create_future()
            try:
                await self.readable
            finally:
                self.readable = None

    cdef object _message(self, WsMessage* message):
        """A received message (or the end) as the app gets it; frees it."""
        cdef const char* data = <const char*>(message + 1)
        try:
            if message.kind == WS_OP_TEXT:
                return {"type": _WS_RECEIVE, "text": _decode_utf8(data, message.length, NULL)}
            if message.kind == WS_OP_BINARY:
                return {"type": _WS_RECEIVE, "bytes": PyBytes_FromStringAndSize(data, message.length)}
            self.disconnect_given = True
            return {"type": "websocket.disconnect", "code": message.code,
                    "reason": _decode_utf8(data, message.length, "replace")}
        finally:
            free(message)

    cdef void wake(self) except *:
        """The worker has news (asgi_websockets_ready): a message, the end, or the output drained."""
        if self.readable is not None and not self.readable.done():
            self.readable.set_result(None)
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # -- send ---------------------------------------------------------------------------------

    async def send(self, message):
        cdef int sent
        cdef const char* data
        cdef Py_ssize_t length
        kind = message["type"]
        if kind == "websocket.send":
            if self.channel == NULL:
                if self.answer == WS_REFUSED:
                    raise _errors.ClientDisconnected("the WebSocket was refused")
                raise RuntimeError("websocket.send before websocket.accept")
            payload = _ws_check_send(message)
            if type(payload) is str:
                data = PyUnicode_AsUTF8AndSize(payload, &length)
                sent = ws_queue_send(self.channel, WS_OP_TEXT, data, length)
            else:
                sent = ws_queue_send(self.channel, WS_OP_BINARY, PyBytes_AS_STRING(payload),
                                     PyBytes_GET_SIZE(payload))
            if sent == -1:
                raise _errors.ClientDisconnected("the WebSocket is closed")
            if sent == -2:
                raise MemoryError()
            while sent == 1 and self.channel != NULL and ws_output_waits(self.channel):
                self.drained = self.core.asgi_loop.create_future()
                try:
                    await self.drained          # the worker is sending: backpressure
                finally:
                    self.drained = None
            return
        if kind == "websocket.accept":
            if self.answer != WS_UNANSWERED:
                raise RuntimeError("websocket.accept after the handshake was answered")
            subprotocol, headers = _ws_check_accept(message, self.subprotocols)
            self._accept(subprotocol, headers)
            return
        if kind == "websocket.close":
            code, reason = _ws_check_close(message)
            if self.answer == WS_UNANSWERED:
                self._refuse(Response(b"", 403))
                return
            if self.channel == NULL:
                raise _errors.ClientDisconnected("the WebSocket is closed")
            payload = code.to_bytes(2, "big") + reason.encode("utf-8")
            sent = ws_queue_send(self.channel, WS_OP_CLOSE, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))
            if sent == -1:
                raise _errors.ClientDisconnected("the WebSocket is closed")
            return
        if kind == "websocket.http.response.start":
            if self.answer != WS_UNANSWERED:
                raise RuntimeError("websocket.http.response.start after the handshake was answered")
            asgi_check_start(self.core.asgi_checked_fields, message)
            self.denial_status = message["status"]
            self.denial_headers = message.get("headers") or ()
            self.denial_body = []
            self.answer = WS_DENYING
            return
        if kind == "websocket.http.response.body":
            if self.answer != WS_DENYING:
                raise RuntimeError("websocket.http.response.body without websocket.http.response.start")
            self.denial_body.append(_body_bytes(message))
            if not message.get("more_body", False):
                self._refuse(Response(b"".join(self.denial_body), self.denial_status, self.denial_headers))
            return
        raise RuntimeError(f"unknown ASGI message type {kind!r} for a websocket scope")

    cdef void _accept(self, object subprotocol, object headers) except *:
        """The 101, the channel, and the connection back to its worker for good."""
        cdef Conn* conn = self.conn
        cdef Worker* context = self.core.asgi_context
        cdef WsHandshake handshake
        cdef WsDeflateParams params
        cdef char accept[28]
        cdef char extension[256]
        cdef size_t extension_length = 0
        cdef bint deflate = False
        cdef const char* head = conn.input.data + conn.input.start
        cdef size_t head_length = conn.request.head_length
        cdef WsChannel* channel
        ws_handshake_check(head, head_length, True, 1, False, &handshake)
        ws_accept_value(handshake.key, handshake.key_length, accept)
        if self.core.state.ws_deflate:
            deflate = ws_deflate_negotiate(head, head_length, &params, extension, sizeof(extension),
                                           &extension_length) == 1
        parts = [_WS_101_HEAD, b"Sec-WebSocket-Accept: ", PyBytes_FromStringAndSize(accept, 28), b"\r\n"]
        if subprotocol is not None:
            parts += [b"Sec-WebSocket-Protocol: ", subprotocol.encode("latin-1"), b"\r\n"]
        if deflate:
            parts += [b"Sec-WebSocket-Extensions: ", PyBytes_FromStringAndSize(extension, extension_length), b"\r\n"]
        for name, value in headers:
            parts += [name, b": ", value, b"\r\n"]
        date_refresh(&context.date)
        parts += [self.core.serializer.server_field, PyBytes_FromStringAndSize(context.date.line, context.date.length),
                  b"\r\n"]
        response = b"".join(parts)
        channel = ws_channel_new(conn, &self.core.state)
        if channel == NULL:
            raise MemoryError()
        if buffer_append(&conn.output, PyBytes_AS_STRING(response), PyBytes_GET_SIZE(response)) != 0:
            ws_channel_release(channel)
            ws_channel_release(channel)
            raise MemoryError()
        if deflate and ws_channel_deflate(channel, &params) != 0:
            ws_channel_release(channel)
            ws_channel_release(channel)
            raise MemoryError()
        channel.owner = <void*>self
        count_response(context, 101)
        conn.ws = channel
        self.channel = channel
        self.answer = WS_ACCEPTED
        finish_request(conn, conn.request.request_length)   # what follows the head is frames
        self._give_back()

    cdef void _refuse(self, Response response) except *:
        """Answer the handshake with an HTTP response (403, a denial, a 500) and close."""
        cdef Conn* conn = self.conn
        cdef Worker* context = self.core.asgi_context
        cdef size_t output_before = buffer_length(&conn.output)
        conn_close_after(conn, CLOSE_AFTER_RESPONSE)
        date_refresh(&context.date)
        try:
            self.core.serializer.append_response(context, conn, response, False)
        except BaseException:
            response_rollback(context, conn, output_before)
            append_error_response(context, conn, 500)
            self.answer = WS_REFUSED
            finish_request(conn, conn.request.request_length)
            self._give_back()
            raise
        self.answer = WS_REFUSED
        finish_request(conn, conn.request.request_length)
        self._give_back()

    cdef void _give_back(self) except *:
        cdef Conn* conn = self.conn
        self.conn = NULL
        asgi_give_back(self.core, conn)

    # -- the end of the app's call ----------------------------------------------------------------

    cdef void app_ended(self, object error, object scope) except *:
        """The app's call returned (error None) or raised. Unanswered: 500 (503 when a stop's
        deadline cancelled it). Accepted: our close, 1000 (returned) or 1011 (raised), unless the
        connection is over already; then the channel is let go."""
        cdef bint cancelled = error is not None and isinstance(error, _asyncio.CancelledError)
        cdef bytes payload
        if self.answer == WS_UNANSWERED or self.answer == WS_DENYING:
            if error is None:
                error = RuntimeError("the ASGI app returned without accepting or closing the WebSocket")
            if not cancelled:
                self.core.asgi.log_failure(scope, error)
            else:
                fc_atomic_add64(&self.core.state.requests_cut_at_stop, 1)
            self._refuse(Response(b"", 503 if cancelled else 500))
            return
        if self.channel == NULL:
            return
        if error is not None and not cancelled and not isinstance(error, _errors.ClientDisconnected):
            self.core.asgi.log_failure(scope, error)
        payload = (1000 if error is None else 1001 if cancelled else 1011).to_bytes(2, "big")
        ws_queue_send(self.channel, WS_OP_CLOSE, PyBytes_AS_STRING(payload), 2)     # -1: over already
        self.channel.owner = NULL
        ws_channel_release(self.channel)
        self.channel = NULL


async def _run_websocket(app, scope, WebSocketCycle cycle):
    """The task of one WebSocket connection: the app's call, then whatever it left unfinished."""
    try:
        await app(scope, cycle.receive, cycle.send)
    except BaseException as error:
        cycle.app_ended(error, scope)
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
    else:
        cycle.app_ended(None, scope)
    finally:
        cycle.core.asgi_tasks.discard(cycle.task)
        cycle.task = None


cdef void asgi_start_websocket(Core core, Conn* conn) except *:
    """A valid handshake: its scope, its cycle (which holds the connection until the app answers),
    its task."""
    cdef WebSocketCycle cycle = WebSocketCycle.__new__(WebSocketCycle)
    scope = asgi_scope(core.asgi, conn, core.proxies)
    scope["type"] = _TYPE_WEBSOCKET
    scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
    del scope["method"]
    cycle.subprotocols = _ws_subprotocols(scope["headers"])     # fastcore.websocket.subprotocols
    scope["subprotocols"] = list(cycle.subprotocols)
    scope["extensions"] = {"websocket.http.response": {}}
    cycle.core = core
    cycle.conn = conn
    fc_debug_count(core.state.debug_counters, FC_LIVE_ASGI_CYCLES, 1)
    cycle.task = asgi_new_task(core, _run_websocket(core.asgi.app, scope, cycle))
    core.asgi_tasks.add(cycle.task)


cdef void asgi_websockets_ready(Core core, WsChannel* ws) except *:
    """From asgi_drain: wake the apps whose connections have news (the list's references go)."""
    cdef WsChannel* following
    while ws != NULL:
        following = ws.next_ready
        ws_taken_from_ready(ws)
        if ws.owner != NULL:
            (<WebSocketCycle>ws.owner).wake()
        ws_channel_release(ws)
        ws = following


cdef object _ws_check_accept = None   # fastcore.websocket's rules, shared with the pure engine
cdef object _ws_check_send = None
cdef object _ws_check_close = None
cdef object _ws_subprotocols = None


cdef void asgi_import_websocket_rules():
    global _ws_check_accept, _ws_check_send, _ws_check_close, _ws_subprotocols
    if _ws_check_accept is None:
        from fastcore.websocket import check_accept, check_close, check_send, subprotocols
        _ws_check_accept, _ws_check_send, _ws_check_close = check_accept, check_send, check_close
        _ws_subprotocols = subprotocols

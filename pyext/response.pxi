# response.pxi: responses the core writes without Python: static routes, errors, the canned 503.
#
# Every response carries Server, Date and exactly one framing field (Content-Length). The Date
# field is formatted at most once a second per worker (date_refresh at the top of each loop turn)
# and copied into responses as a ready-made line.

cdef enum:
    ZERO_COPY_BODY_MIN = 16384        # larger bodies are not copied into the output buffer

cdef const char* WEEKDAY_NAMES = "SunMonTueWedThuFriSat"
cdef const char* MONTH_NAMES = "JanFebMarAprMayJunJulAugSepOctNovDec"


cdef inline void _two_digits(char* out, int value) noexcept nogil:
    out[0] = <char>(48 + value // 10)
    out[1] = <char>(48 + value % 10)


cdef void date_refresh(DateCache* date) noexcept nogil:
    """Reformat the Date line if the second has changed (IMF-fixdate, RFC 9110 5.6.7)."""
    cdef time_t now = time(NULL)
    cdef tm parts
    cdef char* out = date.line
    cdef int year
    if now == date.second and date.length:
        return
    gmtime_r(&now, &parts)
    year = parts.tm_year + 1900
    memcpy(out, b"Date: ", 6)
    memcpy(out + 6, WEEKDAY_NAMES + 3 * parts.tm_wday, 3)
    out[9] = 44
    out[10] = 32
    _two_digits(out + 11, parts.tm_mday)
    out[13] = 32
    memcpy(out + 14, MONTH_NAMES + 3 * parts.tm_mon, 3)
    out[17] = 32
    _two_digits(out + 18, year // 100)
    _two_digits(out + 20, year % 100)
    out[22] = 32
    _two_digits(out + 23, parts.tm_hour)
    out[25] = 58
    _two_digits(out + 26, parts.tm_min)
    out[28] = 58
    _two_digits(out + 29, parts.tm_sec)
    memcpy(out + 31, b" GMT\r\n", 6)
    date.length = 37
    date.second = now


cdef const char* status_reason(int status) noexcept nogil:
    """Reason phrases for the statuses the core produces on its own."""
    if status == 200: return "OK"
    if status == 400: return "Bad Request"
    if status == 404: return "Not Found"
    if status == 408: return "Request Timeout"
    if status == 413: return "Content Too Large"
    if status == 414: return "URI Too Long"
    if status == 417: return "Expectation Failed"
    if status == 426: return "Upgrade Required"
    if status == 431: return "Request Header Fields Too Large"
    if status == 500: return "Internal Server Error"
    if status == 501: return "Not Implemented"
    if status == 503: return "Service Unavailable"
    if status == 505: return "HTTP Version Not Supported"
    return "Error"


cdef int append_connection_field(Buffer* out, const Conn* conn) noexcept nogil:
    """Connection: close when we will close; keep-alive spelled out only for HTTP/1.0 clients."""
    if not conn.keep_alive:
        return buffer_append(out, b"Connection: close\r\n", 19)
    if conn.request.version_minor == 0:
        return buffer_append(out, b"Connection: keep-alive\r\n", 24)
    return 0


cdef inline void count_response(Worker* worker, int status) noexcept nogil:
    cdef int status_class = status // 100
    fc_counter_add(&worker.counters.responses[status_class if 1 <= status_class <= 5 else 0], 1)


cdef int append_error_response(Worker* worker, Conn* conn, int status) noexcept nogil:
    """A short text/plain response with the status's reason as body."""
    return append_error_response_with(worker, conn, status, NULL, 0)


cdef int append_error_response_with(Worker* worker, Conn* conn, int status, const char* field,
                                    size_t field_length) noexcept nogil:
    """append_error_response, with one more header field (CRLF-terminated; NULL: none), as a 426's
    Sec-WebSocket-Version."""
    cdef Buffer* out = &conn.output
    count_response(worker, status)
    cdef const char* reason = status_reason(status)
    cdef size_t reason_length = strlen(reason)
    cdef int failed = 0
    failed |= buffer_append(out, b"HTTP/1.1 ", 9)
    failed |= buffer_append_decimal(out, status)
    failed |= buffer_append(out, b" ", 1)
    failed |= buffer_append(out, reason, reason_length)
    failed |= buffer_append(out, b"\r\n", 2)
    failed |= buffer_append(out, worker.server.server_field, worker.server.server_field_length)
    failed |= buffer_append(out, worker.date.line, worker.date.length)
    if field != NULL:
        failed |= buffer_append(out, field, field_length)
    failed |= buffer_append(out, b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ", 57)
    failed |= buffer_append_decimal(out, reason_length + 1)
    failed |= buffer_append(out, b"\r\n", 2)
    failed |= append_connection_field(out, conn)
    failed |= buffer_append(out, b"\r\n", 2)
    if not conn.request.is_head:
        failed |= buffer_append(out, reason, reason_length)
        failed |= buffer_append(out, b"\n", 1)
    return failed


cdef const StaticRoute* find_static_route(const ServerState* server, const char* path, size_t path_length) noexcept nogil:
    cdef size_t i
    cdef const StaticRoute* route
    for i in range(server.route_count):
        route = &server.routes[i]
        if route.path_length == path_length and memcmp(route.path, path, path_length) == 0:
            return route
    return NULL


cdef int append_static_response(Worker* worker, Conn* conn, const StaticRoute* route, bint head_only) noexcept nogil:
    cdef Buffer* out = &conn.output
    cdef int failed = 0
    count_response(worker, route.status)
    failed |= buffer_append(out, route.head, route.head_length)
    failed |= buffer_append(out, worker.date.line, worker.date.length)
    failed |= append_connection_field(out, conn)
    failed |= buffer_append(out, b"\r\n", 2)
    if head_only:
        pass
    elif route.body_length >= ZERO_COPY_BODY_MIN:
        conn.body_data = route.body                     # sent from the route's own memory
        conn.body_remaining = route.body_length
    else:
        failed |= buffer_append(out, route.body, route.body_length)
    return failed


cdef void send_canned_503(ServerState* server, int fd) noexcept nogil:
    """Best effort, never blocking: the listener refuses a connection (queue full, or too many open)."""
    cdef char response[512]
    cdef size_t length = 0
    cdef const char* status_line = b"HTTP/1.1 503 Service Unavailable\r\n"
    cdef const char* rest = (b"Content-Type: text/plain\r\nContent-Length: 20\r\nRetry-After: 1\r\n"
                             b"Connection: close\r\n\r\nService Unavailable\n")
    date_refresh(&server.listener_date)
    memcpy(response, status_line, strlen(status_line))
    length += strlen(status_line)
    if server.server_field_length < 256:
        memcpy(response + length, server.server_field, server.server_field_length)
        length += server.server_field_length
    memcpy(response + length, server.listener_date.line, server.listener_date.length)
    length += server.listener_date.length
    memcpy(response + length, rest, strlen(rest))
    length += strlen(rest)
    send(fd, response, length, MSG_NOSIGNAL | MSG_DONTWAIT)

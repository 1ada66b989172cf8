# access.pxi: the access log of the responses the core writes itself, without the GIL.
#
# Theory of operation. Responses from Python are logged in Python (fastcore/access.py's wrappers,
# the WSGI adapter, the ASGI middleware). The ones the core answers alone never reach Python: static
# routes, the 404 of a server without a handler, and every protocol error (400, 408, 413, 414, 417,
# 431, 501, 505, ...). With access_log on, the worker that writes such a response formats its line
# here, in C, in fastcore/access.py's format, and appends it to its own `access_lines` buffer under
# its `access_lock` (uncontended but for the moment a Python thread takes the lines). That thread
# (fastcore/server.py: _AccessLines) takes every worker's lines a few times a second with
# Core.take_access_lines() and writes each on the "fastcore.access" logger, so the logging
# configuration decides where they go, and no worker waits for the GIL or for a terminal.
#
# Memory stays bounded: a worker holds at most ACCESS_LINES_MAX bytes of lines. When the logger does
# not keep up (a Python logging call costs far more than a static route's answer), the worker waits
# for it to take them, as nginx waits for its log file: the log costs throughput, never lines. A
# logger that takes nothing for ACCESS_WAIT_MS (stuck, or gone) makes it drop the line instead,
# counted in stats()["access_lines_dropped"].
#
# A line needs when its request began: conn.request_started_us, set when the first byte of a head
# is seen (only with access_log on: one clock read per request). The request line of a head that
# could not be parsed is what the client sent up to its first CR or LF, with bytes outside printable
# ASCII (and '"', '\') written as '?', cut at ACCESS_RAW_LINE_MAX, as nginx logs garbage.

cdef extern from "<time.h>" nogil:
    tm* localtime_r(const time_t* timep, tm* result)
    size_t strftime(char* s, size_t maximum, const char* format, const tm* parts)

cdef extern from "<stdio.h>" nogil:
    int snprintf(char* s, size_t n, const char* format, ...)

cdef enum:
    ACCESS_LINE_MAX = 1536            # a longer request target is cut to fit
    ACCESS_REQUEST_MAX = 768          # of which the request line
    ACCESS_LINES_MAX = 4194304        # bytes of lines a worker holds before it waits for the logger
    ACCESS_WAIT_MS = 1000             # how long it waits at most; then the line is dropped (counted)
    ACCESS_RAW_LINE_MAX = 256         # bytes of an unparsed request line that are logged


cdef inline void access_log_request_started(Worker* worker, Conn* conn) noexcept nogil:
    if worker.server.access_log:
        conn.request_started_us = fc_now_us()


cdef size_t access_raw_request_line(const Conn* conn, char* out, size_t room) noexcept nogil:
    """The unparsed request line, made safe to log (see the top of this file)."""
    cdef const char* data = conn.input.data + conn.input.start
    cdef size_t available = buffer_length(&conn.input), i, n = 0
    cdef unsigned char c
    for i in range(min(available, min(room, <size_t>ACCESS_RAW_LINE_MAX))):
        c = <unsigned char>data[i]
        if c == 13 or c == 10:
            break
        out[n] = <char>c if 32 <= c < 127 and c != 34 and c != 92 else 63      # '?'
        n += 1
    if n == 0:
        out[0] = 45                                     # "-"
        n = 1
    return n


cdef void access_log_core_response(Worker* worker, Conn* conn, int status, size_t body_bytes) noexcept nogil:
    """Log a response the core wrote itself (status, body bytes) for the connection's current request."""
    cdef char line[ACCESS_LINE_MAX]
    cdef char address[INET6_ADDRSTRLEN + 1]
    cdef char request[ACCESS_REQUEST_MAX]
    cdef char bytes_text[24]
    cdef tm parts
    cdef time_t now
    cdef int length
    cdef size_t request_length
    cdef const char* data = conn.input.data + conn.input.start
    cdef const ParsedRequest* parsed = &conn.request
    cdef long long elapsed_us = fc_now_us() - conn.request_started_us if conn.request_started_us else 0
    if not worker.server.access_log:
        return
    now = time(NULL)
    if now != worker.access_second:
        localtime_r(&now, &parts)
        strftime(worker.access_time, sizeof(worker.access_time), "%d/%b/%Y:%H:%M:%S %z", &parts)
        worker.access_second = now
    if conn.peer.any.sa_family == AF_INET:
        inet_ntop(AF_INET, &conn.peer.v4.sin_addr, address, sizeof(address))
    elif conn.peer.any.sa_family == AF_INET6:
        inet_ntop(AF_INET6, &conn.peer.v6.sin6_addr, address, sizeof(address))
    else:
        address[0] = 45                                 # "-": a unix socket
        address[1] = 0
    if parsed.method_length:
        length = snprintf(request, sizeof(request), "%.*s %.*s HTTP/1.%d", <int>parsed.method_length, data,
                          <int>min(parsed.target_length, <size_t>(sizeof(request) - 64)),
                          data + parsed.target_offset, <int>parsed.version_minor)
        request_length = <size_t>length if 0 < length < <int>sizeof(request) else sizeof(request) - 1
    else:
        request_length = access_raw_request_line(conn, request, sizeof(request) - 1)
    request[request_length] = 0
    if body_bytes:
        snprintf(bytes_text, sizeof(bytes_text), "%zu", body_bytes)
    else:
        bytes_text[0] = 45
        bytes_text[1] = 0
    length = snprintf(line, sizeof(line), "%s - - [%s] \"%s\" %d %s %lldus\n", address, worker.access_time,
                      request, status, bytes_text, elapsed_us if elapsed_us > 0 else 0)
    if length <= 0:
        return
    if length >= <int>sizeof(line):
        length = sizeof(line) - 1
        line[length - 1] = 10
    pthread_mutex_lock(&worker.access_lock)
    if buffer_length(&worker.access_lines) + <size_t>length > ACCESS_LINES_MAX:
        fc_cond_wait_ms(&worker.access_taken, &worker.access_lock, ACCESS_WAIT_MS)    # as nginx waits for its file
    if (buffer_length(&worker.access_lines) + <size_t>length > ACCESS_LINES_MAX
            or buffer_append(&worker.access_lines, line, <size_t>length) != 0):
        fc_atomic_add64(&worker.server.access_lines_dropped, 1)     # the logger is gone or stuck
    pthread_mutex_unlock(&worker.access_lock)


cdef inline void access_log_error_response(Worker* worker, Conn* conn, int status) noexcept nogil:
    """Log an error answer of the core (its body: the reason phrase and a newline, none for HEAD)."""
    if worker.server.access_log:
        access_log_core_response(worker, conn, status,
                                 0 if conn.request.is_head else strlen(status_reason(status)) + 1)

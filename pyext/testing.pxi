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
    }


def debug_counters():
    """What a debug build (FASTCORE_DEBUG=1) counted for every server of this process together:
    live connections, buffers and response bodies held for streaming, descriptors and epoll
    registrations the core holds, and state machine events that were illegal in their phase
    (Core.debug_counters() gives one server's). None in a release build, which does not count."""
    if not fc_debug_build:
        return None
    return debug_counts(NULL)

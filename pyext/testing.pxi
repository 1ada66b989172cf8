# testing.pxi: test-only entry points into the nogil parser (for unit, differential and fuzz tests).

def parse_request_head(bytes data, *, Py_ssize_t max_request_line=8190, Py_ssize_t max_head_size=32768,
                       Py_ssize_t max_header_count=100, long long max_body_size=1 << 40):
    """Run head_scan + parse_head over `data` as one arrival.

    Returns ("need-more", None), ("error", status) or ("ok", fields) where fields is a dict with
    head_length, method, target, path, version, content_length (None if absent), keep_alive."""
    cdef Limits limits
    cdef HeadScan scan
    cdef ParsedRequest request
    cdef Py_ssize_t result
    cdef const char* raw = PyBytes_AS_STRING(data)
    limits.max_request_line = max_request_line
    limits.max_head_size = max_head_size
    limits.max_header_count = max_header_count
    limits.max_body_size = max_body_size
    memset(&scan, 0, sizeof(scan))
    result = head_scan(raw, PyBytes_GET_SIZE(data), &scan, &limits)
    if result == 0:
        return ("need-more", None)
    if result < 0:
        return ("error", -result)
    result = parse_head(raw, <size_t>result, &request, &limits)
    if result < 0:
        return ("error", -result)
    return ("ok", {
        "head_length": request.head_length,
        "method": data[:request.method_length].decode("ascii"),
        "target": data[request.target_offset:request.target_offset + request.target_length].decode("latin-1"),
        "path": data[request.target_offset:request.target_offset + request.path_length].decode("latin-1"),
        "version": "1.%d" % request.version_minor,
        "content_length": None if request.content_length < 0 else request.content_length,
        "connection_close": bool(request.connection_close),
        "connection_keep_alive": bool(request.connection_keep_alive),
    })

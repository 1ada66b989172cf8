# parser.pxi: the HTTP/1.1 request-head parser (RFC 9112), stateless and allocation-free.
#
# Theory of operation. Parsing happens in two steps over the connection's read buffer:
#   1. head_scan() looks for the blank line that ends the head. It is incremental: a HeadScan
#      remembers how far the previous call got, so a head trickled in byte by byte is scanned once,
#      not once per byte. It already rejects a bare LF (400) and enforces the request-line (414)
#      and head-size (431) limits while the head is still incomplete.
#   2. parse_head() walks the complete head once, validating every byte, and fills a ParsedRequest
#      with offsets (never pointers: the buffer may move) and the header facts the server acts on
#      (Content-Length, Transfer-Encoding, Host, Connection, Expect).
# head_scan() returns the head's length, 0 for "need more bytes", or -400/-414/-431; parse_head()
# returns 0 or -400/-431/-501/-505: a negative HTTP status is the error to answer before closing.
# chunked_decode() (below) returns the request's length, 0, or -400/-413/-431. None reads past `length`.
#
# Strict on purpose (request smuggling lives in lenient parsers): CRLF only, no obs-fold, no
# whitespace before the colon, token bytes only in the method and field names, no control bytes in
# field values, Content-Length digits only and at most once, exactly one Host on HTTP/1.1.

cdef enum:
    PARSE_NEED_MORE = 0
    CONTENT_LENGTH_MAX_DIGITS = 18      # 10**18 - 1 fits in int64_t with room to spare

ctypedef struct Limits:
    size_t max_request_line
    size_t max_head_size
    size_t max_header_count
    int64_t max_body_size
    int64_t body_buffer_size          # larger bodies are streamed to the handler, not held whole

ctypedef struct HeadScan:
    size_t position             # bytes already searched for LF
    size_t line_start           # start of the line being scanned
    size_t request_line_end     # 0 until the request line's LF has been seen

ctypedef struct ParsedRequest:
    size_t head_length          # bytes from the method to the blank line's LF, inclusive
    size_t method_length        # the method starts at offset 0
    size_t target_offset
    size_t target_length
    size_t path_offset          # the path inside the target (after scheme://authority in absolute-form)
    size_t path_length          # path bytes, up to '?'
    int version_minor           # HTTP/1.<minor>, 0 or 1
    bint is_head                # HEAD: the response carries no body
    int64_t content_length      # -1 when absent
    size_t body_length          # known once the body is complete (decoded length when chunked)
    size_t request_length       # bytes the whole request occupies in the buffer, once complete
    int header_count
    int host_count
    bint has_transfer_encoding
    bint chunked                # Transfer-Encoding ends with chunked (the body is chunk-framed)
    bint transfer_coding_unknown  # a coding other than chunked (501: we decode none)
    int chunked_count           # times `chunked` appears across all Transfer-Encoding fields
    bint connection_close
    bint connection_keep_alive
    bint expect_continue        # Expect: 100-continue
    bint expect_unknown         # any other expectation (417)


# tchar from RFC 9110 section 5.6.2: "!#$%&'*+-.^_`|~", digits and letters.
cdef uint8_t TOKEN_BYTE[256]
# Field value bytes (RFC 9110 5.5): HTAB, SP, VCHAR, obs-text. Not CR, LF, NUL, other controls, DEL.
cdef uint8_t FIELD_VALUE_BYTE[256]
# Request-target bytes (RFC 9112 3.2, RFC 3986): visible ASCII only. Not a control byte or a space,
# not obs-text (bytes >= 0x80: clients percent-encode, and a raw byte's meaning depends on a charset
# nobody declared) and not '#' (a fragment is never sent: RFC 9110 7.1). Any of those is a 400.
cdef uint8_t TARGET_BYTE[256]
# Host field value bytes (RFC 9112 3.2, RFC 3986 3.2.2): uri-host [":" port], so unreserved,
# pct-encoded, sub-delims, ':' and the brackets of an IP literal. Not '/', '@', '?', '#', spaces.
cdef uint8_t HOST_BYTE[256]


cdef void _init_byte_classes() noexcept:
    cdef int i
    cdef bytes specials = b"!#$%&'*+-.^_`|~"
    for i in range(256):
        TOKEN_BYTE[i] = (48 <= i <= 57) or (65 <= i <= 90) or (97 <= i <= 122)
        FIELD_VALUE_BYTE[i] = i == 9 or (32 <= i <= 126) or i >= 128
        TARGET_BYTE[i] = 33 <= i <= 126 and i != 35          # '#'
    for i in specials:
        TOKEN_BYTE[i] = 1
    for i in range(256):
        HOST_BYTE[i] = (48 <= i <= 57) or (65 <= i <= 90) or (97 <= i <= 122)
    for i in b"-._~%!$&'()*+,;=:[]":
        HOST_BYTE[i] = 1

_init_byte_classes()


cdef inline uint8_t ascii_lower(uint8_t c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef bint equals_lowercase(const char* data, size_t length, const char* lowercase_literal) noexcept nogil:
    """Case-insensitive comparison of data[:length] with a lowercase C literal of the same length."""
    cdef size_t i
    for i in range(length):
        if ascii_lower(<uint8_t>data[i]) != <uint8_t>lowercase_literal[i]:
            return False
    return lowercase_literal[length] == 0


cdef Py_ssize_t head_scan(const char* data, size_t length, HeadScan* scan, const Limits* limits) noexcept nogil:
    """Find the end of the head in data[:length]. Returns the head length, 0, or -status."""
    cdef const char* newline
    cdef size_t at
    while scan.position < length:
        newline = <const char*>memchr(data + scan.position, 10, length - scan.position)
        if newline == NULL:
            scan.position = length
            break
        at = newline - data
        if at == scan.line_start or data[at - 1] != 13:
            return -400                                 # bare LF (an LF not preceded by CR)
        if scan.request_line_end == 0:
            if at - 1 > limits.max_request_line:
                return -414
            scan.request_line_end = at + 1
        elif at - 1 == scan.line_start:
            # The empty line: the head is complete.
            if at + 1 > limits.max_head_size:
                return -431
            return at + 1
        scan.line_start = at + 1
        scan.position = at + 1
    if scan.request_line_end == 0 and length > limits.max_request_line + 1:
        return -414
    if length > limits.max_head_size:
        return -431
    return PARSE_NEED_MORE


cdef int parse_content_length(const char* value, size_t length, int64_t* out) noexcept nogil:
    cdef size_t i
    cdef int64_t result = 0
    cdef uint8_t c
    if length == 0 or length > CONTENT_LENGTH_MAX_DIGITS:
        return -400                                     # empty, or large enough to overflow
    for i in range(length):
        c = <uint8_t>value[i]
        if c < 48 or c > 57:
            return -400                                 # signs, spaces, commas, anything not a digit
        result = result * 10 + (c - 48)
    out[0] = result
    return 0


cdef void parse_transfer_codings(const char* value, size_t length, ParsedRequest* request) noexcept nogil:
    """Transfer-Encoding is a comma-separated list of codings (with optional parameters); fields
    accumulate in order. Only the last coding may be `chunked`; anything else is a coding we do
    not decode."""
    cdef size_t i = 0, start, end
    while i < length:
        while i < length and (value[i] == 32 or value[i] == 9 or value[i] == 44):
            i += 1
        if i >= length:
            break
        start = i
        while i < length and value[i] != 44:
            i += 1
        end = i
        while end > start and (value[end - 1] == 32 or value[end - 1] == 9):
            end -= 1
        if end - start == 7 and equals_lowercase(value + start, 7, "chunked"):
            request.chunked_count += 1
            request.chunked = True
        else:
            request.transfer_coding_unknown = True
            request.chunked = False                     # chunked is no longer the last coding


cdef void parse_connection_options(const char* value, size_t length, ParsedRequest* request) noexcept nogil:
    """Connection is a comma-separated token list; only `close` and `keep-alive` matter here."""
    cdef size_t i = 0, start, end
    while i < length:
        while i < length and (value[i] == 32 or value[i] == 9 or value[i] == 44):
            i += 1
        start = i
        while i < length and value[i] != 44:
            i += 1
        end = i
        while end > start and (value[end - 1] == 32 or value[end - 1] == 9):
            end -= 1
        if end - start == 5 and equals_lowercase(value + start, 5, "close"):
            request.connection_close = True
        elif end - start == 10 and equals_lowercase(value + start, 10, "keep-alive"):
            request.connection_keep_alive = True


cdef int locate_path(const char* data, ParsedRequest* request) noexcept nogil:
    """Find the path in the request-target (RFC 9112 section 3.2): origin-form "/p?q", absolute-form
    "http://host/p?q", asterisk-form "*" (OPTIONS only), authority-form "host:port" (CONNECT only)."""
    cdef const char* target = data + request.target_offset
    cdef size_t length = request.target_length, start = 0, end
    if target[0] == 47:                                 # '/': origin-form
        start = 0
    elif length == 1 and target[0] == 42:               # '*'
        if not (request.method_length == 7 and memcmp(data, b"OPTIONS", 7) == 0):
            return -1
        request.path_offset = request.target_offset
        request.path_length = 1
        return 0
    elif request.method_length == 7 and memcmp(data, b"CONNECT", 7) == 0:
        request.path_offset = request.target_offset    # authority-form: no path, keep it whole
        request.path_length = length
        return 0
    elif length > 7 and equals_lowercase(target, 7, "http://"):
        start = 7
    elif length > 8 and equals_lowercase(target, 8, "https://"):
        start = 8
    else:
        return -1
    if start:
        while start < length and target[start] != 47 and target[start] != 63:
            start += 1                                  # skip the authority
    end = start
    while end < length and target[end] != 63:           # '?' ends the path
        end += 1
    request.path_offset = request.target_offset + start
    request.path_length = end - start
    return 0


cdef int parse_request_line(const char* data, size_t line_end, ParsedRequest* request) noexcept nogil:
    """data[:line_end] is the request line without its CRLF. Returns 0 or -status."""
    cdef size_t i = 0
    cdef const char* version
    while i < line_end and TOKEN_BYTE[<uint8_t>data[i]]:
        i += 1
    if i == 0 or i >= line_end or data[i] != 32:
        return -400
    request.method_length = i
    request.is_head = i == 4 and memcmp(data, b"HEAD", 4) == 0
    i += 1
    request.target_offset = i
    while i < line_end and TARGET_BYTE[<uint8_t>data[i]]:
        i += 1
    request.target_length = i - request.target_offset
    if request.target_length == 0 or i >= line_end or data[i] != 32:
        return -400
    if locate_path(data, request) != 0:
        return -400
    i += 1
    # HTTP-version = "HTTP/" DIGIT "." DIGIT, then the line ends.
    if line_end - i != 8 or memcmp(data + i, b"HTTP/", 5) != 0:
        return -400
    version = data + i + 5
    if not (48 <= version[0] <= 57 and version[1] == 46 and 48 <= version[2] <= 57):
        return -400
    if version[0] != 49 or version[2] > 49:
        return -505
    request.version_minor = version[2] - 48
    return 0


cdef int parse_header_field(const char* line, size_t length, ParsedRequest* request) noexcept nogil:
    """One field line without its CRLF. Returns 0 or -status."""
    cdef size_t name_length = 0, value_start, value_end, i
    cdef int status
    if length == 0 or line[0] == 32 or line[0] == 9:
        return -400                                     # obs-fold (a continuation line)
    while name_length < length and TOKEN_BYTE[<uint8_t>line[name_length]]:
        name_length += 1
    if name_length == 0 or name_length >= length or line[name_length] != 58:
        return -400                                     # empty name, whitespace or junk before ':'
    value_start = name_length + 1
    while value_start < length and (line[value_start] == 32 or line[value_start] == 9):
        value_start += 1
    value_end = length
    while value_end > value_start and (line[value_end - 1] == 32 or line[value_end - 1] == 9):
        value_end -= 1
    for i in range(value_start, value_end):
        if not FIELD_VALUE_BYTE[<uint8_t>line[i]]:
            return -400                                 # control bytes, a bare CR, DEL
    request.header_count += 1

    if name_length == 4 and equals_lowercase(line, 4, "host"):
        request.host_count += 1
        for i in range(value_start, value_end):
            if not HOST_BYTE[<uint8_t>line[i]]:
                return -400                             # an invalid Host value (RFC 9112 3.2)
    elif name_length == 14 and equals_lowercase(line, 14, "content-length"):
        if request.content_length != -1:
            return -400                                 # several Content-Length fields
        status = parse_content_length(line + value_start, value_end - value_start, &request.content_length)
        if status != 0:
            return status
    elif name_length == 17 and equals_lowercase(line, 17, "transfer-encoding"):
        request.has_transfer_encoding = True
        if value_end == value_start:
            return -400                                 # an empty Transfer-Encoding: ambiguous framing
        parse_transfer_codings(line + value_start, value_end - value_start, request)
    elif name_length == 6 and equals_lowercase(line, 6, "expect"):
        if value_end - value_start == 12 and equals_lowercase(line + value_start, 12, "100-continue"):
            request.expect_continue = True
        else:
            request.expect_unknown = True
    elif name_length == 10 and equals_lowercase(line, 10, "connection"):
        parse_connection_options(line + value_start, value_end - value_start, request)
    return 0


cdef int parse_head(const char* data, size_t head_length, ParsedRequest* request, const Limits* limits) noexcept nogil:
    """Validate a complete head (as found by head_scan) and fill `request`. Returns 0 or -status."""
    cdef size_t line_start, line_end
    cdef const char* newline
    cdef int status
    memset(request, 0, sizeof(ParsedRequest))
    request.head_length = head_length
    request.content_length = -1
    newline = <const char*>memchr(data, 10, head_length)
    line_end = newline - data - 1                       # head_scan guaranteed the CR before it
    status = parse_request_line(data, line_end, request)
    if status != 0:
        return status
    line_start = line_end + 2
    while True:
        newline = <const char*>memchr(data + line_start, 10, head_length - line_start)
        line_end = newline - data - 1
        if line_end == line_start:
            break                                       # the blank line
        if <size_t>request.header_count >= limits.max_header_count:
            return -431
        status = parse_header_field(data + line_start, line_end - line_start, request)
        if status != 0:
            return status
        line_start = line_end + 2
    if request.has_transfer_encoding:
        if request.content_length != -1 or request.version_minor == 0:
            return -400                                 # smuggling shapes: CL with TE, TE on 1.0
        if not request.chunked or request.chunked_count != 1:
            return -400                                 # RFC 9112 6.3: the final coding must be chunked, once
        if request.transfer_coding_unknown:
            return -501                                 # e.g. gzip, chunked: a coding we do not decode
    if request.version_minor == 1 and request.host_count != 1:
        return -400
    if request.host_count > 1:
        return -400
    return 0


# -- chunked request bodies (RFC 9112 section 7.1) ----------------------------------------------
#
# The body is decoded in place: chunk data is moved down so that the decoded body follows the head
# contiguously, data[head_length:decoded_end]. Decoded bytes never outrun encoded ones, so the move
# never overwrites bytes not yet read. The decoder is resumable: ChunkedBody remembers where it is,
# and every byte is examined once however the body arrives.

cdef enum ChunkPhase:
    CHUNK_SIZE_LINE = 0
    CHUNK_DATA = 1
    CHUNK_DATA_CRLF = 2
    CHUNK_TRAILER = 3

cdef enum:
    CHUNK_SIZE_MAX_DIGITS = 15          # 16**15 - 1 fits in int64_t; the body limit bites far earlier
    CHUNK_LINE_MAX = 4096               # a size line with its extensions

ctypedef struct ChunkedBody:
    ChunkPhase phase
    size_t body_start                   # = head_length: where the decoded body begins
    size_t decoded_before               # body bytes decoded and already handed on (streamed bodies)
    size_t read_offset                  # next encoded byte, from the start of the request
    size_t decoded_end                  # end of the decoded body, from the start of the request
    uint64_t chunk_remaining
    size_t trailer_bytes


cdef inline bint is_whitespace(char c) noexcept nogil:
    return c == 32 or c == 9


cdef int validate_chunk_extensions(const char* text, size_t length) noexcept nogil:
    """chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] ).
    Whitespace is allowed only where BWS stands: never at the end of the line (RFC 9112 7.1.1)."""
    cdef size_t i = 0, start, after_name
    cdef uint8_t c
    while True:
        if i == length:
            return 0
        while i < length and is_whitespace(text[i]):
            i += 1
        if i == length or text[i] != 59:                    # trailing whitespace, or not ';'
            return -400
        i += 1
        while i < length and is_whitespace(text[i]):
            i += 1
        start = i
        while i < length and TOKEN_BYTE[<uint8_t>text[i]]:
            i += 1
        if i == start:
            return -400
        after_name = i
        while i < length and is_whitespace(text[i]):
            i += 1
        if i >= length or text[i] != 61:                    # no '=': the BWS belongs to a next ';'
            i = after_name
        else:                                               # '='
            i += 1
            while i < length and is_whitespace(text[i]):
                i += 1
            if i < length and text[i] == 34:                # quoted-string
                i += 1
                while True:
                    if i >= length:
                        return -400
                    c = <uint8_t>text[i]
                    if c == 34:
                        i += 1
                        break
                    if c == 92:                             # quoted-pair
                        if i + 1 >= length or not FIELD_VALUE_BYTE[<uint8_t>text[i + 1]]:
                            return -400
                        i += 2
                        continue
                    if not FIELD_VALUE_BYTE[c]:
                        return -400
                    i += 1
            else:
                start = i
                while i < length and TOKEN_BYTE[<uint8_t>text[i]]:
                    i += 1
                if i == start:
                    return -400


cdef int validate_field_line(const char* line, size_t length) noexcept nogil:
    """A trailer field: the same rules as a header field; its value is not used."""
    cdef ParsedRequest ignored                          # framing fields in trailers are not acted on
    memset(&ignored, 0, sizeof(ignored))
    ignored.content_length = -1
    return parse_header_field(line, length, &ignored)


cdef Py_ssize_t chunked_decode(char* request, size_t available, ChunkedBody* body, const Limits* limits) noexcept nogil:
    """Advance the decoder over request[:available]. Returns the encoded length of the whole request
    once the last chunk and the trailer section are in, 0 for more bytes, or -status."""
    cdef const char* newline
    cdef size_t line_start, line_length, i, n
    cdef uint64_t size
    cdef uint8_t c
    cdef int status
    while True:
        if body.phase == CHUNK_SIZE_LINE or body.phase == CHUNK_TRAILER:
            line_start = body.read_offset
            newline = <const char*>memchr(request + line_start, 10, available - line_start)
            if newline == NULL:
                if body.phase == CHUNK_SIZE_LINE and available - line_start > CHUNK_LINE_MAX:
                    return -400
                if body.phase == CHUNK_TRAILER and body.trailer_bytes + (available - line_start) > limits.max_head_size:
                    return -431
                return PARSE_NEED_MORE
            line_length = newline - (request + line_start)
            if line_length == 0 or request[line_start + line_length - 1] != 13:
                return -400                                 # bare LF
            line_length -= 1
            if body.phase == CHUNK_SIZE_LINE and line_length > CHUNK_LINE_MAX:
                return -400                                 # the same verdict however the line arrives
            body.read_offset = line_start + line_length + 2
            if body.phase == CHUNK_TRAILER:
                if line_length == 0:
                    return <Py_ssize_t>body.read_offset     # the end of the message
                body.trailer_bytes += line_length + 2
                if body.trailer_bytes > limits.max_head_size:
                    return -431
                status = validate_field_line(request + line_start, line_length)
                if status != 0:
                    return status
                continue
            size = 0
            i = 0
            while i < line_length:
                c = <uint8_t>request[line_start + i]
                if 48 <= c <= 57:
                    size = size * 16 + (c - 48)
                elif 97 <= c <= 102:
                    size = size * 16 + (c - 87)
                elif 65 <= c <= 70:
                    size = size * 16 + (c - 55)
                else:
                    break
                i += 1
                if i > CHUNK_SIZE_MAX_DIGITS:
                    return -400                             # overflowing chunk size
            if i == 0:
                return -400                                 # no hex digits
            status = validate_chunk_extensions(request + line_start + i, line_length - i)
            if status != 0:
                return status
            if size == 0:
                body.phase = CHUNK_TRAILER
                continue
            if <int64_t>(body.decoded_before + body.decoded_end - body.body_start + size) > limits.max_body_size:
                return -413
            body.chunk_remaining = size
            body.phase = CHUNK_DATA
        elif body.phase == CHUNK_DATA:
            n = available - body.read_offset
            if n == 0:
                return PARSE_NEED_MORE
            if n > body.chunk_remaining:
                n = <size_t>body.chunk_remaining
            if body.decoded_end != body.read_offset:
                memmove(request + body.decoded_end, request + body.read_offset, n)
            body.decoded_end += n
            body.read_offset += n
            body.chunk_remaining -= n
            if body.chunk_remaining == 0:
                body.phase = CHUNK_DATA_CRLF
        else:                                               # CHUNK_DATA_CRLF
            n = available - body.read_offset
            if n >= 1 and request[body.read_offset] != 13:
                return -400
            if n < 2:
                return PARSE_NEED_MORE
            if request[body.read_offset + 1] != 10:
                return -400
            body.read_offset += 2
            body.phase = CHUNK_SIZE_LINE

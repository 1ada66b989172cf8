# websocket_deflate.pxi: permessage-deflate (RFC 7692): the offer negotiation, and zlib's raw DEFLATE
# for whole outgoing messages and for incoming frames, bounded by the message size limit.
#
# Theory of operation.
#   Negotiation: ws_deflate_negotiate() reads every Sec-WebSocket-Extensions field of the head, each
#   a comma list of offers `name; param[=value]; ...` (values may be quoted), and takes the first
#   permessage-deflate offer whose parameters it knows, each at most once, with values in range
#   (RFC 7692 7.1); any other offer is declined and the next one tried. The answer always carries
#   server_no_context_takeover, so no message refers to an earlier one and a connection needs no
#   compressor of its own; it echoes client_no_context_takeover and server_max_window_bits when
#   offered, and client_max_window_bits (the offered value, at most 12; 12 without one) when offered.
#   Outgoing: ws_deflate() compresses one whole message with a fresh raw stream (window
#   2^DEFLATE_WINDOW_BITS, or the client's server_max_window_bits if smaller), flushes with
#   Z_SYNC_FLUSH and drops the 00 00 FF FF that flush ends with (7.2.1). The stream is the
#   worker's (WsCompressor), reset before each message, so no connection holds one.
#   Incoming: the inflater is created at the first compressed message and kept while the client
#   uses context takeover (its window is the next message's dictionary); with
#   client_no_context_takeover it is reset after each message. ws_inflate() inflates a frame's
#   payload into the caller's Buffer without ever letting it pass max_size by more than one byte:
#   a small compressed frame that would inflate to gigabytes (a "deflate bomb") is stopped there
#   with 1009, having cost at most max_size + 1 bytes of output. A message must end between two
#   DEFLATE blocks once its tail is added (else 1007: the next message could not be read); a
#   sender that ends its stream with a BFINAL block instead gets the rest of that message ignored
#   and a fresh stream for the next one.
#
# Memory (zlib 1.2.13, measured with a counting allocator): a deflater with window 2^12 and
# memLevel 5 allocates 38,720 bytes, once per I/O worker (WsCompressor; zlib's formula:
# 2^(windowBits+2) + 2^(memLevel+9) plus its 5.7 KiB state); 2^12 / 5 compresses JSON as well as
# zlib's defaults (2^15 / 8, 268,096 bytes) and English text about 10 % worse. An inflater is
# 7,160 bytes from its creation, plus its window (2^bits bytes: 32 KiB for a client that does not
# limit its window) once a message has been inflated; it is kept while the connection lives. A
# client that offers client_max_window_bits (browsers and python-websockets do) is asked for 2^12,
# which makes that window 4 KiB (11,256 bytes with the inflater's state).

cdef extern from "<zlib.h>" nogil:
    ctypedef unsigned char Bytef
    ctypedef unsigned int uInt
    ctypedef unsigned long uLong
    ctypedef struct z_stream:
        Bytef* next_in                # const in fact; zlib.h says so only with ZLIB_CONST
        uInt avail_in
        uLong total_in
        Bytef* next_out
        uInt avail_out
        uLong total_out
        const char* msg
        void* zalloc
        void* zfree
        void* opaque
        int data_type                 # after inflate(): + 128 when stopped between two blocks
    enum:
        Z_OK
        Z_STREAM_END
        Z_NEED_DICT
        Z_STREAM_ERROR
        Z_DATA_ERROR
        Z_MEM_ERROR
        Z_BUF_ERROR
        Z_SYNC_FLUSH
        Z_DEFLATED
        Z_DEFAULT_STRATEGY
        Z_DEFAULT_COMPRESSION
    int deflateInit2(z_stream* strm, int level, int method, int windowBits, int memLevel, int strategy)
    int zlib_deflate "deflate"(z_stream* strm, int flush)   # renamed: `deflate` is our parameters' name
    int deflateEnd(z_stream* strm)
    int deflateReset(z_stream* strm)
    uLong deflateBound(z_stream* strm, uLong sourceLen)
    int inflateInit2(z_stream* strm, int windowBits)
    int zlib_inflate "inflate"(z_stream* strm, int flush)
    int inflateReset(z_stream* strm)
    int inflateEnd(z_stream* strm)

cdef enum:
    DEFLATE_WINDOW_BITS = 12          # our compressor's window (see "Memory" above)
    DEFLATE_MEM_LEVEL = 5
    DEFLATE_MIN_WINDOW_BITS = 9       # zlib cannot write a raw stream with a 256-byte window (8)
    INFLATE_CHUNK = 16384             # output room asked for per inflate() call
    ZLIB_INPUT_STEP = 1 << 30         # avail_in is 32 bits: larger inputs go in steps
    WS_EXTENSION_VALUE_MAX = 16       # a parameter value longer than this is out of range anyway
    ZLIB_AT_BLOCK_BOUNDARY = 128      # z_stream.data_type's flag: inflate() stopped between blocks

ctypedef struct WsDeflateParams:
    bint client_no_context_takeover
    int client_max_window_bits        # 8..15 (15 when not negotiated)
    int server_window_bits            # our deflater's window: 9..DEFLATE_WINDOW_BITS (added field)

ctypedef struct WsDeflate:            # one per compressed connection, used by its I/O worker only
    WsDeflateParams params
    z_stream inflater                 # lazily initialised on the first compressed message
    bint inflater_ready
    bint stream_ended                 # the sender's stream ended (BFINAL) inside the current message (added field)

ctypedef struct WsCompressor:         # one per I/O worker, for every message it compresses
    z_stream stream
    int window_bits                   # the stream's window (0: not initialised yet)

# What one permessage-deflate offer said, while it is read.
ctypedef struct WsDeflateOffer:
    bint acceptable
    bint server_no_context_takeover
    bint client_no_context_takeover
    bint client_max_window_bits       # the parameter was present
    int client_max_window_bits_value  # 0 when it came without a value
    int server_max_window_bits        # 0 when absent

cdef const unsigned char* WS_DEFLATE_TAIL = b"\x00\x00\xff\xff"


cdef inline size_t skip_whitespace(const char* text, size_t i, size_t length) noexcept nogil:
    while i < length and (text[i] == 32 or text[i] == 9):
        i += 1
    return i


cdef size_t skip_to_next_offer(const char* text, size_t i, size_t length) noexcept nogil:
    """The index of the next comma outside a quoted string (or length)."""
    cdef bint quoted = False
    while i < length:
        if quoted:
            if text[i] == 92:                           # backslash: the next byte is literal
                i += 1
            elif text[i] == 34:
                quoted = False
        elif text[i] == 34:
            quoted = True
        elif text[i] == 44:
            return i
        i += 1
    return length


cdef int parse_window_bits(const char* value, size_t length) noexcept nogil:
    """RFC 7692 7.1.2: a decimal 8..15 without leading zeros; -1 otherwise."""
    if length == 1 and 56 <= value[0] <= 57:
        return value[0] - 48                            # 8 or 9
    if length == 2 and value[0] == 49 and 48 <= value[1] <= 53:
        return 10 + value[1] - 48                       # 10..15
    return -1


cdef void apply_deflate_parameter(WsDeflateOffer* offer, const char* name, size_t name_length,
                                  bint has_value, const char* value, size_t value_length) noexcept nogil:
    """One parameter of a permessage-deflate offer; unknown, repeated or out-of-range ones make the
    offer unacceptable."""
    cdef int bits
    if name_length == 26 and equals_lowercase(name, 26, "server_no_context_takeover"):
        if has_value or offer.server_no_context_takeover:
            offer.acceptable = False
        offer.server_no_context_takeover = True
    elif name_length == 26 and equals_lowercase(name, 26, "client_no_context_takeover"):
        if has_value or offer.client_no_context_takeover:
            offer.acceptable = False
        offer.client_no_context_takeover = True
    elif name_length == 22 and equals_lowercase(name, 22, "server_max_window_bits"):
        bits = parse_window_bits(value, value_length) if has_value else -1
        # A window zlib can write (>= 9); we then compress with min(ours, bits).
        if offer.server_max_window_bits or bits < DEFLATE_MIN_WINDOW_BITS:
            offer.acceptable = False
        offer.server_max_window_bits = bits if bits > 0 else 1
    elif name_length == 22 and equals_lowercase(name, 22, "client_max_window_bits"):
        bits = parse_window_bits(value, value_length) if has_value else 0
        if offer.client_max_window_bits or bits < 0:
            offer.acceptable = False
        offer.client_max_window_bits = True
        offer.client_max_window_bits_value = bits
    else:
        offer.acceptable = False


cdef bint append_text(char* response, size_t capacity, size_t* used, const char* text,
                      size_t length) noexcept nogil:
    if capacity - used[0] < length:
        return False
    memcpy(response + used[0], text, length)
    used[0] += length
    return True


cdef bint append_window_bits(char* response, size_t capacity, size_t* used, const char* name,
                             size_t name_length, int bits) noexcept nogil:
    cdef char digits[2]
    cdef size_t count = 1
    if bits >= 10:
        digits[0] = 49
        digits[1] = <char>(48 + bits - 10)
        count = 2
    else:
        digits[0] = <char>(48 + bits)
    return (append_text(response, capacity, used, "; ", 2)
            and append_text(response, capacity, used, name, name_length)
            and append_text(response, capacity, used, "=", 1)
            and append_text(response, capacity, used, digits, count))


cdef bint ws_deflate_accept(const WsDeflateOffer* offer, WsDeflateParams* params, char* response,
                            size_t capacity, size_t* response_length) noexcept nogil:
    """Fill params and the response value for an acceptable offer; False when it does not fit."""
    cdef size_t used = 0
    cdef int server_bits = DEFLATE_WINDOW_BITS
    cdef int client_bits = 15
    if offer.server_max_window_bits and offer.server_max_window_bits < server_bits:
        server_bits = offer.server_max_window_bits
    if offer.client_max_window_bits:
        # The client lets us choose its window (RFC 7692 7.1.2.2): our inflater keeps one per
        # connection for as long as it lives (2^bits bytes), so we ask for DEFLATE_WINDOW_BITS,
        # as our own compressor uses: 11 KiB per compressing connection instead of 39 KiB.
        client_bits = DEFLATE_WINDOW_BITS
        if offer.client_max_window_bits_value and offer.client_max_window_bits_value < client_bits:
            client_bits = offer.client_max_window_bits_value
    if not append_text(response, capacity, &used, "permessage-deflate; server_no_context_takeover", 46):
        return False
    if offer.client_no_context_takeover and not append_text(
            response, capacity, &used, "; client_no_context_takeover", 28):
        return False
    if offer.server_max_window_bits and not append_window_bits(
            response, capacity, &used, "server_max_window_bits", 22, server_bits):
        return False
    if offer.client_max_window_bits and not append_window_bits(
            response, capacity, &used, "client_max_window_bits", 22, client_bits):
        return False
    params.client_no_context_takeover = offer.client_no_context_takeover
    params.client_max_window_bits = client_bits
    params.server_window_bits = server_bits
    response_length[0] = used
    return True


cdef bint ws_deflate_offers(const char* text, size_t length, WsDeflateParams* params, char* response,
                            size_t capacity, size_t* response_length) noexcept nogil:
    """The offers of one Sec-WebSocket-Extensions value, in order: True when one was accepted."""
    cdef size_t i = 0, start, name_length, parameter_length, value_length
    cdef const char* parameter
    cdef char value[WS_EXTENSION_VALUE_MAX]
    cdef bint has_value
    cdef WsDeflateOffer offer
    while i < length:
        while i < length and (text[i] == 32 or text[i] == 9 or text[i] == 44):
            i += 1
        if i >= length:
            break
        start = i
        while i < length and TOKEN_BYTE[<uint8_t>text[i]]:
            i += 1
        name_length = i - start
        memset(&offer, 0, sizeof(offer))
        offer.acceptable = name_length == 18 and equals_lowercase(text + start, 18, "permessage-deflate")
        i = skip_whitespace(text, i, length)
        while offer.acceptable and i < length and text[i] == 59:      # ';'
            i = skip_whitespace(text, i + 1, length)
            parameter = text + i
            while i < length and TOKEN_BYTE[<uint8_t>text[i]]:
                i += 1
            parameter_length = <size_t>(text + i - parameter)
            if parameter_length == 0:
                offer.acceptable = False
                break
            i = skip_whitespace(text, i, length)
            has_value = False
            value_length = 0
            if i < length and text[i] == 61:                          # '='
                has_value = True
                i = skip_whitespace(text, i + 1, length)
                if i < length and text[i] == 34:                      # a quoted-string
                    i += 1
                    while i < length and text[i] != 34:
                        if text[i] == 92 and i + 1 < length:
                            i += 1
                        if value_length < WS_EXTENSION_VALUE_MAX:
                            value[value_length] = text[i]
                        value_length += 1
                        i += 1
                    if i >= length:
                        offer.acceptable = False                      # no closing quote
                        break
                    i += 1
                else:
                    while i < length and TOKEN_BYTE[<uint8_t>text[i]]:
                        if value_length < WS_EXTENSION_VALUE_MAX:
                            value[value_length] = text[i]
                        value_length += 1
                        i += 1
                if value_length > WS_EXTENSION_VALUE_MAX:
                    value_length = 0                                  # too long: no valid value
                i = skip_whitespace(text, i, length)
            apply_deflate_parameter(&offer, parameter, parameter_length, has_value, value, value_length)
        if i < length and text[i] != 44:
            offer.acceptable = False                                  # junk after the offer
        if offer.acceptable and ws_deflate_accept(&offer, params, response, capacity, response_length):
            return True
        i = skip_to_next_offer(text, i, length)
    return False


cdef int ws_deflate_negotiate(const char* head, size_t head_length, WsDeflateParams* params,
                              char* response, size_t capacity, size_t* response_length) noexcept nogil:
    """Every Sec-WebSocket-Extensions field of the head, offers in order: 1 when one is accepted
    (params set, and response[:response_length] the value for the 101), 0 when none is."""
    cdef size_t position = 0, name_length, value_length
    cdef const char* name
    cdef const char* value
    response_length[0] = 0
    while ws_next_field(head, head_length, &position, &name, &name_length, &value, &value_length):
        if name_length == 24 and equals_lowercase(name, 24, "sec-websocket-extensions"):
            if ws_deflate_offers(value, value_length, params, response, capacity, response_length):
                return 1
    return 0


cdef int ws_deflate_init(WsDeflate* deflate, const WsDeflateParams* params) noexcept nogil:
    """Ready a connection's compression state; allocates nothing (zlib allocates on first use)."""
    memset(deflate, 0, sizeof(WsDeflate))
    deflate.params = params[0]
    if deflate.params.server_window_bits < DEFLATE_MIN_WINDOW_BITS or \
            deflate.params.server_window_bits > DEFLATE_WINDOW_BITS:
        deflate.params.server_window_bits = DEFLATE_WINDOW_BITS
    return 0


cdef int ws_inflate_input(WsDeflate* deflate, const unsigned char* data, size_t length, Buffer* out,
                          size_t max_size) noexcept nogil:
    """Inflate data[:length] into out, never letting out hold more than max_size + 1 bytes:
    0, 1009 (past max_size), 1007 (corrupt), -1 (no memory)."""
    cdef z_stream* stream = &deflate.inflater
    cdef size_t room, used, step
    cdef int result
    cdef uInt available_out
    stream.next_in = <Bytef*>data
    stream.avail_in = 0
    while True:
        if stream.avail_in == 0 and length > 0:
            step = length if length < ZLIB_INPUT_STEP else ZLIB_INPUT_STEP
            stream.next_in = <Bytef*>data
            stream.avail_in = <uInt>step
            data += step
            length -= step
        used = buffer_length(out)
        if used > max_size:
            return 1009
        room = max_size + 1 - used                       # one byte past the limit tells it is passed
        if room > INFLATE_CHUNK or room == 0:
            room = INFLATE_CHUNK                        # (room == 0: max_size + 1 wrapped around)
        if buffer_reserve(out, room) != 0:
            return -1
        stream.next_out = <Bytef*>(out.data + out.end)
        stream.avail_out = available_out = <uInt>room
        result = zlib_inflate(stream, Z_SYNC_FLUSH)
        out.end += available_out - stream.avail_out
        if result == Z_MEM_ERROR:
            return -1
        if result != Z_OK and result != Z_BUF_ERROR and result != Z_STREAM_END:
            return 1007                                 # Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR
        if buffer_length(out) > max_size:
            return 1009
        if result == Z_STREAM_END:
            # The sender ended its DEFLATE stream with a BFINAL block (RFC 7692 7.2.3.5): what may
            # follow in this message is the empty block of 7.2.1, which carries nothing.
            deflate.stream_ended = True
            return 0
        if stream.avail_in == 0 and length == 0 and (stream.avail_out != 0 or result == Z_BUF_ERROR):
            return 0                                    # input used up and nothing left pending
        if result == Z_BUF_ERROR and stream.avail_out != 0:
            return 1007                                 # no progress with input and room: cannot happen


cdef int ws_inflate(WsDeflate* deflate, const unsigned char* data, size_t length, bint final,
                    Buffer* out, size_t max_size) noexcept nogil:
    """Append the inflation of one frame's payload to out (final: the message's last frame, which
    also gets the 00 00 FF FF tail). 0 ok; 1009 when buffer_length(out) would pass max_size (out
    then holds at most max_size + 1 bytes: nothing more is inflated); 1007 corrupt data, or a
    message that does not end on a block boundary; -1 no memory. After a non-zero result the
    stream is unusable (the connection is closed anyway)."""
    cdef int status = 0, window_bits
    if not deflate.inflater_ready:
        window_bits = deflate.params.client_max_window_bits
        # A zlib client told "8" writes with 9 (zlib has no raw 256-byte window); a larger window
        # than the sender's always inflates correctly.
        if window_bits < DEFLATE_MIN_WINDOW_BITS or window_bits > 15:
            window_bits = 15 if window_bits > 15 else DEFLATE_MIN_WINDOW_BITS
        memset(&deflate.inflater, 0, sizeof(z_stream))
        if inflateInit2(&deflate.inflater, -window_bits) != Z_OK:
            return -1
        deflate.inflater_ready = True
        deflate.stream_ended = False
    if not deflate.stream_ended:
        status = ws_inflate_input(deflate, data, length, out, max_size)
    if status != 0 or not final:
        return status
    if deflate.stream_ended:
        # A new stream for the next message; the old window is gone with it (a sender that ends
        # its streams cannot refer back to them anyway).
        deflate.stream_ended = False
        inflateReset(&deflate.inflater)
        return 0
    status = ws_inflate_input(deflate, WS_DEFLATE_TAIL, 4, out, max_size)
    if status == 0 and deflate.stream_ended:
        deflate.stream_ended = False
        inflateReset(&deflate.inflater)
    elif status == 0 and not (deflate.inflater.data_type & ZLIB_AT_BLOCK_BOUNDARY):
        return 1007                                     # the message stopped inside a block
    if status == 0 and deflate.params.client_no_context_takeover:
        inflateReset(&deflate.inflater)
    return status


cdef int ws_compressor_ready(WsCompressor* compressor, int window_bits) noexcept nogil:
    """A fresh stream with this window: reset (a message never refers to the one before it: we
    always answer server_no_context_takeover), or initialised anew the first time or for another
    window. 0, or -1 out of memory."""
    if compressor.window_bits == window_bits:
        return 0 if deflateReset(&compressor.stream) == Z_OK else -1
    ws_compressor_free(compressor)
    memset(&compressor.stream, 0, sizeof(z_stream))
    if deflateInit2(&compressor.stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -window_bits,
                    DEFLATE_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK:
        return -1
    compressor.window_bits = window_bits
    return 0


cdef void ws_compressor_free(WsCompressor* compressor) noexcept nogil:
    if compressor.window_bits:
        deflateEnd(&compressor.stream)
        compressor.window_bits = 0


cdef int ws_deflate(WsCompressor* compressor, const WsDeflate* deflate, const unsigned char* data,
                    size_t length, Buffer* out) noexcept nogil:
    """Append the compressed message (without the 00 00 FF FF tail) to out, with `compressor` (the
    worker's: one z_stream reset per message instead of one allocated and freed per message, and
    none held by an idle connection) at the connection's window; 0 ok, -1 no memory."""
    cdef z_stream* stream = &compressor.stream
    cdef size_t start = buffer_length(out), step, room
    cdef int result
    if ws_compressor_ready(compressor, deflate.params.server_window_bits) != 0:
        return -1
    # Usually one reservation: zlib's bound for the data, and room for the sync flush's empty block.
    room = deflateBound(stream, <uLong>length) + 16 if length < ZLIB_INPUT_STEP else INFLATE_CHUNK
    while True:
        if stream.avail_in == 0 and length > 0:
            step = length if length < ZLIB_INPUT_STEP else ZLIB_INPUT_STEP
            stream.next_in = <Bytef*>data
            stream.avail_in = <uInt>step
            data += step
            length -= step
        if buffer_reserve(out, room) != 0:
            return -1
        stream.next_out = <Bytef*>(out.data + out.end)
        stream.avail_out = <uInt>room
        result = zlib_deflate(stream, Z_SYNC_FLUSH)
        out.end += room - stream.avail_out
        if result != Z_OK and result != Z_BUF_ERROR:
            ws_compressor_free(compressor)              # (a stream in error is not reset: begin anew)
            return -1
        if stream.avail_in == 0 and length == 0 and stream.avail_out != 0:
            break                                       # all input taken and the flush complete
        room = INFLATE_CHUNK
    if buffer_length(out) - start >= 4:
        out.end -= 4                                    # the sync flush's 00 00 FF FF (7.2.1)
    return 0


cdef void ws_deflate_free(WsDeflate* deflate) noexcept nogil:
    if deflate.inflater_ready:
        inflateEnd(&deflate.inflater)
        deflate.inflater_ready = False

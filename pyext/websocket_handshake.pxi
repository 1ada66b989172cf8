# websocket_handshake.pxi: the opening handshake (RFC 6455 section 4.2): is a parsed request an
# upgrade attempt, is it a valid one, and the Sec-WebSocket-Accept value of the 101 answer.
#
# Theory of operation. The parser has already validated the head (CRLF lines, token names, clean
# values), so ws_handshake_check() only walks its field lines once, comparing names without regard to
# case and splitting comma lists (fields of one name accumulate, as RFC 9110 5.3 says). A request is
# an attempt when it is a GET on HTTP/1.1 whose Upgrade lists `websocket`; an attempt is then judged
# in the order of WS_CONTRACT.md: Connection lacks `upgrade` (400), Sec-WebSocket-Version missing,
# repeated or not `13` (426), Sec-WebSocket-Key missing, repeated or not base64 of 16 bytes (400), a
# body (400). The result points into the head (key, first extensions value); nothing is copied.
# The accept value is base64(SHA-1(key + the RFC's GUID)): SHA-1 is written here from FIPS 180-4
# (a streaming context, so the key and GUID are hashed without being joined), base64 from RFC 4648.

cdef enum:
    WS_KEY_LENGTH = 24                # base64 of 16 bytes: 22 characters and "=="
    WS_ACCEPT_LENGTH = 28             # base64 of a 20-byte SHA-1 digest
    SHA1_DIGEST_LENGTH = 20
    SHA1_BLOCK_LENGTH = 64

ctypedef struct Sha1:
    uint32_t h[5]
    uint64_t total_length             # bytes hashed so far
    unsigned char block[SHA1_BLOCK_LENGTH]
    size_t block_used

ctypedef struct WsHandshake:
    int status                        # 0: not an attempt; 101: valid; 400 or 426: refuse
    const char* key                   # into the head
    size_t key_length
    const char* extensions            # first Sec-WebSocket-Extensions value (NULL if none)
    size_t extensions_length

cdef const char* WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
cdef const char* BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


cdef inline uint32_t sha1_rotate_left(uint32_t x, int n) noexcept nogil:
    return (x << n) | (x >> (32 - n))


cdef void sha1_compress(uint32_t* h, const unsigned char* block) noexcept nogil:
    """FIPS 180-4 6.1.2 step 1-4: one 512-bit block into the hash value h[0..4]."""
    cdef uint32_t w[80]
    cdef uint32_t a, b, c, d, e, f, k, temp
    cdef int t
    for t in range(16):
        w[t] = ((<uint32_t>block[4 * t] << 24) | (<uint32_t>block[4 * t + 1] << 16)
                | (<uint32_t>block[4 * t + 2] << 8) | <uint32_t>block[4 * t + 3])
    for t in range(16, 80):
        w[t] = sha1_rotate_left(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
    a = h[0]
    b = h[1]
    c = h[2]
    d = h[3]
    e = h[4]
    for t in range(80):
        if t < 20:
            f = (b & c) | (~b & d)                      # Ch
            k = 0x5A827999
        elif t < 40:
            f = b ^ c ^ d                               # Parity
            k = 0x6ED9EBA1
        elif t < 60:
            f = (b & c) | (b & d) | (c & d)             # Maj
            k = 0x8F1BBCDC
        else:
            f = b ^ c ^ d
            k = 0xCA62C1D6
        temp = sha1_rotate_left(a, 5) + f + e + k + w[t]
        e = d
        d = c
        c = sha1_rotate_left(b, 30)
        b = a
        a = temp
    h[0] += a
    h[1] += b
    h[2] += c
    h[3] += d
    h[4] += e


cdef void sha1_init(Sha1* ctx) noexcept nogil:
    ctx.h[0] = 0x67452301                               # FIPS 180-4 5.3.1
    ctx.h[1] = 0xEFCDAB89
    ctx.h[2] = 0x98BADCFE
    ctx.h[3] = 0x10325476
    ctx.h[4] = 0xC3D2E1F0
    ctx.total_length = 0
    ctx.block_used = 0


cdef void sha1_update(Sha1* ctx, const unsigned char* data, size_t length) noexcept nogil:
    cdef size_t take
    ctx.total_length += length
    while length > 0:
        if ctx.block_used == 0 and length >= SHA1_BLOCK_LENGTH:
            sha1_compress(ctx.h, data)                  # whole blocks straight from the input
            data += SHA1_BLOCK_LENGTH
            length -= SHA1_BLOCK_LENGTH
            continue
        take = SHA1_BLOCK_LENGTH - ctx.block_used
        if take > length:
            take = length
        memcpy(ctx.block + ctx.block_used, data, take)
        ctx.block_used += take
        data += take
        length -= take
        if ctx.block_used == SHA1_BLOCK_LENGTH:
            sha1_compress(ctx.h, ctx.block)
            ctx.block_used = 0


cdef void sha1_final(Sha1* ctx, unsigned char* out) noexcept nogil:
    """FIPS 180-4 5.1.1 padding: a 1 bit, zeros, the message length in bits as 64 bits big-endian."""
    cdef uint64_t bit_length = ctx.total_length * 8
    cdef int i
    ctx.block[ctx.block_used] = 0x80
    ctx.block_used += 1
    if ctx.block_used > SHA1_BLOCK_LENGTH - 8:
        memset(ctx.block + ctx.block_used, 0, SHA1_BLOCK_LENGTH - ctx.block_used)
        sha1_compress(ctx.h, ctx.block)
        ctx.block_used = 0
    memset(ctx.block + ctx.block_used, 0, SHA1_BLOCK_LENGTH - 8 - ctx.block_used)
    for i in range(8):
        ctx.block[SHA1_BLOCK_LENGTH - 1 - i] = <unsigned char>(bit_length >> (8 * i))
    sha1_compress(ctx.h, ctx.block)
    for i in range(5):
        out[4 * i] = <unsigned char>(ctx.h[i] >> 24)
        out[4 * i + 1] = <unsigned char>(ctx.h[i] >> 16)
        out[4 * i + 2] = <unsigned char>(ctx.h[i] >> 8)
        out[4 * i + 3] = <unsigned char>ctx.h[i]


cdef void sha1_digest(const unsigned char* data, size_t length, unsigned char* out) noexcept nogil:
    """SHA-1 of data[:length] into out[0:20]."""
    cdef Sha1 ctx
    sha1_init(&ctx)
    sha1_update(&ctx, data, length)
    sha1_final(&ctx, out)


cdef size_t base64_encode(const unsigned char* data, size_t length, char* out) noexcept nogil:
    """RFC 4648 section 4 with '=' padding; returns the characters written (4 per 3 bytes, rounded up)."""
    cdef size_t i = 0, o = 0
    cdef uint32_t group
    while i + 3 <= length:
        group = (<uint32_t>data[i] << 16) | (<uint32_t>data[i + 1] << 8) | data[i + 2]
        out[o] = BASE64_ALPHABET[group >> 18]
        out[o + 1] = BASE64_ALPHABET[(group >> 12) & 63]
        out[o + 2] = BASE64_ALPHABET[(group >> 6) & 63]
        out[o + 3] = BASE64_ALPHABET[group & 63]
        i += 3
        o += 4
    if length - i == 1:
        group = <uint32_t>data[i] << 16
        out[o] = BASE64_ALPHABET[group >> 18]
        out[o + 1] = BASE64_ALPHABET[(group >> 12) & 63]
        out[o + 2] = 61                                 # '='
        out[o + 3] = 61
        o += 4
    elif length - i == 2:
        group = (<uint32_t>data[i] << 16) | (<uint32_t>data[i + 1] << 8)
        out[o] = BASE64_ALPHABET[group >> 18]
        out[o + 1] = BASE64_ALPHABET[(group >> 12) & 63]
        out[o + 2] = BASE64_ALPHABET[(group >> 6) & 63]
        out[o + 3] = 61
        o += 4
    return o


cdef inline bint is_base64_character(char c) noexcept nogil:
    return ((65 <= c <= 90) or (97 <= c <= 122) or (48 <= c <= 57) or c == 43 or c == 47)


cdef bint ws_key_valid(const char* key, size_t length) noexcept nogil:
    """Sec-WebSocket-Key (RFC 6455 4.1): base64 of 16 bytes, so 22 alphabet characters and "==".
    The last character's 4 unused bits are not required to be zero: Python's base64.b64decode
    (validate=True), which the pure engine uses, accepts them too, and the key is only hashed."""
    cdef size_t i
    if length != WS_KEY_LENGTH or key[22] != 61 or key[23] != 61:
        return False
    for i in range(22):
        if not is_base64_character(key[i]):
            return False
    return True


cdef void ws_accept_value(const char* key, size_t length, char* out) noexcept nogil:
    """Sec-WebSocket-Accept for a key: 28 characters into out, no NUL."""
    cdef Sha1 ctx
    cdef unsigned char digest[SHA1_DIGEST_LENGTH]
    sha1_init(&ctx)
    sha1_update(&ctx, <const unsigned char*>key, length)
    sha1_update(&ctx, <const unsigned char*>WS_GUID, 36)
    sha1_final(&ctx, digest)
    base64_encode(digest, SHA1_DIGEST_LENGTH, out)


cdef bint token_list_has(const char* value, size_t length, const char* lowercase_token,
                         size_t token_length) noexcept nogil:
    """A comma-separated list (RFC 9110 5.6.1: empty elements and whitespace around them allowed)
    holds the token, compared without regard to case."""
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
        if end - start == token_length and equals_lowercase(value + start, token_length, lowercase_token):
            return True
    return False


cdef bint ws_next_field(const char* head, size_t head_length, size_t* position, const char** name,
                        size_t* name_length, const char** value, size_t* value_length) noexcept nogil:
    """The field line at *position (the request line skipped when *position is 0): its name and its
    value without surrounding whitespace; *position moves to the next line. False at the head's end
    (the blank line, or the end of `head` when the blank line was left off)."""
    cdef const char* line_end
    cdef size_t start, end, colon
    if position[0] == 0:
        line_end = <const char*>memchr(head, 10, head_length)
        if line_end == NULL:
            return False
        position[0] = <size_t>(line_end - head) + 1
    while position[0] < head_length:
        start = position[0]
        line_end = <const char*>memchr(head + start, 10, head_length - start)
        end = <size_t>(line_end - head) if line_end != NULL else head_length
        position[0] = end + 1
        if end > start and head[end - 1] == 13:
            end -= 1
        if end == start:
            return False                                # the blank line ends the head
        colon = start
        while colon < end and head[colon] != 58:
            colon += 1
        if colon == end:
            continue                                    # not a field line (the parser rejects these)
        name[0] = head + start
        name_length[0] = colon - start
        start = colon + 1
        while start < end and (head[start] == 32 or head[start] == 9):
            start += 1
        while end > start and (head[end - 1] == 32 or head[end - 1] == 9):
            end -= 1
        value[0] = head + start
        value_length[0] = end - start
        return True
    return False


cdef void ws_handshake_check(const char* head, size_t head_length, bint is_get, int version_minor,
                             bint has_body, WsHandshake* out) noexcept nogil:
    """Judge a parsed request head as a WebSocket opening handshake (see the top of this file)."""
    cdef size_t position = 0, name_length, value_length
    cdef const char* name
    cdef const char* value
    cdef bint upgrade_websocket = False, connection_upgrade = False, version_13 = False
    cdef int version_count = 0, key_count = 0
    memset(out, 0, sizeof(WsHandshake))
    if not is_get or version_minor != 1:
        return
    while ws_next_field(head, head_length, &position, &name, &name_length, &value, &value_length):
        if name_length == 7 and equals_lowercase(name, 7, "upgrade"):
            if token_list_has(value, value_length, "websocket", 9):
                upgrade_websocket = True
        elif name_length == 10 and equals_lowercase(name, 10, "connection"):
            if token_list_has(value, value_length, "upgrade", 7):
                connection_upgrade = True
        elif name_length == 21 and equals_lowercase(name, 21, "sec-websocket-version"):
            version_count += 1
            version_13 = value_length == 2 and value[0] == 49 and value[1] == 51
        elif name_length == 17 and equals_lowercase(name, 17, "sec-websocket-key"):
            key_count += 1
            out.key = value
            out.key_length = value_length
        elif name_length == 24 and equals_lowercase(name, 24, "sec-websocket-extensions"):
            if out.extensions == NULL:
                out.extensions = value
                out.extensions_length = value_length
    if not upgrade_websocket:
        out.key = NULL
        out.key_length = 0
        out.extensions = NULL
        out.extensions_length = 0
        return                                          # plain HTTP: status 0
    if not connection_upgrade:
        out.status = 400
    elif version_count != 1 or not version_13:
        out.status = 426
    elif key_count != 1 or not ws_key_valid(out.key, out.key_length):
        out.status = 400
    elif has_body:
        out.status = 400
    else:
        out.status = 101

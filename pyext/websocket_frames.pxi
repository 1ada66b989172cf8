# websocket_frames.pxi: WebSocket framing (RFC 6455 section 5), the UTF-8 check of text messages and
# close payloads (RFC 3629, RFC 6455 section 8.1), all stateless C, no allocation.
#
# Theory of operation. The I/O worker reads a frame in two steps, as it reads an HTTP head:
#   1. ws_parse_frame_head() looks at the bytes received so far and answers 0 (need more), -1 (a
#      protocol error: close 1002) or 1 (the head is complete: its length, the payload length, the
#      mask). It judges every byte as soon as it arrives, so a bad first byte fails at once, and a
#      prefix of a head never answers 1.
#   2. The payload, possibly received in pieces, is unmasked in place by ws_unmask(), which takes
#      the count of payload bytes already unmasked (mask_offset), so the pieces need no copy.
# Text payloads (and close reasons) go through a Utf8Validator: a byte-at-a-time automaton whose
# state survives between frames of one message, which rejects at the first byte that no valid
# UTF-8 text can continue with (an overlong form, a surrogate, a code point past U+10FFFF, a stray
# continuation byte), and whose utf8_complete() says no sequence is left open at the message's end.
# Its tables are built at import from the ranges of RFC 3629 section 4, not copied from anywhere.
# Outgoing frames are unmasked server frames: ws_write_frame_head() writes their 2, 4 or 10 bytes.

cdef enum:
    WS_OP_CONTINUATION = 0x0
    WS_OP_TEXT = 0x1
    WS_OP_BINARY = 0x2
    WS_OP_CLOSE = 0x8
    WS_OP_PING = 0x9
    WS_OP_PONG = 0xA
    WS_FRAME_HEAD_MAX = 14            # a client frame's head; a server head is at most 10
    WS_CONTROL_PAYLOAD_MAX = 125      # RFC 6455 5.5: control frames carry at most 125 bytes

ctypedef struct WsFrameHead:
    bint fin
    bint rsv1                         # compressed message (permessage-deflate): first frame only
    int opcode
    uint64_t payload_length
    unsigned char mask[4]
    size_t head_length


cdef int ws_parse_frame_head(const unsigned char* data, size_t length, WsFrameHead* head,
                             bint rsv1_allowed) noexcept nogil:
    """1: complete (head filled); 0: need more bytes; -1: protocol error (close 1002)."""
    cdef unsigned char first, second
    cdef int opcode, length_code, i
    cdef size_t needed
    cdef uint64_t payload_length = 0
    if length == 0:
        return 0
    first = data[0]
    opcode = first & 0x0F
    if first & 0x30:
        return -1                                       # RSV2 or RSV3: no extension of ours sets them
    if opcode >= 8:
        if opcode > WS_OP_PONG:
            return -1                                   # reserved control opcodes 0xB-0xF
        if not (first & 0x80):
            return -1                                   # a control frame is never fragmented (5.5)
        if first & 0x40:
            return -1                                   # RSV1 means "compressed": data frames only
    elif opcode > WS_OP_BINARY:
        return -1                                       # reserved data opcodes 3-7
    elif first & 0x40 and (not rsv1_allowed or opcode == WS_OP_CONTINUATION):
        return -1                                       # RSV1 only on a message's first frame, when negotiated
    if length < 2:
        return 0
    second = data[1]
    if not (second & 0x80):
        return -1                                       # a client must mask every frame (5.1)
    length_code = second & 0x7F
    if opcode >= 8 and length_code > WS_CONTROL_PAYLOAD_MAX:
        return -1
    if length_code == 126:
        needed = 2 + 2 + 4
        if length < 4:
            return 0
        payload_length = (<uint64_t>data[2] << 8) | data[3]
    elif length_code == 127:
        needed = 2 + 8 + 4
        if length < 3:
            return 0
        if data[2] & 0x80:
            return -1                                   # the 64-bit length's top bit must be 0 (5.2)
        if length < 10:
            return 0
        for i in range(2, 10):
            payload_length = (payload_length << 8) | data[i]
    else:
        needed = 2 + 4
        payload_length = <uint64_t>length_code
    if length < needed:
        return 0
    head.fin = (first & 0x80) != 0
    head.rsv1 = (first & 0x40) != 0
    head.opcode = opcode
    head.payload_length = payload_length
    memcpy(head.mask, data + needed - 4, 4)
    head.head_length = needed
    return 1


cdef void ws_unmask(unsigned char* data, size_t length, const unsigned char* mask,
                    size_t mask_offset) noexcept nogil:
    """XOR data[:length] in place with the mask, the first byte with mask[mask_offset % 4].

    Eight bytes at a time: the mask is laid out eight bytes long from the right phase once, then
    each word is loaded, XORed and stored through memcpy (which compiles to plain unaligned loads
    where the CPU allows them and is defined behaviour everywhere). Byte order does not matter:
    the word and the mask are both loaded from memory the same way."""
    cdef unsigned char key[8]
    cdef uint64_t key_word, word
    cdef size_t i = 0, j
    for j in range(8):
        key[j] = mask[(mask_offset + j) & 3]
    memcpy(&key_word, key, 8)
    while i + 8 <= length:
        memcpy(&word, data + i, 8)
        word ^= key_word
        memcpy(data + i, &word, 8)
        i += 8
    while i < length:
        data[i] ^= key[i & 7]                           # i % 8 keeps the phase: 8 is a multiple of 4
        i += 1


cdef size_t ws_write_frame_head(unsigned char* out, int opcode, bint fin, bint rsv1,
                                uint64_t length) noexcept nogil:
    """An unmasked server frame head (2, 4 or 10 bytes, the shortest form); returns its size."""
    cdef int i
    out[0] = <unsigned char>((0x80 if fin else 0) | (0x40 if rsv1 else 0) | (opcode & 0x0F))
    if length <= 125:
        out[1] = <unsigned char>length
        return 2
    if length <= 0xFFFF:
        out[1] = 126
        out[2] = <unsigned char>(length >> 8)
        out[3] = <unsigned char>length
        return 4
    out[1] = 127
    for i in range(8):
        out[2 + i] = <unsigned char>(length >> (8 * (7 - i)))
    return 10


# UTF-8 (RFC 3629 section 4). A well-formed sequence is one of:
#   00-7F | C2-DF 80-BF | E0 A0-BF 80-BF | E1-EC 80-BF 80-BF | ED 80-9F 80-BF | EE-EF 80-BF 80-BF
#   | F0 90-BF 80-BF 80-BF | F1-F3 80-BF 80-BF 80-BF | F4 80-8F 80-BF 80-BF
# The automaton's states say what the next byte may be: UTF8_ACCEPT (a new character), any 80-BF
# with one, two or three bytes left, or the narrowed second bytes after E0 (no overlong), ED (no
# surrogate), F0 (no overlong) and F4 (nothing past U+10FFFF). UTF8_REJECT is sticky. Bytes fall in
# classes that the automaton cannot tell apart; the transition table is indexed state * 16 + class.

cdef enum:
    UTF8_ACCEPT = 0
    UTF8_TAIL_1 = 1                   # one 80-BF byte left
    UTF8_TAIL_2 = 2
    UTF8_TAIL_3 = 3
    UTF8_AFTER_E0 = 4                 # A0-BF, then one more
    UTF8_AFTER_ED = 5                 # 80-9F, then one more
    UTF8_AFTER_F0 = 6                 # 90-BF, then two more
    UTF8_AFTER_F4 = 7                 # 80-8F, then two more
    UTF8_REJECT = 8
    UTF8_STATES = 9
    UTF8_CLASS_ASCII = 0              # 00-7F
    UTF8_CLASS_CONT_LOW = 1           # 80-8F
    UTF8_CLASS_CONT_MID = 2           # 90-9F
    UTF8_CLASS_CONT_HIGH = 3          # A0-BF
    UTF8_CLASS_INVALID = 4            # C0, C1 (always overlong), F5-FF (past U+10FFFF)
    UTF8_CLASS_LEAD_2 = 5             # C2-DF
    UTF8_CLASS_E0 = 6
    UTF8_CLASS_LEAD_3 = 7             # E1-EC, EE-EF
    UTF8_CLASS_ED = 8
    UTF8_CLASS_F0 = 9
    UTF8_CLASS_LEAD_4 = 10            # F1-F3
    UTF8_CLASS_F4 = 11
    UTF8_CLASSES = 12

cdef uint8_t UTF8_BYTE_CLASS[256]
cdef uint8_t UTF8_TRANSITION[UTF8_STATES * 16]

ctypedef struct Utf8Validator:
    uint32_t state


cdef void _init_utf8_tables() noexcept:
    cdef int byte, state, byte_class
    for byte in range(256):
        if byte < 0x80:
            byte_class = UTF8_CLASS_ASCII
        elif byte < 0x90:
            byte_class = UTF8_CLASS_CONT_LOW
        elif byte < 0xA0:
            byte_class = UTF8_CLASS_CONT_MID
        elif byte < 0xC0:
            byte_class = UTF8_CLASS_CONT_HIGH
        elif byte < 0xC2 or byte > 0xF4:
            byte_class = UTF8_CLASS_INVALID
        elif byte < 0xE0:
            byte_class = UTF8_CLASS_LEAD_2
        elif byte == 0xE0:
            byte_class = UTF8_CLASS_E0
        elif byte == 0xED:
            byte_class = UTF8_CLASS_ED
        elif byte < 0xF0:
            byte_class = UTF8_CLASS_LEAD_3
        elif byte == 0xF0:
            byte_class = UTF8_CLASS_F0
        elif byte < 0xF4:
            byte_class = UTF8_CLASS_LEAD_4
        else:
            byte_class = UTF8_CLASS_F4
        UTF8_BYTE_CLASS[byte] = byte_class
    for state in range(UTF8_STATES * 16):
        UTF8_TRANSITION[state] = UTF8_REJECT
    # A new character: its first byte says how many follow and whether the second is narrowed.
    UTF8_TRANSITION[UTF8_ACCEPT * 16 + UTF8_CLASS_ASCII] = UTF8_ACCEPT
    UTF8_TRANSITION[UTF8_ACCEPT * 16 + UTF8_CLASS_LEAD_2] = UTF8_TAIL_1
    UTF8_TRANSITION[UTF8_ACCEPT * 16 + UTF8_CLASS_E0] = UTF8_AFTER_E0
    UTF8_TRANSITION[UTF8_ACCEPT * 16 + UTF8_CLASS_LEAD_3] = UTF8_TAIL_2
    UTF8_TRANSITION[UTF8_ACCEPT * 16 + UTF8_CLASS_ED] = UTF8_AFTER_ED
    UTF8_TRANSITION[UTF8_ACCEPT * 16 + UTF8_CLASS_F0] = UTF8_AFTER_F0
    UTF8_TRANSITION[UTF8_ACCEPT * 16 + UTF8_CLASS_LEAD_4] = UTF8_TAIL_3
    UTF8_TRANSITION[UTF8_ACCEPT * 16 + UTF8_CLASS_F4] = UTF8_AFTER_F4
    for byte_class in (UTF8_CLASS_CONT_LOW, UTF8_CLASS_CONT_MID, UTF8_CLASS_CONT_HIGH):
        # Any continuation byte where any is allowed.
        UTF8_TRANSITION[UTF8_TAIL_1 * 16 + byte_class] = UTF8_ACCEPT
        UTF8_TRANSITION[UTF8_TAIL_2 * 16 + byte_class] = UTF8_TAIL_1
        UTF8_TRANSITION[UTF8_TAIL_3 * 16 + byte_class] = UTF8_TAIL_2
    UTF8_TRANSITION[UTF8_AFTER_E0 * 16 + UTF8_CLASS_CONT_HIGH] = UTF8_TAIL_1           # E0 A0-BF
    UTF8_TRANSITION[UTF8_AFTER_ED * 16 + UTF8_CLASS_CONT_LOW] = UTF8_TAIL_1            # ED 80-9F
    UTF8_TRANSITION[UTF8_AFTER_ED * 16 + UTF8_CLASS_CONT_MID] = UTF8_TAIL_1
    UTF8_TRANSITION[UTF8_AFTER_F0 * 16 + UTF8_CLASS_CONT_MID] = UTF8_TAIL_2            # F0 90-BF
    UTF8_TRANSITION[UTF8_AFTER_F0 * 16 + UTF8_CLASS_CONT_HIGH] = UTF8_TAIL_2
    UTF8_TRANSITION[UTF8_AFTER_F4 * 16 + UTF8_CLASS_CONT_LOW] = UTF8_TAIL_2            # F4 80-8F

_init_utf8_tables()


cdef inline void utf8_reset(Utf8Validator* v) noexcept nogil:
    v.state = UTF8_ACCEPT


cdef bint utf8_feed(Utf8Validator* v, const unsigned char* data, size_t length) noexcept nogil:
    """Feed the next bytes of a text. False as soon as the bytes so far cannot begin any valid
    UTF-8 text (and from then on). ASCII runs are skipped eight bytes at a time."""
    cdef uint32_t state = v.state
    cdef size_t i = 0
    cdef uint64_t word
    if state == UTF8_REJECT:
        return False
    while i < length:
        if state == UTF8_ACCEPT:
            while i + 8 <= length:
                memcpy(&word, data + i, 8)
                if word & <uint64_t>0x8080808080808080:
                    break
                i += 8
            if i >= length:
                break
        state = UTF8_TRANSITION[state * 16 + UTF8_BYTE_CLASS[data[i]]]
        if state == UTF8_REJECT:
            v.state = state
            return False
        i += 1
    v.state = state
    return True


cdef inline bint utf8_complete(const Utf8Validator* v) noexcept nogil:
    """No sequence left open (and nothing rejected): the text may end here."""
    return v.state == UTF8_ACCEPT


cdef inline bint ws_close_code_valid(int code) noexcept nogil:
    """Codes a peer may send in a close frame (RFC 6455 7.4.1-7.4.2, and the IANA registry as
    Autobahn 7.9.x / 7.13.x test it): 1000-1003, 1007-1014, 3000-4999. Never 1004 (reserved), 1005,
    1006, 1015 (only reported locally), nor the unassigned rest of 1000-2999."""
    return (1000 <= code <= 1003) or (1007 <= code <= 1014) or (3000 <= code <= 4999)


cdef int ws_close_payload(const unsigned char* payload, size_t length, int* code) noexcept nogil:
    """A received close frame's (unmasked) payload: 0 when valid, with code set (1005 when the
    payload is empty); 1002 for a 1-byte payload or a code that may not be sent; 1007 when the
    reason is not UTF-8."""
    cdef Utf8Validator reason
    if length == 0:
        code[0] = 1005
        return 0
    if length == 1:
        return 1002
    code[0] = (<int>payload[0] << 8) | payload[1]
    if not ws_close_code_valid(code[0]):
        return 1002
    utf8_reset(&reason)
    if not utf8_feed(&reason, payload + 2, length - 2) or not utf8_complete(&reason):
        return 1007
    return 0

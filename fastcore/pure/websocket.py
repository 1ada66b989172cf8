"""fastcore.pure.websocket: WebSocket framing and permessage-deflate for the pure engine (RFC 6455,
RFC 7692), with the standard library only (zlib, codecs).

Theory of operation (the twin of pyext/websocket_frames.pxi and websocket_deflate.pxi). A
MessageReader takes the bytes a connection receives (feed) and gives back, one at a time, what
they hold (next): a complete message (text as str, binary as bytes), a ping, a pong, a close, or
a ProtocolError carrying the close code the server answers with. It never holds more than one
frame beyond the message being assembled, and it refuses before buffering:

  * 1002: reserved bits (RSV1 without deflate, or on a control or continuation frame), unknown
    opcodes, an unmasked frame, a control frame fragmented or over 125 bytes, a continuation
    without a start, a new data frame inside a fragmented message, a 64-bit length with its top
    bit set, a bad close payload (fastcore.websocket.parse_close_payload);
  * 1007: a text message or close reason that is not UTF-8 (checked frame by frame, so it fails
    as soon as the bytes cannot be a prefix of UTF-8), deflate data zlib cannot inflate;
  * 1009: a message over max_size: its declared frame lengths are checked before the payload is
    waited for, and a compressed message is inflated with a budget (zlib's max_length), so a
    deflate bomb is never inflated past max_size.

Server frames (frame_head) are unmasked and never fragmented. Deflate: negotiate_deflate() picks
the first acceptable offer of the request's Sec-WebSocket-Extensions fields and says what the 101
answers; the server always uses server_no_context_takeover, so compress() makes a compressor per
message and an idle connection holds none. The inflater keeps its context across messages unless
the client agreed to client_no_context_takeover.
"""
import codecs
import zlib

from ..websocket import (CLOSE_INVALID_DATA, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, parse_close_payload)

CLIENT_WINDOW_BITS = 12              # the largest client window we ask for (see negotiate)

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = (OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

DEFLATE_TAIL = b"\x00\x00\xff\xff"      # RFC 7692 7.2.1: removed by the sender, put back to inflate
COMPRESSION_LEVEL = 6

# What MessageReader.next() gives.
TEXT = 1
BINARY = 2
CLOSE = 8
PING = 9
PONG = 10


class ProtocolError(Exception):
    """The client broke the protocol: `code` is the close code the server answers with."""

    def __init__(self, code, why):
        super().__init__(why)
        self.code = code


def unmask(data, mask):
    """The payload XORed with the 4-byte mask, as one big-integer operation (fast in CPython)."""
    length = len(data)
    if not length:
        return b""
    repeated = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(length, "little")


def frame_head(opcode, length, rsv1=False):
    """An unmasked server frame's head (FIN set): 2, 4 or 10 bytes."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def close_payload(code, reason=""):
    """A close frame's payload: the code and the UTF-8 reason; empty for code None."""
    if code is None:
        return b""
    return code.to_bytes(2, "big") + reason.encode("utf-8")


# -- permessage-deflate ---------------------------------------------------------------------------------

class DeflateParams:
    """What was agreed for one connection."""

    __slots__ = ("client_no_context_takeover", "server_max_window_bits")

    def __init__(self, client_no_context_takeover=False, server_max_window_bits=15):
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits


def _window_bits(value, low):
    if value is None or not value.isdigit() or len(value) > 2:
        return None
    bits = int(value)
    return bits if low <= bits <= 15 else None


def _accept_offer(params):
    """One permessage-deflate offer's parameters [(name, value or None)]: (DeflateParams, the
    response value) or None when it holds a parameter we do not know, one twice, or a value out
    of range. server_max_window_bits=8 is refused: zlib's raw deflate has no 8-bit window."""
    seen = set()
    agreed = DeflateParams()
    response = ["permessage-deflate", "server_no_context_takeover"]
    client_bits = None
    for name, value in params:
        if name in seen:
            return None
        seen.add(name)
        if name == "server_no_context_takeover":
            if value is not None:
                return None
        elif name == "client_no_context_takeover":
            if value is not None:
                return None
            agreed.client_no_context_takeover = True
            response.append("client_no_context_takeover")
        elif name == "server_max_window_bits":
            bits = _window_bits(value, 9)
            if bits is None:
                return None
            agreed.server_max_window_bits = bits
            response.append(f"server_max_window_bits={bits}")
        elif name == "client_max_window_bits":
            # The client lets us choose its window (RFC 7692 7.1.2.2): at most 2^12, as the compiled
            # engine asks (an inflater keeps its window for the connection's life: 4 KiB, not 32).
            client_bits = CLIENT_WINDOW_BITS if value is None else _window_bits(value, 8)
            if client_bits is None:
                return None
            client_bits = min(client_bits, CLIENT_WINDOW_BITS)
        else:
            return None
    if client_bits is not None:
        response.append(f"client_max_window_bits={client_bits}")
    return agreed, "; ".join(response).encode("ascii")


def negotiate_deflate(headers):
    """The Sec-WebSocket-Extensions fields of a request ((name, value) bytes pairs, lower-case
    names), offers in order: (DeflateParams, the 101's Sec-WebSocket-Extensions value) for the first
    acceptable permessage-deflate offer, or None."""
    for name, value in headers:
        if name != b"sec-websocket-extensions":
            continue
        for offer in value.decode("latin-1").split(","):
            parts = [part.strip(" \t") for part in offer.split(";")]
            if parts[0].lower() != "permessage-deflate":
                continue
            params = []
            for part in parts[1:]:
                if not part:
                    continue
                key, equals, raw = part.partition("=")
                raw = raw.strip(" \t")
                if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                    raw = raw[1:-1]
                params.append((key.strip(" \t").lower(), raw if equals else None))
            accepted = _accept_offer(params)
            if accepted is not None:
                return accepted
    return None


def compress(data, params):
    """One message compressed with a compressor of its own (server_no_context_takeover), without
    the 00 00 FF FF tail."""
    compressor = zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, -params.server_max_window_bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(DEFLATE_TAIL) else out


class Inflater:
    """The connection's decompressor; inflate() never produces more than its budget + 1 bytes."""

    __slots__ = ("params", "zobj")

    def __init__(self, params):
        self.params = params
        self.zobj = None

    def inflate(self, data, final, budget):
        """The inflation of one frame's payload (final: the message's last frame). Raises
        ProtocolError 1009 past `budget` bytes, 1007 for corrupt data."""
        if self.zobj is None:
            self.zobj = zlib.decompressobj(-15)
        zobj = self.zobj
        try:
            out = zobj.decompress(data, budget + 1) if data else b""
            if zobj.unconsumed_tail or len(out) > budget:
                raise ProtocolError(CLOSE_TOO_BIG, "the message inflates past ws_max_size")
            if final:
                more = zobj.decompress(DEFLATE_TAIL, budget - len(out) + 1)
                if zobj.unconsumed_tail or len(out) + len(more) > budget:
                    raise ProtocolError(CLOSE_TOO_BIG, "the message inflates past ws_max_size")
                out += more
                if self.params.client_no_context_takeover or zobj.eof:
                    self.zobj = None
        except zlib.error:
            raise ProtocolError(CLOSE_INVALID_DATA, "invalid deflate data") from None
        return out


# -- reading ---------------------------------------------------------------------------------------------

class MessageReader:
    """A connection's received bytes, assembled into messages (see the top of this file)."""

    __slots__ = ("buffer", "max_size", "inflater", "parts", "size", "opcode", "compressed", "decoder",
                 "wire_size")

    def __init__(self, max_size, deflate_params=None):
        self.buffer = bytearray()
        self.max_size = max_size
        self.inflater = Inflater(deflate_params) if deflate_params is not None else None
        self.parts = []                 # the message in progress: its (inflated) payloads
        self.size = 0                   # their total size
        self.wire_size = 0              # its received payload bytes (compressed ones too)
        self.opcode = None              # TEXT or BINARY while a message is in progress
        self.compressed = False
        self.decoder = None             # the incremental UTF-8 decoder of a text message

    def feed(self, data):
        self.buffer += data

    def next(self):
        """The next complete thing received: (TEXT, str), (BINARY, bytes), (PING, payload),
        (PONG, payload), (CLOSE, (code, reason)); None when more bytes are needed. Raises
        ProtocolError."""
        while True:
            frame = self._next_frame()
            if frame is None:
                return None
            fin, rsv1, opcode, payload = frame
            if opcode >= OP_CLOSE:
                if opcode == OP_CLOSE:
                    error, code, reason = parse_close_payload(payload)
                    if error:
                        raise ProtocolError(error, "invalid close frame")
                    return CLOSE, (code, reason)
                return opcode, payload
            if opcode != OP_CONTINUATION:
                self.opcode = opcode
                self.compressed = rsv1
                self.decoder = codecs.getincrementaldecoder("utf-8")() if opcode == OP_TEXT else None
            data = self.inflater.inflate(payload, fin, self.max_size - self.size) if self.compressed else payload
            self.size += len(data)
            if self.size > self.max_size:
                raise ProtocolError(CLOSE_TOO_BIG, "the message is larger than ws_max_size")
            if self.decoder is not None:
                try:
                    data = self.decoder.decode(data, fin)
                except UnicodeDecodeError:
                    raise ProtocolError(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message") from None
            self.parts.append(data)
            if fin:
                kind = self.opcode
                parts = self.parts
                message = parts[0] if len(parts) == 1 else ("" if kind == OP_TEXT else b"").join(parts)
                if kind == OP_BINARY and not isinstance(message, bytes):
                    message = bytes(message)
                self.parts = []
                self.size = self.wire_size = 0
                self.opcode = self.decoder = None
                self.compressed = False
                return kind, message

    def _next_frame(self):
        """(fin, rsv1, opcode, unmasked payload) of the next whole frame, or None; the frame's
        rules and size limit are checked from its head, before its payload is waited for."""
        buffer = self.buffer
        available = len(buffer)
        if available < 2:
            return None
        first, second = buffer[0], buffer[1]
        fin = bool(first & 0x80)
        rsv1 = bool(first & 0x40)
        opcode = first & 0x0F
        if first & 0x30:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV2/RSV3 set")
        if not second & 0x80:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "an unmasked client frame")
        length = second & 0x7F
        head = 2
        if length == 126:
            if available < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            head = 4
        elif length == 127:
            if available < 10:
                return None
            length = int.from_bytes(buffer[2:10], "big")
            if length >> 63:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "a 64-bit length with its top bit set")
            head = 10
        if opcode in _CONTROL_OPCODES:
            if not fin or length > 125:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "a control frame fragmented or over 125 bytes")
            if rsv1:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV1 on a control frame")
        elif opcode in _DATA_OPCODES:
            if self.opcode is not None:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "a new message inside a fragmented one")
            if rsv1 and self.inflater is None:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV1 without permessage-deflate")
        elif opcode == OP_CONTINUATION:
            if self.opcode is None:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "a continuation frame without a message")
            if rsv1:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV1 on a continuation frame")
        else:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "a reserved opcode")
        if opcode < OP_CLOSE:
            # Compressed bytes are bounded too (deflate can grow incompressible data a little), so
            # a huge frame is refused from its head instead of being buffered.
            compressed = rsv1 or (opcode == OP_CONTINUATION and self.compressed)
            allowed = self.max_size + (self.max_size >> 4) + 1024 if compressed else self.max_size
            if self.wire_size + length > allowed:
                raise ProtocolError(CLOSE_TOO_BIG, "the message is larger than ws_max_size")
        end = head + 4 + length
        if available < end:
            return None
        mask = bytes(buffer[head:head + 4])
        payload = unmask(bytes(buffer[head + 4:end]), mask)
        del buffer[:end]
        if opcode < OP_CLOSE:
            self.wire_size += length
        return fin, rsv1, opcode, payload

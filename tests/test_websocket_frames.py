"""The WebSocket C primitives (pyext/websocket_frames.pxi, websocket_handshake.pxi,
websocket_deflate.pxi) through the test-only wrappers of pyext/testing.pxi, against references:
hashlib and base64 for SHA-1 and the accept value, a Python XOR for unmasking, Python's UTF-8 codec
for the validator, zlib for permessage-deflate, and the RFCs' tables for the rest.

Hypothesis runs derandomized and bounded (the whole file takes a few seconds)."""
import base64
import hashlib
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastcore import _core

BOUNDED = settings(max_examples=200, derandomize=True, database=None, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])

TAIL = b"\x00\x00\xff\xff"


# --- SHA-1 and the accept value ------------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000])
def test_sha1_at_block_boundaries(length):
    data = bytes((i * 7 + 3) & 0xFF for i in range(length))
    assert _core.sha1_for_test(data) == hashlib.sha1(data).digest()


def test_sha1_of_a_megabyte():
    data = os.urandom(1 << 20)
    assert _core.sha1_for_test(data) == hashlib.sha1(data).digest()


@BOUNDED
@given(st.binary(max_size=300))
def test_sha1_matches_hashlib(data):
    assert _core.sha1_for_test(data) == hashlib.sha1(data).digest()


def test_accept_value_of_rfc_6455_example():
    assert _core.ws_accept_for_test(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@BOUNDED
@given(st.binary(min_size=16, max_size=16))
def test_accept_value_matches_hashlib_and_base64(nonce):
    key = base64.b64encode(nonce)
    expected = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    assert _core.ws_key_valid_for_test(key)
    assert _core.ws_accept_for_test(key) == expected


@pytest.mark.parametrize("key, valid", [
    (b"dGhlIHNhbXBsZSBub25jZQ==", True),
    (b"AAAAAAAAAAAAAAAAAAAAAA==", True),
    (b"++++++++++++++++++++//==", True),
    (b"dGhlIHNhbXBsZSBub25jZR==", True),      # non-zero unused bits: b64decode(validate=True) takes it too
    (b"dGhlIHNhbXBsZSBub25jZQ=", False),      # 23 characters
    (b"dGhlIHNhbXBsZSBub25jZQ===", False),
    (b"dGhlIHNhbXBsZSBub25jZQAA", False),     # 18 bytes, no padding
    (b"dGhlIHNhbXBsZSBub25jZ===", False),     # 15 bytes
    (b"dGhlIHNhbXBsZSBub25j-Q==", False),     # base64url alphabet
    (b"dGhlIHNhbXBsZSBub25j Q==", False),
    (b"", False),
])
def test_key_validity(key, valid):
    assert _core.ws_key_valid_for_test(key) is valid


# --- unmasking ----------------------------------------------------------------------------------

def xor_reference(data, mask, offset):
    return bytes(b ^ mask[(offset + i) % 4] for i, b in enumerate(data))


def test_unmask_every_length_and_offset():
    mask = b"\x12\x34\x56\x78"
    data = os.urandom(48)
    for length in range(41):
        for offset in range(9):
            assert _core.ws_unmask_for_test(data[:length], mask, offset) == xor_reference(
                data[:length], mask, offset), (length, offset)


@BOUNDED
@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4), st.integers(0, 2**40))
def test_unmask_matches_xor(data, mask, offset):
    assert _core.ws_unmask_for_test(data, mask, offset) == xor_reference(data, mask, offset)


@BOUNDED
@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4), st.lists(st.integers(1, 40), max_size=10))
def test_unmask_in_pieces_equals_unmask_whole(data, mask, cuts):
    """The worker unmasks a frame in pieces, passing the count unmasked so far."""
    pieces, position = [], 0
    for cut in cuts + [len(data)]:
        piece = data[position:position + cut]
        pieces.append(_core.ws_unmask_for_test(piece, mask, position))
        position += len(piece)
    assert b"".join(pieces) == xor_reference(data, mask, 0)


# --- UTF-8 --------------------------------------------------------------------------------------

# Representatives of every range the second byte of a sequence may be restricted to.
_CONTINUATIONS = (0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF)


def _completable(tail):
    """Some continuation makes `tail` (at most 4 bytes) a well-formed UTF-8 sequence."""
    candidates = [b""]
    for _ in range(4 - len(tail)):
        candidates = [c + bytes([x]) for c in candidates for x in _CONTINUATIONS] + candidates
    for candidate in candidates:
        try:
            (tail + candidate).decode("utf-8")
            return True
        except UnicodeDecodeError:
            pass
    return False


def utf8_reference(data):
    """(index of the first byte after which no valid UTF-8 text can follow, or None; complete).

    Python's decoder gives the start s of the first bad sequence (data[:s] is valid); the validator
    must fail at the first k >= s for which data[s:k+1] has no valid completion."""
    try:
        data.decode("utf-8")
        return (None, True)
    except UnicodeDecodeError as error:
        start = error.start
    for end in range(start + 1, min(start + 4, len(data)) + 1):
        if not _completable(data[start:end]):
            return (end - 1, False)
    return (None, False)                          # a valid prefix, its last sequence open


@pytest.mark.parametrize("data, failure", [
    # Autobahn 6.x: overlongs, surrogates, past U+10FFFF, stray and missing continuation bytes.
    (b"\xc0\x80", 0), (b"\xc1\xbf", 0),
    (b"\xe0\x80\x80", 1), (b"\xe0\x9f\xbf", 1), (b"\xe0\xa0\x80", None),
    (b"\xf0\x80\x80\x80", 1), (b"\xf0\x8f\xbf\xbf", 1), (b"\xf0\x90\x80\x80", None),
    (b"\xed\xa0\x80", 1), (b"\xed\xbf\xbf", 1), (b"\xed\x9f\xbf", None),
    (b"\xf4\x8f\xbf\xbf", None), (b"\xf4\x90\x80\x80", 1), (b"\xf5\x80\x80\x80", 0), (b"\xff", 0),
    (b"\x80", 0), (b"a\xbf", 1), (b"\xc2a", 1), (b"\xe1\x80a", 2), (b"\xf1\x80\x80a", 3),
    (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", 12),
    (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", None),
])
def test_utf8_fails_at_the_first_impossible_byte(data, failure):
    assert utf8_reference(data)[0] == failure
    for split in range(len(data) + 1):
        assert _core.utf8_valid_for_test(data, [split])[0] == failure, split


@pytest.mark.parametrize("data, complete", [
    (b"", True), (b"abc", True), (b"\xc2", False), (b"\xe2\x82", False), (b"\xf0\x9f\x98", False),
    (b"\xe2\x82\xac", True), (b"\xf0\x9f\x98\x80", True),
])
def test_utf8_complete_only_with_no_sequence_open(data, complete):
    assert _core.utf8_valid_for_test(data) == (None, complete)


# Bytes that make interesting UTF-8: ASCII runs (the eight-at-a-time path), lead bytes of every
# class, continuation bytes of every range, and valid characters.
_utf8_pieces = st.one_of(
    st.binary(max_size=20).map(lambda b: bytes(x & 0x7F for x in b)),
    st.sampled_from([bytes([x]) for x in (0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                                          0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF)]),
    st.text(max_size=5).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=4),
)


@BOUNDED
@given(st.lists(_utf8_pieces, max_size=12).map(b"".join), st.lists(st.integers(0, 24), max_size=6))
def test_utf8_matches_python_in_any_chunks(data, chunks):
    assert _core.utf8_valid_for_test(data, chunks) == utf8_reference(data)


@BOUNDED
@given(st.text(max_size=200), st.lists(st.integers(0, 50), max_size=6))
def test_utf8_accepts_any_text(text, chunks):
    assert _core.utf8_valid_for_test(text.encode(), chunks) == (None, True)


# --- frame heads --------------------------------------------------------------------------------

MASK = b"\x01\x02\x03\x04"


def client_head(opcode, length, fin=True, rsv=0, masked=True, length_form=None):
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    form = length_form or (7 if length <= 125 else 16 if length <= 0xFFFF else 64)
    if form == 7:
        head = bytes([first, mask_bit | length])
    elif form == 16:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", length)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", length)
    return head + (MASK if masked else b"")


@pytest.mark.parametrize("opcode", [0x0, 0x1, 0x2])
@pytest.mark.parametrize("length, head_length", [
    (0, 6), (125, 6), (126, 8), (0xFFFF, 8), (0x10000, 14), (2**63 - 1, 14)])
def test_data_frame_heads_of_every_length_form(opcode, length, head_length):
    head = client_head(opcode, length, fin=opcode != 0)
    assert _core.ws_parse_frame_head_for_test(head, False) == {
        "fin": opcode != 0, "rsv1": False, "opcode": opcode, "payload_length": length, "mask": MASK,
        "head_length": head_length}
    for cut in range(len(head)):
        assert _core.ws_parse_frame_head_for_test(head[:cut], False) == 0
    assert _core.ws_parse_frame_head_for_test(head + b"payload", False)["head_length"] == head_length


def test_longer_length_forms_than_needed_are_read():
    """RFC 6455 asks senders for the shortest form; receivers commonly take any, and so do we."""
    assert _core.ws_parse_frame_head_for_test(client_head(2, 5, length_form=16), False)["payload_length"] == 5
    assert _core.ws_parse_frame_head_for_test(client_head(2, 5, length_form=64), False)["payload_length"] == 5


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_control_frames(opcode):
    assert _core.ws_parse_frame_head_for_test(client_head(opcode, 125), False)["opcode"] == opcode
    assert _core.ws_parse_frame_head_for_test(client_head(opcode, 126), False) == -1
    assert _core.ws_parse_frame_head_for_test(client_head(opcode, 3, length_form=16), False) == -1
    assert _core.ws_parse_frame_head_for_test(client_head(opcode, 3, fin=False), False) == -1
    assert _core.ws_parse_frame_head_for_test(client_head(opcode, 3, rsv=4), True) == -1


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_fail_on_the_first_byte(opcode):
    head = client_head(opcode, 0)
    assert _core.ws_parse_frame_head_for_test(head[:1], True) == -1
    assert _core.ws_parse_frame_head_for_test(head, True) == -1


@pytest.mark.parametrize("rsv, opcode, rsv1_allowed, result", [
    (4, 1, True, "ok"), (4, 2, True, "ok"), (4, 1, False, -1), (4, 0, True, -1),
    (2, 1, True, -1), (1, 1, True, -1), (6, 1, True, -1), (7, 2, True, -1), (0, 1, False, "ok"),
])
def test_reserved_bits(rsv, opcode, rsv1_allowed, result):
    head = client_head(opcode, 10, rsv=rsv)
    parsed = _core.ws_parse_frame_head_for_test(head, rsv1_allowed)
    if result == "ok":
        assert parsed["rsv1"] == bool(rsv & 4)
    else:
        assert parsed == result
        assert _core.ws_parse_frame_head_for_test(head[:1], rsv1_allowed) == -1


def test_unmasked_frames_and_the_64_bit_top_bit():
    assert _core.ws_parse_frame_head_for_test(client_head(1, 5, masked=False), False) == -1
    assert _core.ws_parse_frame_head_for_test(client_head(1, 5, masked=False)[:2], False) == -1
    top = client_head(2, 2**63)
    assert _core.ws_parse_frame_head_for_test(top, False) == -1
    assert _core.ws_parse_frame_head_for_test(top[:3], False) == -1
    assert _core.ws_parse_frame_head_for_test(top[:2], False) == 0


@pytest.mark.parametrize("opcode, fin, rsv1, length, expected", [
    (1, True, False, 0, b"\x81\x00"), (2, True, True, 125, b"\xc2\x7d"),
    (1, False, False, 126, b"\x01\x7e\x00\x7e"), (0, True, False, 0xFFFF, b"\x80\x7e\xff\xff"),
    (2, True, False, 0x10000, b"\x82\x7f" + struct.pack("!Q", 0x10000)),
    (8, True, False, 2, b"\x88\x02"), (0xA, True, False, 4, b"\x8a\x04"),
])
def test_write_frame_head(opcode, fin, rsv1, length, expected):
    assert _core.ws_write_frame_head_for_test(opcode, fin, rsv1, length) == expected


@BOUNDED
@given(st.sampled_from([0, 1, 2]), st.booleans(), st.integers(0, 2**63 - 1))
def test_written_heads_parse_back_once_masked(opcode, rsv1, length):
    head = bytearray(_core.ws_write_frame_head_for_test(opcode, True, rsv1 and opcode != 0, length))
    head[1] |= 0x80
    parsed = _core.ws_parse_frame_head_for_test(bytes(head) + MASK, True)
    assert (parsed["opcode"], parsed["payload_length"], parsed["head_length"]) == (opcode, length, len(head) + 4)


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(st.binary(max_size=16), st.booleans())
def test_fuzz_frame_heads_are_consistent_across_prefixes(data, rsv1_allowed):
    """Every prefix answers 0 until the verdict; once -1, always -1; a complete head's prefixes are 0."""
    full = _core.ws_parse_frame_head_for_test(data, rsv1_allowed)
    verdict_at = None
    for cut in range(len(data) + 1):
        result = _core.ws_parse_frame_head_for_test(data[:cut], rsv1_allowed)
        if verdict_at is None:
            if result == 0:
                continue
            verdict_at = cut
            first = result
            if isinstance(result, dict):
                assert result["head_length"] == cut
        assert result == first
    if verdict_at is None:
        assert full == 0 and len(data) < 14
    else:
        assert full == first


# --- close payloads -----------------------------------------------------------------------------

VALID_CLOSE_CODES = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))


def test_close_codes():
    for code in list(range(0, 5100)) + [65535]:
        expected = (0, code) if code in VALID_CLOSE_CODES else (1002, code)
        assert _core.ws_close_payload_for_test(struct.pack("!H", code)) == expected, code


@pytest.mark.parametrize("payload, expected", [
    (b"", (0, 1005)), (b"\x03", (1002, None)), (b"\x03\xe8hello", (0, 1000)),
    (b"\x03\xe8\xce\xba\xe1\xbd\xb9", (0, 1000)), (b"\x03\xe8\xce", (1007, 1000)),
    (b"\x03\xe8\xed\xa0\x80", (1007, 1000)), (b"\x03\xedok", (1002, 1005)),
])
def test_close_payloads(payload, expected):
    assert _core.ws_close_payload_for_test(payload) == expected


# --- handshake ----------------------------------------------------------------------------------

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_head(*fields, target=b"/chat"):
    return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


GOOD = (b"Host: example.com", b"Upgrade: websocket", b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + KEY, b"Sec-WebSocket-Version: 13")


def replaced(name, *values):
    """GOOD with the `name` field replaced by one field per value (none: removed)."""
    kept = [f for f in GOOD if not f.lower().startswith(name.lower() + b":")]
    return tuple(kept) + tuple(name + b": " + v for v in values)


@pytest.mark.parametrize("fields, status", [
    (GOOD, 101),
    (replaced(b"Upgrade", b"WebSocket"), 101),
    (replaced(b"Upgrade", b"h2c, websocket"), 101),
    (replaced(b"Upgrade", b"h2c", b" websocket "), 101),
    (replaced(b"Upgrade", b"h2c"), 0),
    (replaced(b"Upgrade", b"websockets"), 0),
    (replaced(b"Upgrade"), 0),
    (replaced(b"Connection", b"keep-alive, Upgrade"), 101),
    (replaced(b"Connection", b"keep-alive", b"UPGRADE"), 101),
    (replaced(b"Connection", b"keep-alive"), 400),
    (replaced(b"Connection", b"upgrades"), 400),
    (replaced(b"Connection"), 400),
    (replaced(b"Sec-WebSocket-Version"), 426),
    (replaced(b"Sec-WebSocket-Version", b"8"), 426),
    (replaced(b"Sec-WebSocket-Version", b"13, 8"), 426),
    (replaced(b"Sec-WebSocket-Version", b"13", b"13"), 426),
    (replaced(b"Sec-WebSocket-Version", b"130"), 426),
    (replaced(b"Sec-WebSocket-Key"), 400),
    (replaced(b"Sec-WebSocket-Key", KEY, KEY), 400),
    (replaced(b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ"), 400),
    (replaced(b"Sec-WebSocket-Key", b"c2hvcnQ="), 400),
    (tuple(f.split(b":")[0].lower() + b":" + f.split(b":")[1] for f in GOOD), 101),
    (tuple(f.split(b":")[0].upper() + b":" + f.split(b":")[1] for f in GOOD), 101),
    (tuple(f.upper() for f in GOOD[:3]) + GOOD[3:], 101),
    (replaced(b"Connection", b"keep-alive") + (b"Sec-WebSocket-Version: 8",), 400),   # Connection first
])
def test_handshake_rules(fields, status):
    result = _core.ws_handshake_for_test(upgrade_head(*fields), True, 1, False)
    assert result["status"] == status
    if status == 101:
        assert result["key"] == KEY


def test_handshake_is_only_for_get_on_http_1_1_without_a_body():
    head = upgrade_head(*GOOD)
    assert _core.ws_handshake_for_test(head, False, 1, False)["status"] == 0
    assert _core.ws_handshake_for_test(head, True, 0, False)["status"] == 0
    assert _core.ws_handshake_for_test(head, True, 1, True)["status"] == 400


def test_handshake_reports_the_first_extensions_field():
    head = upgrade_head(*GOOD, b"Sec-WebSocket-Extensions:  permessage-deflate; client_max_window_bits ",
                        b"Sec-WebSocket-Extensions: x-other")
    result = _core.ws_handshake_for_test(head, True, 1, False)
    assert result["extensions"] == b"permessage-deflate; client_max_window_bits"
    assert _core.ws_handshake_for_test(upgrade_head(*GOOD), True, 1, False)["extensions"] is None


def test_handshake_head_without_its_blank_line():
    head = upgrade_head(*GOOD)
    assert _core.ws_handshake_for_test(head[:-2], True, 1, False)["status"] == 101


# --- permessage-deflate negotiation -------------------------------------------------------------

def negotiate(*values, capacity=256):
    return _core.ws_negotiate_for_test(upgrade_head(*GOOD, *(b"Sec-WebSocket-Extensions: " + v for v in values)),
                                       capacity)


NO_TAKEOVER = b"permessage-deflate; server_no_context_takeover"


@pytest.mark.parametrize("offers, response, client_no_context_takeover, client_bits", [
    ((), None, None, None),
    # Chrome, and python-websockets' client.
    ((b"permessage-deflate; client_max_window_bits",), NO_TAKEOVER + b"; client_max_window_bits=12", False, 12),
    # Firefox.
    ((b"permessage-deflate",), NO_TAKEOVER, False, 15),
    ((b"PerMessage-Deflate",), NO_TAKEOVER, False, 15),
    ((b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",),
     NO_TAKEOVER + b"; client_no_context_takeover", True, 15),
    ((b'permessage-deflate; client_max_window_bits="10"',), NO_TAKEOVER + b"; client_max_window_bits=10", False, 10),
    ((b"permessage-deflate ; client_max_window_bits = 9 ",), NO_TAKEOVER + b"; client_max_window_bits=9", False, 9),
    # Unknown, duplicated or malformed parameters decline that offer; the next one is tried.
    ((b"permessage-deflate; x-unknown, permessage-deflate",), NO_TAKEOVER, False, 15),
    ((b"permessage-deflate; x-unknown",), None, None, None),
    ((b"permessage-deflate; client_no_context_takeover; client_no_context_takeover",), None, None, None),
    ((b"permessage-deflate; client_max_window_bits; client_max_window_bits=10",), None, None, None),
    ((b"permessage-deflate; server_no_context_takeover=1",), None, None, None),
    ((b"permessage-deflate; client_no_context_takeover=\"\"",), None, None, None),
    ((b"permessage-deflate; ; client_max_window_bits",), None, None, None),
    ((b"permessage-deflate junk",), None, None, None),
    ((b'permessage-deflate; client_max_window_bits="10',), None, None, None),
    ((b"x-webkit-deflate-frame",), None, None, None),
    # Offers across several fields, in order; quoted commas do not split offers.
    ((b'x-foo; a="1,2", permessage-deflate; x', b"permessage-deflate; client_no_context_takeover"),
     NO_TAKEOVER + b"; client_no_context_takeover", True, 15),
    ((b"x-foo", b"permessage-deflate"), NO_TAKEOVER, False, 15),
])
def test_negotiation_table(offers, response, client_no_context_takeover, client_bits):
    result = negotiate(*offers)
    if response is None:
        assert result is None
    else:
        assert result == (response, {"client_no_context_takeover": client_no_context_takeover,
                                     "client_max_window_bits": client_bits, "server_window_bits": 12})


@pytest.mark.parametrize("value", [b"8", b"9", b"10", b"11", b"12", b"13", b"14", b"15",
                                   b"7", b"16", b"0", b"08", b"015", b"", b"1a", b"-9", b"99999999999999999999"])
def test_client_max_window_bits_values(value):
    result = negotiate(b"permessage-deflate; client_max_window_bits=" + value)
    if value in (b"8", b"9", b"10", b"11", b"12", b"13", b"14", b"15"):
        asked = min(int(value), 12)                 # at most our own window (the inflater's memory)
        assert result[0] == NO_TAKEOVER + b"; client_max_window_bits=%d" % asked
        assert result[1]["client_max_window_bits"] == asked
    else:
        assert result is None


@pytest.mark.parametrize("value", [b"8", b"9", b"10", b"11", b"12", b"13", b"14", b"15", b"7", b"16", b"", b"012"])
def test_server_max_window_bits_values(value):
    """Accepted when zlib can compress within it (9..15): we then use min(12, value) and say so."""
    result = negotiate(b"permessage-deflate; server_max_window_bits=" + value)
    if value.isdigit() and not value.startswith(b"0") and 9 <= int(value) <= 15:
        bits = min(12, int(value))
        assert result == (NO_TAKEOVER + b"; server_max_window_bits=%d" % bits,
                          {"client_no_context_takeover": False, "client_max_window_bits": 15,
                           "server_window_bits": bits})
    else:
        assert result is None
    assert negotiate(b"permessage-deflate; server_max_window_bits") is None


def test_full_offer_and_a_response_that_does_not_fit():
    offer = (b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
             b"server_max_window_bits=10; client_max_window_bits=11")
    expected = (NO_TAKEOVER + b"; client_no_context_takeover; server_max_window_bits=10; "
                b"client_max_window_bits=11")
    assert negotiate(offer)[0] == expected
    assert negotiate(offer, capacity=len(expected))[0] == expected
    assert negotiate(offer, capacity=len(expected) - 1) is None


# --- inflate and deflate ------------------------------------------------------------------------

def client_compress(message, compressor=None, wbits=-15):
    compressor = compressor or zlib.compressobj(wbits=wbits)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(TAIL)
    return data[:-4]


def split(data, cuts):
    pieces, position = [], 0
    for cut in cuts:
        pieces.append(data[position:position + cut])
        position += cut
    return pieces + [data[position:]]


MESSAGES = [b"", b"a", b"hello " * 1000, os.urandom(50000), bytes(range(256)) * 300]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: str(len(m)))
def test_inflate_python_compressed_messages_in_frames(message):
    compressed = client_compress(message)
    deflate = _core.WsDeflateForTest()
    assert deflate.inflate([compressed], 1 << 20) == (0, message)
    for cuts in ([0], [1], [1, 1, 1], [len(compressed) // 2], [7] * (len(compressed) // 7)):
        assert deflate.inflate(split(compressed, cuts), 1 << 20) == (0, message)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: str(len(m)))
@pytest.mark.parametrize("server_window_bits", [9, 12])
def test_deflate_output_inflates_with_zlib_within_the_window(message, server_window_bits):
    compressed = _core.WsDeflateForTest(server_window_bits=server_window_bits).deflate(message)
    assert not compressed.endswith(TAIL) or len(compressed) < 4
    assert zlib.decompressobj(wbits=-server_window_bits).decompress(compressed + TAIL) == message
    assert zlib.decompressobj(wbits=-15).decompress(compressed + TAIL) == message


def test_deflate_compresses_repetitive_text():
    message = b'{"type": "message", "text": "hello"}' * 500
    assert len(_core.WsDeflateForTest().deflate(message)) < len(message) // 20


@BOUNDED
@given(st.binary(max_size=3000))
def test_round_trip_through_our_own_inflate(message):
    deflate = _core.WsDeflateForTest()
    assert deflate.inflate([deflate.deflate(message)], 1 << 20) == (0, message)


def test_context_takeover_across_messages():
    """The client keeps its compressor: later messages refer back to earlier ones."""
    client = zlib.compressobj(wbits=-15)
    deflate = _core.WsDeflateForTest()
    first = b"the quick brown fox jumps over the lazy dog " * 20
    for message in (first, first, first + b"!", b"other"):
        compressed = client_compress(message, client)
        assert deflate.inflate([compressed], 1 << 20) == (0, message)
    assert len(client_compress(first, client)) < 20           # a back-reference, not the text


def test_client_no_context_takeover_resets_after_each_message():
    deflate = _core.WsDeflateForTest(client_no_context_takeover=True)
    message = b"the quick brown fox jumps over the lazy dog " * 20
    for _ in range(3):
        assert deflate.inflate([client_compress(message)], 1 << 20) == (0, message)
    # A client that (wrongly) kept its context refers to a window the server has dropped.
    client = zlib.compressobj(wbits=-15)
    assert deflate.inflate([client_compress(message, client)], 1 << 20) == (0, message)
    assert deflate.inflate([client_compress(message, client)], 1 << 20)[0] == 1007


def test_small_client_windows():
    for bits in range(8, 16):
        deflate = _core.WsDeflateForTest(client_max_window_bits=bits)
        message = os.urandom(300) * 40
        compressed = client_compress(message, wbits=-max(bits, 9))
        assert deflate.inflate([compressed], 1 << 20) == (0, message)


def test_a_final_block_ends_the_stream_and_the_next_message_starts_a_new_one():
    """A sender may end a message with a BFINAL block (RFC 7692 7.2.3.5)."""
    deflate = _core.WsDeflateForTest()
    for message in (b"first message", b"second message"):
        compressor = zlib.compressobj(wbits=-15)
        compressed = compressor.compress(message) + compressor.flush(zlib.Z_FINISH)
        assert deflate.inflate([compressed], 1 << 20) == (0, message)


@pytest.mark.parametrize("cuts", [[], [1], [100, 100], [3] * 300])
def test_deflate_bomb_stops_at_max_size(cuts):
    bomb = client_compress(bytes(1 << 20))
    assert len(bomb) < 2000
    status, output = _core.WsDeflateForTest().inflate(split(bomb, cuts), 64 * 1024)
    assert status == 1009
    assert len(output) <= 64 * 1024 + 1


def test_max_size_is_exact():
    message = os.urandom(1000) * 10
    compressed = client_compress(message)
    assert _core.WsDeflateForTest().inflate([compressed], len(message)) == (0, message)
    assert _core.WsDeflateForTest().inflate([compressed], len(message) - 1)[0] == 1009
    assert _core.WsDeflateForTest().inflate([client_compress(b"")], 0) == (0, b"")


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"\x07", b"\x04\x00\x00\x00\x00", b"\x00\x05\x00\xfa\xff"])
def test_corrupt_data_is_1007(data):
    assert _core.WsDeflateForTest().inflate([data], 1 << 20)[0] == 1007


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.binary(max_size=2000).map(client_compress),
                 st.tuples(st.binary(max_size=2000).map(client_compress), st.integers(0, 2000), st.integers(0, 255))
                 .map(lambda t: t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:])),
       st.lists(st.integers(0, 60), max_size=8), st.integers(0, 3000))
def test_fuzz_inflate_in_random_frames(data, cuts, max_size):
    """Any bytes, in any frames: 0, 1007 or 1009, never more than max_size + 1 bytes out, and the
    same verdict (and output, when 0) whatever the framing."""
    whole = _core.WsDeflateForTest().inflate([data], max_size)
    framed = _core.WsDeflateForTest().inflate(split(data, cuts), max_size)
    assert whole[0] in (0, 1007, 1009)
    assert len(whole[1]) <= max_size + 1 and len(framed[1]) <= max_size + 1
    assert framed[0] == whole[0]
    if whole[0] == 0:
        assert framed[1] == whole[1]

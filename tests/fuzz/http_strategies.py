"""Hypothesis strategies for HTTP/1.1 requests, shared by tests/test_parser_differential.py,
tests/test_parser_fuzz.py and the atheris script tests/fuzz/fuzz_parser.py.

`valid_requests()` draws a `Generated`: the request's bytes and the fields fastcore's
parse_request must report for it (a model written from RFC 9112, independent of the parser).
`mutated_requests()` draws bytes made from a valid request by one to three structural or byte-level
mutations (bare CR/LF, whitespace before a colon, duplicated Content-Length, obs-fold, control
bytes, non-hex chunk sizes, ...); they may or may not still be valid.

Not a test module (no test_ prefix): pytest does not collect it.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

TCHAR = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
# RFC 3986 pchar without pct-encoded (added separately), and the query's extra characters.
PCHAR = string.ascii_letters + string.digits + "-._~" + "!$&'()*+,;=" + ":@"
QUERY_EXTRA = "/?"

KNOWN_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "PROPFIND"]
# Field names whose semantics either parser acts on: generated only on purpose, never at random.
FRAMING_NAMES = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade",
                 "proxy-connection", "keep-alive", "te", "trailer"}
CONNECTION_VALUES = ["close", "keep-alive", "Close", "Keep-Alive", "KEEP-ALIVE", "x-token, close",
                     "keep-alive, x-token", "close, keep-alive"]


@dataclass
class Parts:
    """A request as pieces that structural mutations can edit before serialization."""
    prefix: bytes = b""
    request_line: bytes = b""
    header_lines: list = field(default_factory=list)      # each without its CRLF
    body: bytes = b""                                      # for Content-Length or no body
    chunked: bool = False
    chunks: list = field(default_factory=list)            # [(size line without CRLF, data)], last one ("0...", b"")
    trailer_lines: list = field(default_factory=list)

    def serialize(self) -> bytes:
        out = [self.prefix, self.request_line, b"\r\n"]
        for line in self.header_lines:
            out += [line, b"\r\n"]
        out.append(b"\r\n")
        if self.chunked:
            for i, (size_line, data) in enumerate(self.chunks):
                out += [size_line, b"\r\n"]
                if i < len(self.chunks) - 1:               # the last chunk carries no data
                    out += [data, b"\r\n"]
            for line in self.trailer_lines:
                out += [line, b"\r\n"]
            out.append(b"\r\n")
        else:
            out.append(self.body)
        return b"".join(out)

    def head(self) -> bytes:
        return self.serialize()[:len(self.prefix) + len(self.request_line) + 2 +
                                sum(len(line) + 2 for line in self.header_lines) + 2]


@dataclass
class Generated:
    """A valid request and what parse_request must say about it."""
    parts: Parts
    data: bytes
    expected: dict                      # the "ok" fields parse_request must return
    features: frozenset = frozenset()   # e.g. {"random-method", "chunk-ext-bws", "obs-text-value"}


# -- pieces ----------------------------------------------------------------------------------------

tokens = st.text(alphabet=TCHAR, min_size=1, max_size=12)
field_names = st.text(alphabet=TCHAR, min_size=1, max_size=16).filter(lambda n: n.lower() not in FRAMING_NAMES)
ows = st.sampled_from(["", "", " ", "  ", "\t", " \t"])


@st.composite
def field_values(draw):
    """visible ASCII words with SP/HTAB inside; sometimes an obs-text word (RFC 9110 5.5)."""
    words = draw(st.lists(st.text(alphabet=VCHAR, min_size=1, max_size=8), max_size=4))
    pieces = [w.encode("ascii") for w in words]
    obs = False
    if pieces and draw(st.integers(0, 9)) == 0:
        pieces[draw(st.integers(0, len(pieces) - 1))] = bytes(draw(st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=4)))
        obs = True
    value = b""
    for i, piece in enumerate(pieces):
        if i:
            value += draw(st.sampled_from([b" ", b"\t", b"  ", b" \t "]))
        value += piece
    return value, obs


@st.composite
def path_segments(draw):
    segments = draw(st.lists(st.text(alphabet=PCHAR, max_size=8), max_size=4))
    path = "/" + "/".join(segments)
    if draw(st.booleans()) and len(path) > 0:
        at = draw(st.integers(1, len(path)))
        path = path[:at] + "%" + draw(st.sampled_from(["20", "2F", "e9", "00", "7f"])) + path[at:]
    return path


@st.composite
def origin_forms(draw):
    path = draw(path_segments())
    if draw(st.booleans()):
        path += "?" + draw(st.text(alphabet=PCHAR + QUERY_EXTRA, max_size=16))
    return path


hosts = st.builds(lambda name, tld, port: name + tld + port,
                  st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=10),
                  st.sampled_from(["", ".example", ".com", ".test"]),
                  st.sampled_from(["", ":80", ":8080", ":1"]))


def _split_target(method, target):
    """Our parser's `path` for a target (RFC 9112 3.2 forms)."""
    if method == "CONNECT" and not target.startswith("/"):
        return target
    if target == "*":
        return "*"
    rest = target
    if not target.startswith("/"):
        scheme_end = target.index("://") + 3
        rest = target[scheme_end:]
        cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
        rest = rest[cut:]
    return rest.split("?", 1)[0]


@st.composite
def chunk_extensions(draw, allow_bws):
    """chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )"""
    out = ""
    for _ in range(draw(st.integers(0, 2))):
        bws = (lambda: draw(st.sampled_from(["", " ", "\t"]))) if allow_bws else (lambda: "")
        out += bws() + ";" + bws() + draw(tokens)
        kind = draw(st.sampled_from(["none", "token", "quoted"]))
        if kind == "token":
            out += bws() + "=" + bws() + draw(tokens)
        elif kind == "quoted":
            qd = draw(st.text(alphabet=VCHAR.replace('"', "").replace("\\", "") + " \t", max_size=8))
            if draw(st.booleans()):
                qd += "\\" + draw(st.sampled_from(['"', "\\", "a", " "]))
            out += bws() + "=" + bws() + '"' + qd + '"'
    return out


# -- valid requests --------------------------------------------------------------------------------

@st.composite
def valid_requests(draw, max_body=64):
    features = set()
    kind = draw(st.sampled_from(["known"] * 6 + ["token", "connect"]))
    if kind == "known":
        method = draw(st.sampled_from(KNOWN_METHODS))
    elif kind == "token":
        method = draw(tokens)
        features.add("random-method")
    else:
        method = "CONNECT"
    minor = draw(st.sampled_from([0, 1, 1]))

    if method == "CONNECT":
        target = draw(hosts)
        if ":" not in target:
            target += ":443"
    else:
        form = draw(st.sampled_from(["origin"] * 4 + ["absolute", "asterisk"]))
        if form == "asterisk" and method == "OPTIONS":
            target = "*"
        elif form == "absolute":
            target = draw(st.sampled_from(["http://", "https://", "HTTP://"])) + draw(hosts) + draw(origin_forms())
        else:
            target = draw(origin_forms())

    entries = []                                     # (name, value bytes, ows before, ows after)

    def add(name, value):
        entries.append((name, value))

    for _ in range(draw(st.integers(0, 5))):
        value, obs = draw(field_values())
        if obs:
            features.add("obs-text-value")
        add(draw(field_names), value)
    if minor == 1 or draw(st.booleans()):
        add(draw(st.sampled_from(["Host", "host", "HOST"])), draw(hosts).encode())
    connection = draw(st.sampled_from([None, None] + CONNECTION_VALUES))
    if connection is not None:
        add(draw(st.sampled_from(["Connection", "connection"])), connection.encode())
    expect = draw(st.sampled_from([None, None, None, "100-continue", "100-Continue"]))
    if expect is not None:
        add("Expect", expect.encode())

    body_kind = "none"
    if method != "CONNECT":
        body_kind = draw(st.sampled_from(["none", "length", "chunked"] if minor == 1 else ["none", "length"]))
    body = b""
    parts = Parts()
    if body_kind == "length":
        body = draw(st.binary(max_size=max_body))
        add(draw(st.sampled_from(["Content-Length", "content-length"])),
            (draw(st.sampled_from(["", "", "0", "00"])) + str(len(body))).encode())
    elif body_kind == "chunked":
        add(draw(st.sampled_from(["Transfer-Encoding", "transfer-encoding"])),
            draw(st.sampled_from([b"chunked", b"Chunked", b"CHUNKED"])))
        allow_bws = draw(st.integers(0, 7)) == 0
        chunks = []
        for data in draw(st.lists(st.binary(min_size=1, max_size=max_body // 2), max_size=4)):
            size = format(len(data), draw(st.sampled_from(["x", "X"])))
            size = "0" * draw(st.integers(0, 2)) + size
            ext = draw(chunk_extensions(allow_bws))
            if allow_bws and draw(st.booleans()):
                ext = draw(st.sampled_from([" ", "\t"])) + ";" + draw(tokens) + ext
            if re.search(r"[ \t]", re.sub(r'"(?:[^"\\]|\\.)*"', "", ext)):
                features.add("chunk-ext-bws")
            chunks.append(((size + ext).encode("latin-1"), data))
            body += data
        last = "0" * draw(st.integers(1, 3)) + draw(chunk_extensions(False))
        chunks.append((last.encode("latin-1"), b""))
        parts.chunked = True
        parts.chunks = chunks
        for _ in range(draw(st.integers(0, 2))):
            value, _obs = draw(field_values())
            parts.trailer_lines.append(draw(field_names).encode() + b":" + draw(ows).encode() + value)

    order = draw(st.permutations(range(len(entries))))
    headers = []
    for index in order:
        name, value = entries[index]
        before, after = draw(ows), (draw(ows) if value else "")
        parts.header_lines.append(name.encode() + b":" + before.encode() + value + after.encode())
        headers.append((name.encode(), value))
    parts.request_line = f"{method} {target} HTTP/1.{minor}".encode("latin-1")
    if not parts.chunked:
        parts.body = body
    data = parts.serialize()
    head_length = len(parts.head())
    lowered = [(n.lower(), v.lower()) for n, v in headers]
    conn_tokens = [t.strip(b" \t") for n, v in lowered if n == b"connection" for t in v.split(b",")]
    expected = {
        "method": method,
        "target": target,
        "path": _split_target(method, target),
        "version": f"1.{minor}",
        "headers": headers,
        "content_length": len(body) if body_kind == "length" else None,
        "chunked": body_kind == "chunked",
        "body": body,
        "head_length": head_length,
        "request_length": len(data),
        "connection_close": b"close" in conn_tokens,
        "connection_keep_alive": b"keep-alive" in conn_tokens,
        "expect_continue": any(n == b"expect" for n, v in lowered),
    }
    return Generated(parts, data, expected, frozenset(features))


# -- mutations -------------------------------------------------------------------------------------

CONTROL_BYTES = [c for c in range(0x20) if c not in (9,)] + [0x7F]
NON_TOKEN_BYTES = list(b'"(),/:;<=>?@[\\]{} \t') + [0x00, 0x01, 0x7F, 0x80, 0xFF]


def _pick(draw, items):
    return draw(st.integers(0, len(items) - 1)) if items else None


def _header_index(draw, parts):
    return _pick(draw, parts.header_lines)


def m_space_before_colon(draw, parts):
    i = _header_index(draw, parts)
    if i is not None and b":" in parts.header_lines[i]:
        name, _, value = parts.header_lines[i].partition(b":")
        parts.header_lines[i] = name + draw(st.sampled_from([b" ", b"\t", b"  "])) + b":" + value
    return "space-before-colon"


def m_duplicate_content_length(draw, parts):
    existing = [line.partition(b":")[2].strip() for line in parts.header_lines
                if line.lower().startswith(b"content-length:")]
    value = draw(st.sampled_from(existing + [b"0", b"1", b"5", str(len(parts.body)).encode()]))
    at = draw(st.integers(0, len(parts.header_lines)))
    parts.header_lines.insert(at, draw(st.sampled_from([b"Content-Length", b"content-length"])) + b": " + value)
    return "duplicate-content-length"


def m_obs_fold(draw, parts):
    if parts.header_lines:
        at = draw(st.integers(1, len(parts.header_lines)))
        parts.header_lines.insert(at, draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(st.sampled_from([b"folded", b"x: y", b""])))
    return "obs-fold"


def m_control_in_value(draw, parts):
    i = _header_index(draw, parts)
    if i is not None:
        line = parts.header_lines[i]
        colon = line.find(b":")
        at = draw(st.integers(colon + 1, len(line))) if colon >= 0 else len(line)
        parts.header_lines[i] = line[:at] + bytes([draw(st.sampled_from(CONTROL_BYTES))]) + line[at:]
    return "control-in-value"


def m_bad_chunk_size(draw, parts):
    if parts.chunked and parts.chunks:
        i = _pick(draw, parts.chunks)
        size_line, data = parts.chunks[i]
        choice = draw(st.sampled_from(["replace", "insert", "prefix", "ws-after", "overflow"]))
        if choice == "replace":
            size_line = draw(st.sampled_from([b"g", b"0x5", b"-5", b"+5", b"", b"5 5", b"z;a", b";a", b"\x00"]))
        elif choice == "insert":
            at = draw(st.integers(0, len(size_line)))
            size_line = size_line[:at] + bytes([draw(st.sampled_from(list(b"gGxX-+ \t\x00\x7f;=\"")))]) + size_line[at:]
        elif choice == "prefix":
            size_line = draw(st.sampled_from([b" ", b"\t", b"0", b"00000000000000000"])) + size_line
        elif choice == "ws-after":
            end = len(size_line.split(b";")[0])
            size_line = size_line[:end] + draw(st.sampled_from([b" ", b"\t", b"  "])) + size_line[end:]
        else:
            size_line = draw(st.sampled_from([b"f" * 16, b"1" + b"0" * 15, b"ffffffffffffffffff"]))
        parts.chunks[i] = (size_line, data)
    return "bad-chunk-size"


def m_chunk_data_length(draw, parts):
    data_chunks = [i for i, (s, d) in enumerate(parts.chunks) if d]
    if parts.chunked and data_chunks:
        i = draw(st.sampled_from(data_chunks))
        size_line, data = parts.chunks[i]
        how = draw(st.sampled_from(["longer", "shorter", "no-crlf"]))
        if how == "longer":
            data += b"X"
        elif how == "shorter":
            data = data[:-1]
        else:
            data += draw(st.sampled_from([b"\n", b"\r", b"AB"]))
        parts.chunks[i] = (size_line, data)
    return "chunk-data-length"


def m_content_length_with_te(draw, parts):
    if parts.chunked:
        parts.header_lines.insert(draw(st.integers(0, len(parts.header_lines))),
                                  b"Content-Length: " + draw(st.sampled_from([b"0", b"5", b"100"])))
    else:
        parts.header_lines.insert(draw(st.integers(0, len(parts.header_lines))), b"Transfer-Encoding: chunked")
    return "content-length-with-te"


TE_VALUES = [b"gzip, chunked", b"chunked, gzip", b"chunked, chunked", b"identity", b"chunked;q=1",
             b", chunked", b"chunked,", b"chunked ,", b"x", b"", b"\tchunked", b"chunked\t", b"chunkedx",
             b"deflate,chunked", b"gzip"]


def m_transfer_encoding(draw, parts):
    value = draw(st.sampled_from(TE_VALUES))
    lines = [i for i, line in enumerate(parts.header_lines) if line.lower().startswith(b"transfer-encoding:")]
    if lines and draw(st.booleans()):
        parts.header_lines[lines[0]] = b"Transfer-Encoding: " + value
    else:
        parts.header_lines.insert(draw(st.integers(0, len(parts.header_lines))), b"Transfer-Encoding: " + value)
    return "transfer-encoding"


BAD_CONTENT_LENGTHS = [b"+5", b"-1", b"5,5", b"5, 5", b"5 5", b"0x10", b"", b"1e3", b" ", b"99999999999999999999",
                       b"0000000000000000001", b"123456789012345678", b"\xff", b"1.0"]


def m_content_length_value(draw, parts):
    value = draw(st.sampled_from(BAD_CONTENT_LENGTHS))
    lines = [i for i, line in enumerate(parts.header_lines) if line.lower().startswith(b"content-length:")]
    if lines:
        parts.header_lines[lines[0]] = b"Content-Length: " + value
    else:
        parts.header_lines.append(b"Content-Length: " + value)
    return "content-length-value"


VERSIONS = [b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.10", b"http/1.1", b"HTTP/1", b"HTTP/11",
            b"HTTP/1.1 ", b"HTTP/3.0", b"HTTP/9.9", b"HTTP/1.a", b"HTTP /1.1", b"HTTP/1.0", b"HTTP/1.1"]


def m_version(draw, parts):
    method, _, rest = parts.request_line.partition(b" ")
    target, _, _version = rest.rpartition(b" ")
    parts.request_line = method + b" " + target + b" " + draw(st.sampled_from(VERSIONS))
    return "version"


def m_host_count(draw, parts):
    hosts = [i for i, line in enumerate(parts.header_lines) if line.lower().startswith(b"host:")]
    if hosts and draw(st.booleans()):
        del parts.header_lines[hosts[0]]
    else:
        parts.header_lines.insert(draw(st.integers(0, len(parts.header_lines))),
                                  b"Host: " + draw(st.sampled_from([b"a", b"other.example", b""])))
    return "host-count"


def m_leading_empty_line(draw, parts):
    parts.prefix = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\n", b" ", b"\r"])) + parts.prefix
    return "leading-empty-line"


def m_expect(draw, parts):
    parts.header_lines.insert(draw(st.integers(0, len(parts.header_lines))),
                              b"Expect: " + draw(st.sampled_from([b"100-continue", b"100-Continue", b"foo", b"",
                                                                  b"100-continue, foo", b"200-ok"])))
    return "expect"


def m_trailer(draw, parts):
    if parts.chunked:
        line = draw(st.sampled_from([b"no colon", b"X : y", b" folded", b"X: a\x01b", b": empty", b"X: y",
                                     b"Content-Length: 5", b"Transfer-Encoding: chunked", b"X:\ty\t"]))
        parts.trailer_lines.insert(draw(st.integers(0, len(parts.trailer_lines))), line)
    return "trailer"


def m_request_line_whitespace(draw, parts):
    line = parts.request_line
    spaces = [i for i, b in enumerate(line) if b == 0x20]
    if spaces:
        at = draw(st.sampled_from(spaces))
        line = line[:at] + draw(st.sampled_from([b"  ", b"\t", b" \t"])) + line[at + 1:]
    else:
        line += b" "
    parts.request_line = line
    return "request-line-whitespace"


def m_method(draw, parts):
    method, _, rest = parts.request_line.partition(b" ")
    method = draw(st.sampled_from([method.lower(), method + b"\x00", b"G\x7fT", b"GET\t", b"", b"GE(T",
                                   b"PRI", b"CONNECT", method + b"X", b"M-SEARCH"]))
    parts.request_line = method + b" " + rest
    return "method"


def m_target_byte(draw, parts):
    method, _, rest = parts.request_line.partition(b" ")
    target, _, version = rest.rpartition(b" ")
    at = draw(st.integers(0, len(target)))
    byte = draw(st.sampled_from([b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff", b"#", b'"', b"<", b"{", b"|", b"\\",
                                 b"^", b"`", b"%", b"%zz", b" ", b"\t"]))
    parts.request_line = method + b" " + target[:at] + byte + target[at:] + b" " + version
    return "target-byte"


def m_header_name_byte(draw, parts):
    i = _header_index(draw, parts)
    if i is not None:
        line = parts.header_lines[i]
        colon = line.find(b":")
        at = draw(st.integers(0, max(colon, 0)))
        parts.header_lines[i] = line[:at] + bytes([draw(st.sampled_from(NON_TOKEN_BYTES))]) + line[at:]
    return "header-name-byte"


def m_line_ending(draw, parts):
    """A CR doubled or removed at the end of one head line (bare LF / CR CR LF)."""
    i = _header_index(draw, parts)
    if i is not None:
        parts.header_lines[i] += draw(st.sampled_from([b"\r", b"\r\r", b"\n", b"\x00"]))
    return "line-ending"


STRUCTURAL = [m_space_before_colon, m_duplicate_content_length, m_obs_fold, m_control_in_value,
              m_bad_chunk_size, m_chunk_data_length, m_content_length_with_te, m_transfer_encoding,
              m_content_length_value, m_version, m_host_count, m_leading_empty_line, m_expect, m_trailer,
              m_request_line_whitespace, m_method, m_target_byte, m_header_name_byte, m_line_ending]


def b_flip(draw, data):
    if not data:
        return data, "flip"
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:], "flip"


def b_insert(draw, data):
    at = draw(st.integers(0, len(data)))
    byte = draw(st.one_of(st.integers(0, 255), st.sampled_from([13, 10, 32, 9, 58, 0])))
    return data[:at] + bytes([byte]) + data[at:], "insert"


def b_delete(draw, data):
    if not data:
        return data, "delete"
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + data[at + 1:], "delete"


def b_bare(draw, data):
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.sampled_from([b"\r", b"\n"])) + data[at:], "bare-cr-lf"


def b_crlf(draw, data):
    positions = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\r\n"]
    if not positions:
        return data, "crlf"
    at = draw(st.sampled_from(positions))
    return data[:at] + draw(st.sampled_from([b"\n", b"\r", b"\n\r", b"\r\r\n"])) + data[at + 2:], "crlf"


def b_truncate(draw, data):
    return data[:draw(st.integers(0, len(data)))], "truncate"


BYTE_LEVEL = [b_flip, b_insert, b_delete, b_bare, b_crlf, b_truncate]


@dataclass
class Mutated:
    data: bytes
    base: Generated
    operations: tuple


@st.composite
def mutated_requests(draw, max_body=64):
    base = draw(valid_requests(max_body=max_body))
    parts = replace(base.parts, header_lines=list(base.parts.header_lines), chunks=list(base.parts.chunks),
                    trailer_lines=list(base.parts.trailer_lines))
    operations = []
    for _ in range(draw(st.integers(0, 2))):
        operations.append(draw(st.sampled_from(STRUCTURAL))(draw, parts))
    data = parts.serialize()
    byte_ops = draw(st.integers(0 if operations else 1, 2))
    for _ in range(byte_ops):
        data, name = draw(st.sampled_from(BYTE_LEVEL))(draw, data)
        operations.append(name)
    return Mutated(data, base, tuple(operations))

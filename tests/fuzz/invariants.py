"""The fuzz invariant of fastcore's request parser, shared by tests/test_parser_fuzz.py and the
atheris script tests/fuzz/fuzz_parser.py:

    parse_request returns a request, needs more bytes, or an error status (one of 400, 413, 414,
    417, 431, 501, 505); it never crashes, never reads past the input.

`check(data, limits)` runs parse_request and asserts everything that follows from it:
  * the result's shape and types, the status set, every limit respected by an accepted request;
  * an accepted request is made of bytes of the input: the head ends with CRLF CRLF inside the
    input, method / target / path / header fields are where the head says, a Content-Length body
    is the bytes after the head, a chunked body is what a reference decoder makes of the input;
  * "never reads past the input", as far as Python can observe it: the verdict depends only on
    the bytes the parser was given and needed. An accepted request is unchanged when bytes are
    appended and when only data[:request_length] is given; an error stays an error when bytes are
    appended; a proper prefix of an accepted request needs more bytes. (parse_request copies the
    input into a bytearray, which always has a trailing NUL, so an over-read of one byte is
    invisible here: tests/test_parser_guard_page.py parses at a guard page for that.)
Not a test module: pytest does not collect it.
"""
import re

from fastcore._core import parse_request

STATUSES = {400, 413, 414, 417, 431, 501, 505}
DEFAULT_LIMITS = dict(max_request_line=8190, max_head_size=32768, max_header_count=100, max_body_size=1 << 40)
FIELDS = {"method", "target", "path", "version", "headers", "content_length", "chunked", "body", "head_length",
          "request_length", "connection_close", "connection_keep_alive", "expect_continue"}
TCHAR = set(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def reference_dechunk(encoded):
    """Decode a chunked body that fastcore accepted (lenient: only sizes and data are read)."""
    out, position = [], 0
    while True:
        end = encoded.index(b"\r\n", position)
        size = int(re.match(rb"[0-9a-fA-F]+", encoded[position:end]).group(0), 16)
        position = end + 2
        if size == 0:
            return b"".join(out)
        out.append(encoded[position:position + size])
        position += size + 2


def check_result_shape(data, result, limits):
    assert isinstance(result, tuple) and len(result) == 2, result
    kind, value = result
    assert kind in ("ok", "need-more", "error"), result
    if kind == "need-more":
        assert value is None
        return
    if kind == "error":
        assert value in STATUSES, result
        return
    fields = value
    assert isinstance(fields, dict) and set(fields) == FIELDS, fields
    head_length, request_length = fields["head_length"], fields["request_length"]
    assert 0 < head_length <= request_length <= len(data), (head_length, request_length, len(data))
    assert head_length <= limits["max_head_size"]
    head = data[:head_length]
    assert head.endswith(b"\r\n\r\n")
    request_line = head.split(b"\r\n", 1)[0]
    assert len(request_line) <= limits["max_request_line"]
    method = fields["method"].encode("ascii")
    assert method and all(byte in TCHAR for byte in method)
    assert request_line.startswith(method + b" ")
    target = fields["target"].encode("latin-1")
    assert request_line == method + b" " + target + b" HTTP/" + fields["version"].encode()
    assert fields["version"] in ("1.0", "1.1")
    assert fields["path"].encode("latin-1") in target
    headers = fields["headers"]
    assert len(headers) <= limits["max_header_count"]
    lines = head[len(request_line) + 2:-4].split(b"\r\n") if len(head) > len(request_line) + 4 else []
    assert len(lines) == len(headers), (lines, headers)
    for (name, value), line in zip(headers, lines):
        assert name and all(byte in TCHAR for byte in name), name
        assert line.startswith(name + b":")
        assert value == line[len(name) + 1:].strip(b" \t")
        assert not any(byte < 32 and byte != 9 or byte == 127 for byte in value), value
    hosts = [v for n, v in headers if n.lower() == b"host"]
    assert len(hosts) <= 1 and (len(hosts) == 1 or fields["version"] == "1.0")
    body = fields["body"]
    assert len(body) <= limits["max_body_size"]
    if fields["chunked"]:
        assert fields["content_length"] is None
        assert fields["version"] == "1.1"
        assert body == reference_dechunk(data[head_length:request_length])
    else:
        assert body == data[head_length:request_length]
        if fields["content_length"] is None:
            assert body == b""
        else:
            assert fields["content_length"] == len(body)
    for flag in ("chunked", "connection_close", "connection_keep_alive", "expect_continue"):
        assert isinstance(fields[flag], bool)


def check(data, limits=None, prefixes=(), suffix=b"\r\n0\r\nX"):
    """Parse `data` under `limits` and assert the invariant (see the module docstring). `prefixes`
    are lengths k for which data[:k] is checked against the verdict on data. Returns the result."""
    limits = dict(DEFAULT_LIMITS, **(limits or {}))
    result = parse_request(data, **limits)
    check_result_shape(data, result, limits)
    kind, value = result
    if kind == "ok":
        length = value["request_length"]
        assert parse_request(data + suffix, **limits) == result
        assert parse_request(data[:length], **limits) == result
    elif kind == "error":
        extended = parse_request(data + suffix, **limits)
        assert extended[0] == "error", (result, extended)
    for k in prefixes:
        if k >= len(data):
            continue
        partial = parse_request(data[:k], **limits)
        check_result_shape(data[:k], partial, limits)
        if kind == "ok" and k < value["request_length"]:
            assert partial == ("need-more", None), (k, partial)
        if partial[0] == "ok":
            assert result == partial, (k, partial, result)
        if partial[0] == "error":
            assert kind == "error", (k, partial, result)
    return result

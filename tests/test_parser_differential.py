"""Differential tests: fastcore's request parser against httptools (llhttp), every leniency off.

Each generated request is fed to both parsers as ONE complete buffer. They must agree on
accept / need-more / reject and, for accepted requests, on method, target, version, header list,
body, keep-alive and where the request ends. A disagreement is allowed only when `triage()` names
it:
  * an EXPECTED_DIFFERENCES entry: a deliberate difference, explained (with the RFC 9110 / 9112
    section) in the predicate's docstring. Each predicate recognizes its class as narrowly as it
    can, usually by *reducing* the input (removing what the class is about) and requiring the
    parsers to agree on the reduced input, so a new kind of disagreement is never absorbed by an
    old class;
  * a KNOWN_BUGS entry: a defect of ours, narrowed to its exact shape (none is open; the ones
    this file found are fixed and kept as FIXED_BUG_EXAMPLES at the end of the file).

Runs are deterministic for CI (derandomize=True, a few hundred examples per test, < 30 s for the
file). For a longer, randomized run:

    FASTCORE_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_parser_differential.py

(any FASTCORE_FUZZ_EXAMPLES value switches derandomization off and uses that many examples per
hypothesis test; add FASTCORE_FUZZ_SEED=<int> to replay one random run). A failing example is
printed by hypothesis with the disagreement, both results and the input bytes.
"""
import os
import re
import sys
from dataclasses import dataclass, field

import httptools
import pytest
from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))
from http_strategies import mutated_requests, valid_requests  # noqa: E402

from fastcore._core import parse_request  # noqa: E402

# -- run configuration ---------------------------------------------------------------------------

_LONG_RUN = int(os.environ.get("FASTCORE_FUZZ_EXAMPLES", "0") or 0)
# conftest's hang guard kills a test after 60 s; a long run needs longer.
pytestmark = pytest.mark.hang_timeout(24 * 3600 if _LONG_RUN else 60)


def fuzz_settings(ci_examples):
    """CI: `ci_examples` examples, derandomized, no example database (the same examples on every
    machine and every run). FASTCORE_FUZZ_EXAMPLES=N: N random examples per test."""
    return settings(
        max_examples=_LONG_RUN or ci_examples,
        derandomize=not _LONG_RUN,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def maybe_seeded(test):
    value = os.environ.get("FASTCORE_FUZZ_SEED")
    return seed(int(value))(test) if (value and _LONG_RUN) else test


# -- the two parsers -------------------------------------------------------------------------------

def run_ours(data):
    return parse_request(data)


def ours_keep_alive(fields):
    """What the server makes of fastcore's flags (start_body in pyext/serve.pxi, RFC 9112
    9.3): `close` always wins; HTTP/1.0 persists only with keep-alive."""
    if fields["connection_close"]:
        return False
    return fields["version"] == "1.1" or fields["connection_keep_alive"]


class _StopAfterFirstMessage(Exception):
    """Raised from on_message_complete: parse_request handles exactly one request, so llhttp is
    stopped there too (what follows would be a pipelined next request)."""


@dataclass
class Theirs:
    outcome: str = "need-more"                       # "ok", "need-more" or "error"
    error_type: str = ""
    error_reason: str = ""
    upgrade: bool = False                            # HttpParserUpgrade (CONNECT, Upgrade:)
    method: str = ""
    url: bytes = b""
    version: str = ""
    headers: list = field(default_factory=list)      # [(name, value)] of the head
    trailers: list = field(default_factory=list)     # fields after the last chunk
    body: bytes = b""
    keep_alive: bool = None
    headers_complete: bool = False

    def summary(self):
        if self.outcome == "error":
            return f"error {self.error_type}: {self.error_reason}"
        if self.outcome == "need-more":
            return "need-more (no error, message not complete)"
        return (f"ok method={self.method!r} url={self.url!r} version={self.version} "
                f"headers={self.headers!r} body={self.body!r} upgrade={self.upgrade} keep_alive={self.keep_alive}")


def run_theirs(data):
    """Feed `data` to a fresh httptools request parser in one call (no leniency is turned on:
    set_dangerous_leniencies() is never called, so all of them keep their default, off)."""
    result = Theirs()

    class Protocol:
        def on_url(self, url):
            result.url += url

        def on_header(self, name, value):
            (result.trailers if result.headers_complete else result.headers).append((name, value))

        def on_headers_complete(self):
            result.headers_complete = True

        def on_body(self, body):
            result.body += body

        def on_message_complete(self):
            result.outcome = "ok"
            raise _StopAfterFirstMessage()

    parser = httptools.HttpRequestParser(Protocol())
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        result.upgrade = True
    except httptools.HttpParserError as error:
        if result.outcome != "ok":                   # our own stop after the message is not an error
            result.outcome = "error"
            result.error_type = type(error).__name__
            result.error_reason = str(error)
    if result.outcome == "ok":
        result.method = parser.get_method().decode("ascii")
        result.version = parser.get_http_version()
        result.keep_alive = bool(parser.should_keep_alive())
    return result


def theirs_completes_at(data, length):
    """True when llhttp completes the first message on exactly data[:length] and not before."""
    return (run_theirs(data[:length]).outcome == "ok"
            and (length == 0 or run_theirs(data[:length - 1]).outcome != "ok"))


def _strip_ows(value):
    # llhttp reports a field value with its trailing whitespace; RFC 9112 5 says OWS around the
    # value is not part of it (fastcore strips it), so values are compared without it.
    return value.rstrip(b" \t")


def disagreement(data, ours, theirs):
    """None when the two parsers agree on `data`, else a one-line description of the difference."""
    verdict = ours[0]
    if verdict != theirs.outcome:
        return f"verdict: ours {ours[0]} {ours[1] if ours[0] == 'error' else ''}/ theirs {theirs.outcome}"
    if verdict != "ok":
        return None                                  # both need more, or both reject (statuses not compared)
    fields = ours[1]
    if fields["method"] != theirs.method:
        return f"method: {fields['method']!r} / {theirs.method!r}"
    if fields["target"].encode("latin-1") != theirs.url:
        return f"target: {fields['target']!r} / {theirs.url!r}"
    if fields["version"] != theirs.version:
        return f"version: {fields['version']} / {theirs.version}"
    if fields["headers"] != [(name, _strip_ows(value)) for name, value in theirs.headers]:
        return "headers differ"
    if not theirs.upgrade and fields["body"] != theirs.body:
        return "body differs"
    if ours_keep_alive(fields) != theirs.keep_alive:
        return f"keep-alive: ours {ours_keep_alive(fields)} / theirs {theirs.keep_alive}"
    if not theirs_completes_at(data, fields["request_length"]):
        return f"request length: ours {fields['request_length']}, llhttp ends elsewhere"
    return None


# -- helpers for the triage predicates (lenient splitting of the input, for predicates only) ------

TCHAR = set(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# llhttp's method table for HTTP requests (llhttp 9, as bundled by httptools 0.6 - 0.9).
LLHTTP_METHODS = {
    b"DELETE", b"GET", b"HEAD", b"POST", b"PUT", b"CONNECT", b"OPTIONS", b"TRACE", b"COPY", b"LOCK",
    b"MKCOL", b"MOVE", b"PROPFIND", b"PROPPATCH", b"SEARCH", b"UNLOCK", b"BIND", b"REBIND", b"UNBIND",
    b"ACL", b"REPORT", b"MKACTIVITY", b"CHECKOUT", b"MERGE", b"M-SEARCH", b"NOTIFY", b"SUBSCRIBE",
    b"UNSUBSCRIBE", b"PATCH", b"PURGE", b"MKCALENDAR", b"LINK", b"UNLINK", b"SOURCE", b"QUERY", b"PRI",
}
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 9112 7.1 / 7.1.1: chunk-size [ chunk-ext ], chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )
CHUNK_LINE = re.compile(rb"[0-9a-fA-F]+(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|"
                        + _QUOTED + rb"))?)*")
URI_AUTHORITY = re.compile(rb"^[A-Za-z0-9\-._~!$&'()*+,;=:@%\[\]]*$")
VERSION_AT_END = re.compile(rb" HTTP/([0-9])\.([0-9])$")
CHUNK_LINE_MAX = 4096                                # parser.pxi


def _is_token(value):
    return bool(value) and all(byte in TCHAR for byte in value)


def _strip_crlf_lines(data):
    while data.startswith(b"\r\n"):
        data = data[2:]
    return data


def _request_line(data):
    return data.split(b"\r\n", 1)[0]


def _raw_head_lines(data):
    """The head's lines (without CRLF) up to the first empty line, or all lines if there is none."""
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def _raw_field_values(data, name):
    """Raw values (after the colon, OWS kept) of head fields spelled `name` (lowercase) exactly."""
    values = []
    for line in _raw_head_lines(data)[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.lower() == name:
            values.append(value)
    return values


def _edit_head_fields(data, edit):
    """Rewrite each head field line with edit(name, value) -> new line or None (drop it)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    out = lines[:1]
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        new = edit(name, value) if colon else line
        if new is not None:
            out.append(new)
    return b"\r\n".join(out) + sep + rest


def _replace_target(data, target):
    line, sep, rest = data.partition(b"\r\n")
    pieces = line.split(b" ")
    return b" ".join([pieces[0], target, pieces[-1]]) + sep + rest if len(pieces) >= 3 else data


def _chunk_lines(data):
    """(start, end) offsets of the chunk-size lines (without CRLF) of a chunked body, walked
    leniently from the end of the head."""
    body_start = data.find(b"\r\n\r\n")
    if body_start < 0:
        return []
    position, lines = body_start + 4, []
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return lines
        lines.append((position, end))
        digits = re.match(rb"[0-9a-fA-F]+", data[position:end])
        if not digits:
            return lines
        size = int(digits.group(0), 16)
        if size == 0:
            return lines
        position = end + 2 + size + 2


def _edit_chunk_lines(data, edit):
    out, previous = [], 0
    for start, end in _chunk_lines(data):
        out += [data[previous:start], edit(data[start:end])]
        previous = end
    return b"".join(out) + data[previous:]


def _unquoted(line):
    return re.sub(rb'"(?:[^"\\]|\\.)*"', b"", line)


_reduction_depth = [0]


def _agrees_once_reduced(reduced, original):
    """`reduced` (the input with what one difference class is about removed) shows no
    disagreement, or only other listed ones. Reductions must change the input; depth is bounded."""
    if reduced == original or _reduction_depth[0] >= 6:
        return False
    _reduction_depth[0] += 1
    try:
        ours, theirs = run_ours(reduced), run_theirs(reduced)
        return disagreement(reduced, ours, theirs) is None or triage(reduced, ours, theirs) is not None
    finally:
        _reduction_depth[0] -= 1


# -- expected differences ---------------------------------------------------------------------------
# Request line.

def extension_method(data, ours, theirs):
    """A method llhttp does not know (`FOO`, lowercase `get`). RFC 9110 9.1: method = token and
    the set is extensible (16.1); fastcore parses any token and leaves "not implemented" (501) to
    the application, llhttp only accepts the methods in its table."""
    method = _request_line(_strip_crlf_lines(data)).split(b" ", 1)[0]
    return (ours[0] != "error" and theirs.error_type == "HttpParserInvalidMethodError"
            and _is_token(method) and method not in LLHTTP_METHODS)


def pri_method(data, ours, theirs):
    """The PRI method. llhttp takes `PRI` as the start of the HTTP/2 connection preface
    (RFC 9113 3.4) and rejects anything but the exact preface; to an HTTP/1.1 server PRI is an
    extension method (RFC 9110 9.1) left to the application. (The exact preface,
    `PRI * HTTP/2.0`, gets 505 from fastcore.)"""
    return (_request_line(_strip_crlf_lines(data)).startswith(b"PRI ") and ours[0] != "error"
            and theirs.error_reason == "Expected HTTP/2 Connection Preface")


def empty_lines_before_request_line(data, ours, theirs):
    """CRLFs before the request line. RFC 9112 2.2: a server SHOULD ignore at least one empty line
    received before the request line. fastcore does, in the connection layer
    (serve_buffered_requests in pyext/serve.pxi consumes them before head_scan);
    parse_request exposes head_scan + parse_head only and reports 400 where llhttp skips them.
    Skipped as the server skips them, the parsers must agree."""
    return (data.startswith(b"\r\n") and ours == ("error", 400)
            and _agrees_once_reduced(_strip_crlf_lines(data), data))


def bare_cr_or_lf_before_request_line(data, ours, theirs):
    """A bare CR or LF (not a CRLF pair) before the request line. RFC 9112 2.2 only asks to ignore
    empty lines (CRLF); a bare CR must be treated as invalid, and taking a lone LF as a line
    terminator is a MAY that fastcore declines (CRLF only: parsers that disagree on line ends are
    a smuggling vector). llhttp skips any CR or LF there."""
    return (_strip_crlf_lines(data)[:1] in (b"\r", b"\n") and ours == ("error", 400)
            and theirs.outcome != "error")


def request_line_whitespace_runs(data, ours, theirs):
    """Several SP, or HTAB, between the request line's parts. RFC 9112 3: the grammar is single
    SP; recipients MAY parse on whitespace-delimited word boundaries, fastcore does not (strict like
    the rest of its head parsing), llhttp does. Collapsed to single SPs, the parsers must agree."""
    line = _request_line(data)
    if ours != ("error", 400) or theirs.outcome == "error" or not re.search(rb"  |\t", line):
        return False
    return _agrees_once_reduced(re.sub(rb"[ \t]+", b" ", line) + data[len(line):], data)


def http09_request_line(data, ours, theirs):
    """A request line without HTTP-version (`GET /`): llhttp takes it as HTTP/0.9. fastcore
    implements HTTP/1.0 and 1.1 (RFC 9112 2.3, 3: request-line = method SP target SP version)
    and answers 400."""
    first = _strip_crlf_lines(data).split(b"\n", 1)[0].rstrip(b"\r")
    return (ours == ("error", 400) and theirs.outcome != "error"
            and (theirs.outcome != "ok" or theirs.version == "0.9") and len(first.split(b" ")) == 2)


def http_version_not_supported(data, ours, theirs):
    """HTTP/2.0 (or 0.9) in an HTTP/1.x request line: fastcore implements HTTP/1.0 and 1.1 and
    answers 505 (RFC 9110 15.6.6; RFC 9112 2.3: these parsing rules are HTTP/1.x's). llhttp
    accepts 0.9 and 2.0 in the request line."""
    match = VERSION_AT_END.search(_request_line(_strip_crlf_lines(data)))
    return (ours == ("error", 505) and theirs.outcome != "error" and match is not None
            and match.group(1) != b"1")


def _served_target_form(method, target):
    """The request-target forms fastcore routes (locate_path in parser.pxi)."""
    if target.startswith(b"/"):
        return True
    if target == b"*":
        return method == b"OPTIONS"
    if method == b"CONNECT":
        return True
    return re.match(rb"^(?i:https?)://.", target) is not None


def target_form_not_served(data, ours, theirs):
    """A request-target in none of the forms fastcore serves: origin-form, absolute-form with an
    http or https scheme, `*` with OPTIONS, authority-form with CONNECT (RFC 9112 3.2.1-3.2.4).
    Another scheme (`TTP://h/p`), `*` with another method, a bare word: fastcore answers 400
    (3.2.4: asterisk-form is only for OPTIONS; a server need not serve other schemes). llhttp
    accepts any URL shape. With the target replaced by `/`, the parsers must agree."""
    pieces = _request_line(data).split(b" ")
    if ours != ("error", 400) or theirs.outcome == "error" or len(pieces) != 3:
        return False
    if _served_target_form(pieces[0], pieces[1]):
        return False
    return _agrees_once_reduced(_replace_target(data, b"/"), data)


def target_bytes_outside_uri(data, ours, theirs):
    """A request-target in absolute-form or CONNECT's authority-form with an authority character
    outside RFC 3986. fastcore checks the target's bytes (visible ASCII, no '#': TARGET_BYTE in
    parser.pxi) and leaves interpreting the URI to the application; it does not validate the
    authority (it does not tunnel, and Host is what it checks). llhttp rejects these. (Raw bytes
    >= 0x80 were a difference here too until both parsers refused them.)"""
    if theirs.error_type != "HttpParserInvalidURLError" or ours[0] == "error":
        return False
    parts = _request_line(_strip_crlf_lines(data)).split(b" ")
    if len(parts) < 3:
        return ours[0] == "need-more"
    target = parts[1]
    if parts[0] == b"CONNECT" and not target.startswith(b"/"):
        return not URI_AUTHORITY.match(target)
    match = re.match(rb"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", target)
    return bool(match) and not URI_AUTHORITY.match(match.group(1))


def fragment_in_target(data, ours, theirs):
    """A request-target with a fragment (`/f#frag`). RFC 9110 7.1: a client sends the target
    without its fragment, and RFC 9112 3.2's origin-form and absolute-form have none; fastcore
    answers 400 (TARGET_BYTE in parser.pxi excludes '#'), llhttp parses the fragment as part of
    the URL. With the fragment cut off, the parsers must agree."""
    if ours != ("error", 400) or theirs.outcome == "error":
        return False
    pieces = _request_line(data).split(b" ")
    if len(pieces) != 3 or b"#" not in pieces[1]:
        return False
    return _agrees_once_reduced(_replace_target(data, pieces[1].split(b"#", 1)[0] or b"/"), data)


# Head fields.

def host_field_count(data, ours, theirs):
    """HTTP/1.1 without exactly one Host, or HTTP/1.0 with several. RFC 9112 3.2: a server MUST
    respond 400 to an HTTP/1.1 request that lacks Host and to any request with more than one Host
    field line. llhttp does not check. With exactly one Host, the parsers must agree."""
    if ours != ("error", 400) or theirs.outcome == "error":
        return False
    hosts = [line for line in _raw_head_lines(data)[1:] if line.partition(b":")[0].lower() == b"host"]
    if len(hosts) == 1 or (not hosts and not _request_line(data).endswith(b" HTTP/1.1")):
        return False
    one_host = _edit_head_fields(data, lambda name, value: None if name.lower() == b"host" else name + b":" + value)
    line, sep, rest = one_host.partition(b"\r\n")
    return _agrees_once_reduced(line + sep + b"Host: a\r\n" + rest, data)


HOST_VALUE = re.compile(rb"[A-Za-z0-9\-._~%!$&'()*+,;=:\[\]]*")


def invalid_host_value(data, ours, theirs):
    """A Host value that is not uri-host [":" port] (a space, '"', '/', '@', ...). RFC 9112 3.2: a
    server MUST respond 400 to a request with an invalid Host field value; llhttp does not look at
    it. With the Host value replaced by a valid one, the parsers must agree."""
    if ours != ("error", 400) or theirs.outcome == "error":
        return False
    hosts = [line.partition(b":")[2].strip(b" \t") for line in _raw_head_lines(data)[1:]
             if line.partition(b":")[0].lower() == b"host"]
    if not any(not HOST_VALUE.fullmatch(value) for value in hosts):
        return False
    return _agrees_once_reduced(_edit_head_fields(
        data, lambda name, value: name + b": a" if name.lower() == b"host" else name + b":" + value), data)


def unsupported_expectation(data, ours, theirs):
    """An Expect other than 100-continue. RFC 9110 10.1.1: a server that receives an Expect value
    with a member other than 100-continue MAY respond 417 (Expectation Failed), as fastcore does;
    llhttp does not interpret Expect."""
    values = [value.strip(b" \t").lower() for value in _raw_field_values(data, b"expect")]
    return ours == ("error", 417) and theirs.outcome != "error" and any(v != b"100-continue" for v in values)


def close_wins_over_keep_alive(data, ours, theirs):
    """HTTP/1.0 with both `close` and `keep-alive` in Connection. RFC 9112 9.3/9.6: the close
    option means the connection will not persist; fastcore lets close win, llhttp's
    should_keep_alive() on HTTP/1.0 only looks for keep-alive."""
    if not (ours[0] == theirs.outcome == "ok" and ours[1]["version"] == "1.0"):
        return False
    fields = ours[1]
    without = dict(fields, connection_close=False, connection_keep_alive=True)
    return (fields["connection_close"] and fields["connection_keep_alive"] and theirs.keep_alive
            and disagreement(data, ("ok", without), theirs) is None)


# Message framing (RFC 9112 6).

def body_larger_than_limit(data, ours, theirs):
    """A Content-Length above max_body_size (default 1 TiB): fastcore refuses it up front with 413
    (RFC 9110 15.5.14) before a byte of it is read; llhttp has no limit and waits for the body."""
    lengths = [value.strip(b" \t") for value in _raw_field_values(data, b"content-length")]
    return (ours == ("error", 413) and theirs.outcome != "error"
            and any(v.isdigit() and int(v) > (1 << 40) for v in lengths))


def long_numerals_with_leading_zeros(data, ours, theirs):
    """A Content-Length of more than 18 digits (or a chunk size of more than 15 hex digits) that is
    small because of leading zeros. RFC 9110 8.6 asks recipients to guard against overflowing
    numerals; fastcore caps the digit count (400), llhttp checks the value. Both reject values
    that do overflow."""
    if ours != ("error", 400) or theirs.outcome == "error":
        return False
    lengths = [v.strip(b" \t") for v in _raw_field_values(data, b"content-length")]
    sizes = [re.match(rb"[0-9a-fA-F]*", data[s:e]).group(0) for s, e in _chunk_lines(data)]
    return any(len(v) > 18 and v.isdigit() for v in lengths) or any(len(size) > 15 for size in sizes)


def transfer_encoding_in_http10(data, ours, theirs):
    """Transfer-Encoding in an HTTP/1.0 request. RFC 9112 6.1: a server that receives an HTTP/1.0
    message with Transfer-Encoding MUST treat its framing as faulty; fastcore answers 400 (and
    closes). llhttp decodes the chunked body as for HTTP/1.1."""
    return (ours == ("error", 400) and theirs.outcome != "error"
            and _request_line(_strip_crlf_lines(data)).endswith(b" HTTP/1.0")
            and bool(_raw_field_values(data, b"transfer-encoding")))


def unknown_transfer_coding(data, ours, theirs):
    """A transfer coding other than chunked (gzip, deflate, ...), chunked last. RFC 9112 6.1: a
    server that receives a transfer coding it does not understand SHOULD respond 501; fastcore
    decodes only chunked. llhttp de-chunks and leaves the other codings to its user."""
    codings = [c.strip(b" \t").lower() for v in _raw_field_values(data, b"transfer-encoding") for c in v.split(b",")]
    return ours == ("error", 501) and theirs.outcome != "error" and any(c and c != b"chunked" for c in codings)


def empty_transfer_coding_list_elements(data, ours, theirs):
    """Empty list elements in Transfer-Encoding: `chunked,`, `chunked , `, or an empty
    Transfer-Encoding field line next to one that says chunked. RFC 9112 6.1: Transfer-Encoding =
    #transfer-coding, and RFC 9110 5.6.1 lets a `#` list be empty and says a recipient MUST
    parse and ignore a reasonable number of empty list elements; fastcore does (it still requires
    exactly one `chunked`, last). llhttp rejects a trailing empty element and an empty field.
    With the empty elements (and emptied fields) removed, the parsers must agree."""
    if ours[0] == "error" or theirs.error_reason not in (
            "Invalid `Transfer-Encoding` header value", "Empty Transfer-Encoding"):
        return False

    def compact(name, value):
        if name.lower() != b"transfer-encoding":
            return name + b":" + value
        elements = [e.strip(b" \t") for e in value.split(b",") if e.strip(b" \t")]
        return name + b": " + b", ".join(elements) if elements else None
    return _agrees_once_reduced(_edit_head_fields(data, compact), data)


def transfer_encoding_trailing_htab(data, ours, theirs):
    """`Transfer-Encoding: chunked<HTAB>`: llhttp does not strip a trailing HTAB after the last
    coding and so does not see `chunked` (it reports an invalid Transfer-Encoding, or misses a
    second `chunked`). RFC 9112 5 / RFC 9110 5.6.3: OWS (SP or HTAB) around a field value is not
    part of it; fastcore strips both. An llhttp defect. With that whitespace removed, the parsers
    must agree."""
    values = _raw_field_values(data, b"transfer-encoding")
    if not any(b"\t" in v[len(v.rstrip(b" \t")):] for v in values):
        return False

    def strip(name, value):
        return name + b":" + (value.rstrip(b" \t") if name.lower() == b"transfer-encoding" else value)
    return _agrees_once_reduced(_edit_head_fields(data, strip), data)


def connect_has_no_content(data, ours, theirs):
    """CONNECT with Content-Length or Transfer-Encoding. llhttp switches to tunnel mode right after
    the head (RFC 9110 9.3.6: a CONNECT request has no content; what follows the head is tunnel
    data); fastcore, which does not tunnel and hands CONNECT to the application like any other
    method, frames the request by RFC 9112 6.3 (Content-Length / chunked, or 400/501 for a bad
    Transfer-Encoding) like any other. Without the framing fields and what follows the head, the
    parsers must agree."""
    method = _request_line(_strip_crlf_lines(data)).split(b" ", 1)[0]
    framed = _raw_field_values(data, b"content-length") or _raw_field_values(data, b"transfer-encoding")
    if not (method == b"CONNECT" and framed and theirs.outcome == "ok" and theirs.body == b""):
        return False
    unframed = _edit_head_fields(data, lambda name, value: None if name.lower() in (
        b"content-length", b"transfer-encoding") else name + b":" + value)
    return _agrees_once_reduced(unframed.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", data)


# Chunked bodies (RFC 9112 7.1).

def bws_in_chunk_extension(data, ours, theirs):
    """Whitespace before `;` or around `=` in a chunk extension (`5 ;a`, `5; a = b`). RFC 9112
    7.1.1: chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), so BWS is valid there;
    llhttp (lenient_spaces_after_chunk_size off) rejects it. With that whitespace removed, the
    parsers must agree."""
    if ours[0] == "error" or theirs.outcome != "error" or "chunk" not in theirs.error_reason:
        return False
    lines = [data[s:e] for s, e in _chunk_lines(data)]
    if not any(re.search(rb"[ \t]+[^ \t]", _unquoted(line)) for line in lines):
        return False

    def remove_bws(line):
        body = line.rstrip(b" \t")                   # trailing whitespace is another class
        pieces = re.split(rb'("(?:[^"\\]|\\.)*")', body)
        return b"".join(p if p.startswith(b'"') else re.sub(rb"[ \t]+", b"", p) for p in pieces) + line[len(body):]
    return _agrees_once_reduced(_edit_chunk_lines(data, remove_bws), data)


def invalid_chunk_extension_accepted_by_llhttp(data, ours, theirs):
    """A chunk extension outside the RFC 9112 7.1.1 grammar that llhttp lets through (for example a
    token value directly followed by a quoted string, `;a=G"x"`). fastcore validates the grammar
    and answers 400. With the extensions removed, the parsers must agree."""
    if ours != ("error", 400) or theirs.outcome == "error":
        return False
    lines = [data[s:e] for s, e in _chunk_lines(data)]
    if all(CHUNK_LINE.fullmatch(line) for line in lines):
        return False
    return _agrees_once_reduced(_edit_chunk_lines(data, lambda line: re.match(rb"[0-9a-fA-F]*", line).group(0)), data)


def framing_field_in_trailer(data, ours, theirs):
    """Content-Length or Transfer-Encoding in the trailer section. RFC 9110 6.5.1/6.5.2: framing
    fields cannot be processed as trailers and a recipient must not merge trailers into the head
    unless it knows the field allows it; fastcore checks trailer field syntax but acts on none of
    them. llhttp applies its CL + TE rule to trailers and rejects. Without those trailer lines, the
    parsers must agree."""
    if ours[0] == "error" or theirs.outcome != "error" or "Transfer-Encoding" not in theirs.error_reason:
        return False
    lines = _chunk_lines(data)
    if not lines:
        return False
    start = lines[-1][1] + 2
    end = data.find(b"\r\n\r\n", start - 2)
    if end < 0:
        return False
    trailers = data[start:end + 2].split(b"\r\n")
    kept = [t for t in trailers
            if t.partition(b":")[0].strip(b" \t").lower() not in (b"content-length", b"transfer-encoding")]
    if len(kept) == len(trailers):
        return False
    return _agrees_once_reduced(data[:start] + b"\r\n".join(kept) + data[end + 2:], data)


def chunk_line_longer_than_limit(data, ours, theirs):
    """A chunk-size line (with its extensions) longer than CHUNK_LINE_MAX (4096) bytes, complete or
    not yet terminated: fastcore answers 400 (a bound on a line it must buffer and scan; RFC 9112
    7.1.1 lets a server limit chunk extensions), llhttp has no such limit."""
    if ours != ("error", 400) or theirs.outcome == "error":
        return False
    lines = _chunk_lines(data)
    if any(end - start > CHUNK_LINE_MAX for start, end in lines):
        return True
    tail_start = lines[-1][1] + 2 if lines else data.find(b"\r\n\r\n") + 4
    return b"\r\n" not in data[tail_start:] and len(data) - tail_start > CHUNK_LINE_MAX


# Incomplete input.

def validation_deferred_until_line_complete(data, ours, theirs):
    """llhttp already rejected a byte of a line that is not complete yet. fastcore scans for the
    end of the head first (rejecting only a bare LF and oversized lines / heads on the way) and
    validates the complete head in one pass; in a chunked body it validates a chunk-size or
    trailer line once its CRLF is in. So it asks for more bytes here, and its limits (414, 431,
    CHUNK_LINE_MAX) bound what it waits for; RFC 9112 does not require rejecting early. For a
    body, the parsers must agree once the unterminated last line is dropped."""
    if ours[0] != "need-more" or theirs.outcome != "error":
        return False
    if b"\r\n\r\n" not in _strip_crlf_lines(data):
        return True                                  # the head itself is incomplete
    return _agrees_once_reduced(data[:data.rfind(b"\r\n") + 2], data)


EXPECTED_DIFFERENCES = [
    extension_method,
    pri_method,
    empty_lines_before_request_line,
    bare_cr_or_lf_before_request_line,
    request_line_whitespace_runs,
    http09_request_line,
    http_version_not_supported,
    target_form_not_served,
    target_bytes_outside_uri,
    fragment_in_target,
    host_field_count,
    invalid_host_value,
    unsupported_expectation,
    close_wins_over_keep_alive,
    body_larger_than_limit,
    long_numerals_with_leading_zeros,
    transfer_encoding_in_http10,
    unknown_transfer_coding,
    empty_transfer_coding_list_elements,
    transfer_encoding_trailing_htab,
    connect_has_no_content,
    bws_in_chunk_extension,
    invalid_chunk_extension_accepted_by_llhttp,
    framing_field_in_trailer,
    chunk_line_longer_than_limit,
    validation_deferred_until_line_complete,
]


# -- known bugs of fastcore's parser (the parser is not changed by this file) -----------------------

KNOWN_BUGS = []        # none open: see FIXED_BUG_EXAMPLES for the ones this file found


def triage(data, ours, theirs):
    """The name of the known bug or expected difference that explains a disagreement, or None.
    Known bugs are checked first, so that an input showing both is reported as the bug."""
    for predicate in KNOWN_BUGS + EXPECTED_DIFFERENCES:
        if predicate(data, ours, theirs):
            return predicate.__name__
    return None


def check_against_httptools(data, allow_bugs=True):
    """Assert that the parsers agree on `data` or that the disagreement is triaged. Returns the
    class name (None when they agree)."""
    ours, theirs = run_ours(data), run_theirs(data)
    problem = disagreement(data, ours, theirs)
    if problem is None:
        return None
    name = triage(data, ours, theirs)
    assert name is not None, (
        f"untriaged disagreement: {problem}\n  input: {data!r}\n  fastcore: {ours!r}\n  httptools: {theirs.summary()}")
    if not allow_bugs:
        assert name not in {p.__name__ for p in KNOWN_BUGS}, f"known bug {name} on {data!r}"
    return name


# -- the tests ---------------------------------------------------------------------------------------

# The differences a valid request may show: everything else is a verdict on invalid input.
VALID_REQUEST_DIFFERENCES = {None, "extension_method", "close_wins_over_keep_alive", "bws_in_chunk_extension",
                             "transfer_encoding_trailing_htab"}


@maybe_seeded
@fuzz_settings(300)
@given(valid_requests())
def test_valid_requests_parse_as_generated_and_as_httptools(generated):
    """A valid request parses to exactly the fields the generator built it from, and httptools
    agrees (up to the differences that valid requests can show)."""
    ours = run_ours(generated.data)
    assert ours == ("ok", generated.expected), (generated.data, ours, generated.expected)
    name = check_against_httptools(generated.data, allow_bugs=False)
    assert name in VALID_REQUEST_DIFFERENCES, (name, generated.data)


@maybe_seeded
@fuzz_settings(1000)
@given(mutated_requests())
def test_mutated_requests_agree_with_httptools_or_are_triaged(mutated):
    """A mutated request (bare CR/LF, whitespace before a colon, duplicated Content-Length,
    obs-fold, control bytes, non-hex chunk sizes, ...) gets the same verdict from both parsers,
    unless the disagreement is an expected difference or a known, pinned bug."""
    check_against_httptools(mutated.data)


SPLIT_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /search?q=a%20b&x=1 HTTP/1.0\r\nUser-Agent: t/1\r\nConnection: keep-alive\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://example.com:8080/p/a/t/h?query HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
    b"PUT /x HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Tabs: \t a \t b \t\r\nContent-Length: 0\r\n\r\n",
    b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\nA;a=\"q\\\"s\";b\r\n0123456789\r\n0\r\nTrailer-One: 1\r\nTrailer-Two: 2\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n000\r\n\r\n",
]


def _assert_split_consistent(data):
    full = run_ours(data)
    assert full[0] == "ok", (data, full)
    assert full[1]["request_length"] == len(data)
    for k in range(len(data)):
        assert run_ours(data[:k]) == ("need-more", None), (k, data[:k])
    assert run_ours(data) == full


@pytest.mark.parametrize("data", SPLIT_REQUESTS, ids=lambda d: d.split(b"\r\n", 1)[0].decode())
def test_split_at_every_offset(data):
    """Every proper prefix of a valid request needs more bytes; the whole request parses, to the
    same fields as when httptools reads it."""
    _assert_split_consistent(data)
    assert check_against_httptools(data, allow_bugs=False) is None


@maybe_seeded
@fuzz_settings(40)
@given(valid_requests(max_body=32))
def test_split_at_every_offset_generated(generated):
    _assert_split_consistent(generated.data)


# One pinned input per expected difference: documents each class with a concrete case and checks
# that its predicate still recognizes it. Skipped (not failed) if an httptools upgrade stops
# disagreeing there.
H = b"Host: h\r\n"
CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
EXPECTED_DIFFERENCE_EXAMPLES = {
    "extension_method": b"FOO / HTTP/1.1\r\n" + H + b"\r\n",
    "pri_method": b"PRI /x HTTP/1.1\r\n" + H + b"\r\n",
    "empty_lines_before_request_line": b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    "bare_cr_or_lf_before_request_line": b"\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    "request_line_whitespace_runs": b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
    "http09_request_line": b"GET /\r\n\r\n",
    "http_version_not_supported": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "target_form_not_served": b"GET ftp://h/p HTTP/1.1\r\n" + H + b"\r\n",
    "target_bytes_outside_uri": b"GET http://a\"b/ HTTP/1.1\r\n" + H + b"\r\n",
    "fragment_in_target": b"GET /f#frag HTTP/1.1\r\n" + H + b"\r\n",
    "host_field_count": b"GET / HTTP/1.1\r\n\r\n",
    "invalid_host_value": b'DELETE /%20 HTTP/1.1\r\nHost:"\r\n\r\n',     # found by the mutation test
    "unsupported_expectation": b"GET / HTTP/1.1\r\n" + H + b"Expect: foo\r\n\r\n",
    "close_wins_over_keep_alive": b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n",
    "body_larger_than_limit": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2000000000000\r\n\r\n",
    "long_numerals_with_leading_zeros": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0000000000000000001\r\n\r\nx",
    "transfer_encoding_in_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "unknown_transfer_coding": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "empty_transfer_coding_list_elements": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
    # (also: b"Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n", an empty field line)
    "transfer_encoding_trailing_htab": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
    "connect_has_no_content": b"CONNECT h:443 HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\n",
    "bws_in_chunk_extension": CHUNKED + b"5 ;a\r\nhello\r\n0\r\n\r\n",
    "invalid_chunk_extension_accepted_by_llhttp": CHUNKED + b"5;a=G\"x\"\r\nhello\r\n0\r\n\r\n",
    "framing_field_in_trailer": CHUNKED + b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
    "chunk_line_longer_than_limit": CHUNKED + b"5;" + b"a" * 5000,
    "validation_deferred_until_line_complete": b"GE\x00T / HTTP/1.1\r\n",
}


def test_long_chunk_line_is_refused_however_it_arrives():
    whole = CHUNKED + b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n"
    assert run_ours(whole) == ("error", 400)
    assert check_against_httptools(whole) == "chunk_line_longer_than_limit"


def test_every_expected_difference_has_an_example():
    assert set(EXPECTED_DIFFERENCE_EXAMPLES) == {p.__name__ for p in EXPECTED_DIFFERENCES}


@pytest.mark.parametrize("name", sorted(EXPECTED_DIFFERENCE_EXAMPLES))
def test_expected_difference_example(name):
    data = EXPECTED_DIFFERENCE_EXAMPLES[name]
    ours, theirs = run_ours(data), run_theirs(data)
    if disagreement(data, ours, theirs) is None:
        pytest.skip(f"httptools {httptools.__version__} no longer differs here")
    assert triage(data, ours, theirs) == name, (data, ours, theirs.summary())


# Bugs this file found, fixed, kept as regression examples. Whitespace at the end of a chunk-size
# line (`5 `, `0<HTAB>`, `5;a=b `) was accepted: RFC 9112 7.1.1 allows BWS only before ';' and
# around '=', and trailing whitespace after a chunk size is a known request-smuggling vector.
FIXED_BUG_EXAMPLES = [
    pytest.param(CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", id="chunk-size-trailing-SP"),
    pytest.param(CHUNKED + b"5\t\r\nhello\r\n0\r\n\r\n", id="chunk-size-trailing-HTAB"),
    pytest.param(CHUNKED + b"5\r\nhello\r\n0 \r\n\r\n", id="last-chunk-trailing-SP"),
    pytest.param(CHUNKED + b"5;a=b \r\nhello\r\n0\r\n\r\n", id="chunk-ext-trailing-SP"),
]


@pytest.mark.parametrize("data", FIXED_BUG_EXAMPLES)
def test_fixed_bug_examples(data):
    assert run_ours(data) == ("error", 400)
    assert check_against_httptools(data, allow_bugs=False) is None   # and llhttp agrees

"""fastcore.pure.parser: request framing and validation, with httptools (llhttp) as the parser.

Theory of operation. Each connection owns one RequestParser for its whole life, which owns one
httptools.HttpRequestParser (llhttp resets itself after every message) and `inbuf`, the received
bytes not yet given to llhttp. Bytes are handed to llhttp one message part at a time and never past
the end of the current message, so where a request ends is always known exactly, like in the
compiled parser (pyext/parser.pxi), and the limits are counted on the bytes themselves:

  1. The head. parse_head() looks for the blank line in `inbuf` with the rules of the compiled
     head_scan(): a bare LF is 400, a request line over max_request_line 414, a head over
     max_head_size 431, each checked while the head is still arriving too; at most 8 empty lines
     may precede it. The request line is checked here against the grammar of parse_request_line()
     (token method, visible ASCII target bytes without '#', origin / absolute / asterisk / authority form,
     HTTP/1.0 or 1.1 else 505), and the fields the server acts on (Host, Content-Length,
     Transfer-Encoding, Expect, Connection) are read and judged with the rules of parse_head().
     Then the head goes to llhttp behind a neutral request line `GET / HTTP/1.x`: llhttp validates
     every field line (its errors come first, as field errors do in the compiled parser) and sets
     up the body framing. Method and target stay ours because llhttp knows a fixed method table,
     accepts a fragment in the target and tunnels CONNECT, none of which the compiled parser does;
     and llhttp sees Transfer-Encoding only in the canonical form `chunked` the checks left possible.
  2. The body. feed_body() gives llhttp the Content-Length bytes up to the announced length. A
     chunked body can end only just after a CRLFCRLF (the last-chunk line or the trailer section
     followed by the blank line), and llhttp completes a message exactly on that final LF; so a
     chunked body is fed up to each CRLFCRLF in turn until llhttp reports the message complete, and
     the bytes after it stay in `inbuf` for the next request. on_body collects the decoded body and
     enforces max_body_size on chunked bodies (413); chunk-size lines and trailers are bounded
     too (400 / 431, see feed_body).

Errors surface as Reject(status); the connection answers with that status and closes.
"""
import collections
import re

try:
    import httptools
except ModuleNotFoundError as error:
    if error.name != "httptools":
        raise
    # Not a dependency of fastcore-server: the compiled engine, the one users run, needs nothing,
    # and this comparison engine is an extra (fastcore-server[pure]). Say so instead of a bare
    # "No module named 'httptools'"; the command line prints this one line.
    raise ModuleNotFoundError("the pure engine (fastcore.pure, --engine pure) needs httptools, which "
                              "fastcore-server does not install by default: pip install 'fastcore-server[pure]'",
                              name="httptools") from None

CRLF2 = b"\r\n\r\n"

# RFC 9112 3: method SP request-target SP HTTP-version, with the byte classes of parser.pxi:
# token bytes in the method; in the target visible ASCII except '#' (no control byte, no space, no
# obs-text, no fragment: TARGET_BYTE in parser.pxi).
REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21\x22\x24-\x7e]+) HTTP/([0-9])\.([0-9])")

# The fields whose meaning the server acts on: "\r\n" name ":" OWS value. A line this misreads
# (a bare CR, say) is rejected by llhttp, whose verdict is given first.
FRAMING_FIELD = re.compile(rb"\r\n(host|content-length|transfer-encoding|expect|connection):[ \t]*([^\r]*)",
                           re.IGNORECASE)

# Bytes a field value must not hold (RFC 9110 5.5): controls other than HTAB, and DEL.
FIELD_VALUE_CONTROL_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# Host field value bytes (RFC 9112 3.2, RFC 3986 3.2.2): uri-host [":" port], so unreserved,
# pct-encoded, sub-delims, ':' and the brackets of an IP literal (HOST_BYTE in parser.pxi).
INVALID_HOST_BYTE = re.compile(rb"[^A-Za-z0-9\-._~%!$&'()*+,;=:\[\]]")

# A whole Transfer-Encoding field line (the line's own CRLF included), any spelling of the name.
TRANSFER_ENCODING_LINE = re.compile(rb"(?im)^transfer-encoding:[^\r]*\r\n")

CONTENT_LENGTH_MAX_DIGITS = 18          # as in parser.pxi: 10**18 - 1 fits in int64
MAX_EMPTY_LINES_BEFORE_REQUEST = 8      # as in serve.pxi
CHUNK_FRAMING_MAX = 4096 + 4            # a chunk-size line with its extensions (CHUNK_LINE_MAX) + 2 CRLFs
NEUTRAL_REQUEST_LINES = (b"GET / HTTP/1.0\r\n", b"GET / HTTP/1.1\r\n")


class Reject(Exception):
    """The request cannot be served; `status` is the answer before the connection closes.
    `head_only` says whether the request was a HEAD, once known (its error response has no body,
    as in the compiled core); None when the connection should decide from its current message."""

    def __init__(self, status, head_only=None):
        super().__init__(status)
        self.status = status
        self.head_only = head_only


class Message:
    """One request: where its parts are in `head` (offsets, like ParsedRequest in parser.pxi), the
    header facts the server acts on, and its decoded body as it arrives."""

    __slots__ = ("head", "method_end", "target_start", "target_end", "path_start", "path_end",
                 "version_minor", "is_head", "is_get", "content_length", "has_transfer_encoding", "chunked",
                 "expect_continue", "expect_unknown", "connection_close", "connection_keep_alive",
                 "body_parts", "body_size", "buffered", "complete", "chunks", "after_chunk_header", "framing_run")

    def __init__(self, head, method_end, target_start, target_end, path_start, path_end, version_minor):
        self.head = head
        self.method_end = method_end
        self.target_start = target_start
        self.target_end = target_end
        self.path_start = path_start
        self.path_end = path_end
        self.version_minor = version_minor
        method = head[:method_end]
        self.is_head = method == b"HEAD"
        self.is_get = method == b"GET"
        self.content_length = -1
        self.has_transfer_encoding = False
        self.chunked = False
        self.expect_continue = False
        self.expect_unknown = False
        self.connection_close = False
        self.connection_keep_alive = False
        self.body_parts = collections.deque()   # decoded body bytes not yet handed on
        self.body_size = 0                      # decoded body bytes so far
        self.buffered = 0                       # bytes in body_parts
        self.complete = False                   # llhttp reported the end of the message
        self.chunks = 0                         # chunked: chunk-size lines seen
        self.after_chunk_header = False         # chunked: a size line, and no data since (the last chunk's trailers)
        self.framing_run = 0                    # chunked: framing bytes read since the body last progressed

    @property
    def path(self):
        return self.head[self.path_start:self.path_end]

    def body(self):
        """The whole body (once complete), as bytes."""
        parts = self.body_parts
        if not parts:
            return b""
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self.buffered = 0
        return body


def locate_path(method, target):
    """(start, end) of the path inside the request-target, or None for a form that is not served
    (locate_path in parser.pxi): origin-form "/p?q", absolute-form "http://host/p?q", "*" for
    OPTIONS only, authority-form for CONNECT only."""
    length = len(target)
    if target[0] == 47:                                 # '/': origin-form
        start = 0
    elif target == b"*":
        return (0, 1) if method == b"OPTIONS" else None
    elif method == b"CONNECT":
        return 0, length                                # authority-form: no path, keep it whole
    elif length > 7 and target[:7].lower() == b"http://":
        start = 7
    elif length > 8 and target[:8].lower() == b"https://":
        start = 8
    else:
        return None
    if start:
        while start < length and target[start] not in b"/?":
            start += 1                                  # skip the authority
    end = target.find(b"?", start)
    return start, (length if end < 0 else end)


class RequestParser:
    """The request side of one connection: received bytes, llhttp, and the message in progress."""

    __slots__ = ("limits", "parser", "inbuf", "message", "scanned", "line_end", "body_remaining", "tail",
                 "empty_lines")

    def __init__(self, limits):
        self.limits = limits
        self.parser = self._new_llhttp()
        self.inbuf = bytearray()        # received, not yet given to llhttp
        self.message = None             # the request being parsed or answered
        self.scanned = 0                # head bytes already checked (the head is rescanned from here)
        self.line_end = -1              # the request line's LF once seen
        self.body_remaining = 0         # Content-Length bytes not yet fed
        self.tail = b""                 # the last bytes fed of a chunked body (a CRLFCRLF may span feeds)
        self.empty_lines = 0            # CRLFs skipped before the current request line

    def _new_llhttp(self):
        return httptools.HttpRequestParser(self)        # every leniency off (the default)

    # -- llhttp callbacks ---------------------------------------------------------------------------

    def on_body(self, data):
        message = self.message
        message.body_parts.append(data)
        message.after_chunk_header = False
        size = len(data)
        message.body_size += size
        message.buffered += size
        if message.chunked and message.body_size > self.limits.max_body_size:
            raise Reject(413)

    def on_chunk_header(self):
        message = self.message
        message.chunks += 1
        message.after_chunk_header = True

    def on_chunk_complete(self):
        self.message.after_chunk_header = False

    def on_message_complete(self):
        self.message.complete = True

    def _feed(self, data):
        """Give llhttp `data`. Returns True when llhttp switched to "upgrade" (it then skips the body)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return True
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, Reject):
                raise error.__context__ from None
            raise Reject(400) from None
        except httptools.HttpParserError:
            raise Reject(400) from None
        return False

    # -- the head -------------------------------------------------------------------------------------

    def parse_head(self):
        """Parse the next request's head if it is complete in `inbuf`: returns its Message (also
        self.message) with the head removed from `inbuf`, None for more bytes, or raises Reject."""
        buf = self.inbuf
        limits = self.limits
        if self.scanned == 0:
            # RFC 9112 2.2: ignore empty lines received before a request line. They count as the
            # start of a head (the connection re-arms no timer for them), and only a few are allowed.
            while buf[:2] == b"\r\n":
                del buf[:2]
                self.empty_lines += 1
                if self.empty_lines > MAX_EMPTY_LINES_BEFORE_REQUEST:
                    raise Reject(400)
            if not buf or buf == b"\r":
                return None                             # nothing yet, or a CR whose LF is still coming
        scanned = self.scanned
        end = buf.find(CRLF2, max(0, scanned - 3))
        limit = len(buf) if end < 0 else end + 4
        if self.line_end < 0:
            line_end = buf.find(b"\n", scanned, limit)
            if line_end >= 0:
                if line_end == 0 or buf[line_end - 1] != 13:
                    raise Reject(400)                   # bare LF
                if line_end - 1 > limits.max_request_line:
                    raise Reject(414)
                self.line_end = line_end
            elif limit > limits.max_request_line + 1:
                raise Reject(414)
        # Every LF must follow a CR: count both in what is new since the last scan.
        if buf.count(b"\n", scanned, limit) != buf.count(b"\r\n", max(0, scanned - 1), limit):
            raise Reject(400)
        if limit > limits.max_head_size:
            raise Reject(431)
        if end < 0:
            self.scanned = limit
            return None

        line_end = self.line_end - 1                    # the request line without its CRLF
        head = bytes(buf[:limit])
        del buf[:limit]
        self.scanned = 0
        self.line_end = -1
        try:
            return self._parse_complete_head(head, line_end)
        except Reject as error:
            error.head_only = head.startswith(b"HEAD ")  # known to the compiled parser from here on
            raise

    def _parse_complete_head(self, head, line_end):
        limits = self.limits
        match = REQUEST_LINE.fullmatch(head, 0, line_end)
        if match is None:
            raise Reject(400)
        method_end, (target_start, target_end) = match.end(1), match.span(2)
        span = locate_path(head[:method_end], head[target_start:target_end])
        if span is None:
            raise Reject(400)
        if match.group(3) != b"1" or match.group(4) not in (b"0", b"1"):
            raise Reject(505)
        version_minor = head[match.start(4)] - 48
        message = self.message = Message(head, method_end, target_start, target_end,
                                         target_start + span[0], target_start + span[1], version_minor)
        if head.count(b"\r\n", line_end + 2) - 1 > limits.max_header_count:
            raise Reject(431)
        fields = head[line_end + 2:]
        status = self._check_framing_fields(message, line_end)
        if message.has_transfer_encoding:
            # Transfer-Encoding is judged by the checks above, with the compiled parser's rules
            # (llhttp rejects valid OWS after the last coding and empty list items, and would
            # answer 400 where the compiled core says 501). Once they pass, the field(s) can only
            # mean `chunked`: llhttp gets exactly that, or no Transfer-Encoding line at all.
            fields = TRANSFER_ENCODING_LINE.sub(b"", fields)
            if status is None:
                fields = b"Transfer-Encoding: chunked\r\n" + fields
        upgraded = self._feed(NEUTRAL_REQUEST_LINES[version_minor] + fields)     # field syntax errors first
        if status is not None:
            raise Reject(status)
        if upgraded:
            self._after_upgrade(message)
        self.body_remaining = max(0, message.content_length)
        self.tail = b""
        return message

    def _check_framing_fields(self, message, line_end):
        """The rules of parse_head() in parser.pxi that llhttp does not enforce, in its order: fills
        `message` and returns the error status, or None."""
        host_count = 0
        chunked_count = 0
        coding_unknown = False
        for field in FRAMING_FIELD.finditer(message.head, line_end):
            name = field.group(1).lower()
            value = field.group(2).rstrip(b" \t")
            if name == b"host":
                host_count += 1
                if INVALID_HOST_BYTE.search(value) is not None:
                    return 400                          # an invalid Host value (RFC 9112 3.2)
            elif name == b"content-length":
                if message.content_length != -1 or not value.isdigit() or len(value) > CONTENT_LENGTH_MAX_DIGITS:
                    return 400
                message.content_length = int(value)
            elif name == b"transfer-encoding":
                message.has_transfer_encoding = True
                if not value or FIELD_VALUE_CONTROL_BYTE.search(value) is not None:
                    return 400                          # empty: ambiguous framing; control bytes: as any field
                for coding in value.split(b","):
                    coding = coding.strip(b" \t")
                    if not coding:
                        continue
                    if coding.lower() == b"chunked":
                        chunked_count += 1
                        message.chunked = True
                    else:
                        coding_unknown = True
                        message.chunked = False     # chunked is no longer the last coding
            elif name == b"expect":
                if value.lower() == b"100-continue":
                    message.expect_continue = True
                else:
                    message.expect_unknown = True
            else:                                   # connection
                for option in value.split(b","):
                    option = option.strip(b" \t").lower()
                    if option == b"close":
                        message.connection_close = True
                    elif option == b"keep-alive":
                        message.connection_keep_alive = True
        if message.has_transfer_encoding:
            if message.content_length != -1 or message.version_minor == 0:
                return 400                      # smuggling shapes: CL with TE, TE on 1.0
            if not message.chunked or chunked_count != 1:
                return 400                      # RFC 9112 6.3: the final coding must be chunked, once
            if coding_unknown:
                return 501                      # e.g. gzip, chunked: a coding we do not decode
        if (message.version_minor == 1 and host_count != 1) or host_count > 1:
            return 400
        return None

    def _after_upgrade(self, message):
        """llhttp treats `Connection: upgrade` + `Upgrade` as the end of HTTP and skips the body; the
        server does not switch protocols, so the body is framed as for any request. A fresh llhttp
        is primed with a head carrying only the framing, and decodes the body from there."""
        self.parser = self._new_llhttp()
        if message.chunked or message.content_length > 0:
            message.complete = False
            framing = (b"Transfer-Encoding: chunked\r\n" if message.chunked
                       else b"Content-Length: %d\r\n" % message.content_length)
            self._feed(b"GET / HTTP/1.1\r\n" + framing + b"\r\n")

    # -- the body -------------------------------------------------------------------------------------

    def feed_body(self):
        """Feed the current message's body bytes from `inbuf` to llhttp, never past the message's
        end. Returns True once the message is complete; raises Reject."""
        message = self.message
        buf = self.inbuf
        if message.complete or not buf:
            return message.complete
        if not message.chunked:
            count = min(len(buf), self.body_remaining)
            self._feed(buf if count == len(buf) else buf[:count])
            del buf[:count]
            self.body_remaining -= count
            return message.complete
        position = 0
        available = len(buf)
        decoded_before = message.body_size
        chunks_before = message.chunks
        while position < available and not message.complete:
            cut = self._next_possible_end(position)
            self._feed(buf if (position == 0 and cut == available) else buf[position:cut])
            position = cut
        self.tail = (self.tail + bytes(buf[max(0, position - 3):position]))[-3:]
        # The size line (with its extensions) this read ends in the middle of, if any: the bytes
        # after its last LF, when llhttp is between chunks (a size line holds no LF).
        partial_line = 0 if message.after_chunk_header else position - (buf.rfind(b"\n", 0, position) + 1)
        del buf[:position]
        # The compiled parser allows CHUNK_LINE_MAX bytes per chunk-size line (400) and max_head_size
        # of trailers (431). llhttp has no such limits and httptools does not say where a line
        # starts, so the framing bytes (everything fed that is not body) are counted per read: a
        # read that brings body bytes or size lines may hold about a line's worth per size line;
        # the size line it ends in (partial_line) goes on into the next reads, which add up while
        # they bring neither, until the line or the trailer section is over its limit.
        decoded = message.body_size - decoded_before
        new_chunks = message.chunks - chunks_before
        framing = position - decoded
        progressed = bool(decoded or new_chunks)
        message.framing_run = partial_line if progressed else message.framing_run + framing
        in_trailers = message.after_chunk_header     # no data after the last size line: the 0 chunk's trailers
        allowed = (new_chunks + 1) * CHUNK_FRAMING_MAX + (self.limits.max_head_size if in_trailers else 0)
        if (framing if progressed else message.framing_run) > allowed:
            raise Reject(431 if in_trailers else 400)
        return message.complete

    def _next_possible_end(self, position):
        """The offset in `inbuf` just after the next CRLFCRLF ending after `position` (one may
        begin in bytes already fed), or the end of `inbuf`."""
        buf = self.inbuf
        if position == 0 and self.tail:
            spanning = (self.tail + bytes(buf[:3])).find(CRLF2)
            if spanning >= 0:
                return spanning + 4 - len(self.tail)
        found = buf.find(CRLF2, max(0, position - 3))
        return found + 4 if found >= 0 else len(buf)

    def next_message(self):
        """The current request is answered: get ready for the next head."""
        self.message = None
        self.tail = b""
        self.empty_lines = 0

"""WebSockets on fastcore: the rules both engines share (RFC 6455, ASGI "WebSocket" spec 2.4).

Theory of operation. An ASGI server's engine parses every request as HTTP. A request that is an
upgrade attempt (upgrade_attempt(): GET, HTTP/1.1, `Upgrade` holding the token `websocket`) is
checked before the app sees it (handshake_status(): 400 without `Connection: upgrade`, a bad or
repeated `Sec-WebSocket-Key`, or a body; 426 for a version other than 13); a valid one becomes a
`websocket` scope whose `subprotocols` come from subprotocols(). What the app sends is checked here
before anything goes out, so both engines refuse the same mistakes with the same RuntimeError:
check_accept() (the subprotocol must be one the client offered; extra headers as response
headers: token names, no CR/LF/NUL or other control byte in values), check_send() (exactly one
of bytes / text), check_close() (a code the app may send, a reason of at most 123 UTF-8 bytes).
close_code_valid() says which codes may travel in a close frame (Autobahn 7.9.x), and
parse_close_payload() reads a received close frame with it. accept_value() is the
Sec-WebSocket-Accept of a key (SHA-1 + base64).

The compiled engine does the handshake check and framing in C (pyext/websocket_*.pxi) and calls
the message checks; the pure engine (fastcore/pure/websocket.py, asgi.py) calls all of this.

Layering: shared rules (tests/test_imports.py), below the compiled core, like fastcore.asgi; it
imports only fastcore.asgi's header rules and the leaves.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, NamedTuple

from .asgi import checked_field

# RFC 6455 1.3: appended to the client's key before hashing.
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Handshake verdicts (handshake_status).
NOT_AN_ATTEMPT = 0
VALID = 101

# Close codes the server itself uses.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005              # never sent: a close frame without a code
CLOSE_ABNORMAL = 1006               # never sent: the connection ended without a close frame
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

MAX_CLOSE_REASON = 123              # a control frame's payload is at most 125 bytes, 2 for the code


class WebSocketRoute(NamedTuple):
    """A native WebSocket route (Server.add_websocket): its path and callbacks, both engines."""
    path: str
    on_message: Callable[[Any, bytes | str], None]
    on_open: Callable[[Any], None] | None = None
    on_close: Callable[[Any, int, str], None] | None = None


def _tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The lower-cased comma-list items of every field `name` (lower-case) in `headers`."""
    found = []
    for field_name, value in headers:
        if field_name == name:
            for item in value.split(b","):
                item = item.strip(b" \t").lower()
                if item:
                    found.append(item)
    return found


def upgrade_attempt(method: str | bytes, http_version: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """A WebSocket upgrade attempt: GET, HTTP/1.1, and `Upgrade` holds the token `websocket`.
    `headers`: (lower-case name, value) bytes pairs, as in an ASGI scope. Anything else is HTTP."""
    if method not in ("GET", b"GET") or http_version != "1.1":
        return False
    return b"websocket" in _tokens(headers, b"upgrade")


def key_valid(key: bytes) -> bool:
    """A Sec-WebSocket-Key is base64 of 16 bytes: 24 characters ending in `==`."""
    if len(key) != 24 or not key.endswith(b"=="):
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def handshake_status(headers: Iterable[tuple[bytes, bytes]], has_body: bool) -> int:
    """For an upgrade attempt: VALID (101), or the status that refuses it (400, 426), in the
    contract's order: Connection, version, key, body."""
    headers = list(headers)
    if b"upgrade" not in _tokens(headers, b"connection"):
        return 400
    versions = [value.strip(b" \t") for name, value in headers if name == b"sec-websocket-version"]
    if len(versions) != 1 or versions[0] != b"13":
        return 426
    keys = [value.strip(b" \t") for name, value in headers if name == b"sec-websocket-key"]
    if len(keys) != 1 or not key_valid(keys[0]):
        return 400
    if has_body:
        return 400
    return VALID


def handshake_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The Sec-WebSocket-Key of a request handshake_status() found VALID."""
    for name, value in headers:
        if name == b"sec-websocket-key":
            return value.strip(b" \t")
    raise ValueError("no Sec-WebSocket-Key")


def accept_value(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for `key` (RFC 6455 4.2.2): base64(SHA-1(key + GUID)), 28 bytes."""
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())


def subprotocols(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The Sec-WebSocket-Protocol values, split on ",", stripped, in order (the scope's
    `subprotocols`)."""
    offered = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            for item in value.decode("latin-1").split(","):
                item = item.strip(" \t")
                if item:
                    offered.append(item)
    return offered


def close_code_valid(code: int) -> bool:
    """A code that may travel in a close frame (RFC 6455 7.4, Autobahn 7.9.x): 1000-1003,
    1007-1014, 3000-4999. 1004-1006 and 1015 are reserved; 1016-2999 unassigned."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close_payload(payload: bytes) -> tuple[int, int, str]:
    """A received close frame's payload: (0, code, reason) when valid (1005, "" when empty);
    (1002, 0, "") for 1 byte or a code that may not be sent; (1007, 0, "") for a reason that is
    not UTF-8."""
    if not payload:
        return 0, CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        return CLOSE_PROTOCOL_ERROR, 0, ""
    code = int.from_bytes(payload[:2], "big")
    if not close_code_valid(code):
        return CLOSE_PROTOCOL_ERROR, 0, ""
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        return CLOSE_INVALID_DATA, 0, ""
    return 0, code, reason


def check_accept(message: MutableMapping[str, Any], offered: list[str]) -> tuple[str | None, list[tuple[bytes, bytes]]]:
    """A websocket.accept message: (subprotocol or None, extra headers as (name, value) bytes).
    RuntimeError for a subprotocol the client did not offer, or a header that cannot be sent."""
    subprotocol = message.get("subprotocol")
    if subprotocol is not None:
        if not isinstance(subprotocol, str):
            raise RuntimeError(f"websocket.accept's subprotocol is a str, not {type(subprotocol).__name__}")
        if subprotocol not in offered:
            raise RuntimeError(f"websocket.accept's subprotocol {subprotocol!r} was not offered by the client "
                               f"(offered: {offered!r})")
    checked = [checked_field(field, "websocket.accept header") for field in message.get("headers") or ()]
    return subprotocol, checked


def check_send(message: MutableMapping[str, Any]) -> bytes | str:
    """A websocket.send message: its bytes (a binary message) or str (a text message); exactly
    one of the two must be given (not None), else RuntimeError."""
    data = message.get("bytes")
    text = message.get("text")
    if (data is None) == (text is None):
        raise RuntimeError("websocket.send needs exactly one of 'bytes' and 'text'")
    if text is not None:
        if not isinstance(text, str):
            raise RuntimeError(f"websocket.send's text is a str, not {type(text).__name__}")
        return text
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if not isinstance(data, bytes):
        raise RuntimeError(f"websocket.send's bytes are bytes, not {type(data).__name__}")
    return data


def check_close(message: MutableMapping[str, Any]) -> tuple[int, str]:
    """A websocket.close message: (code, reason), code 1000 and reason "" by default. RuntimeError
    for a code that may not be sent or a reason over 123 UTF-8 bytes."""
    code = message.get("code")
    if code is None:
        code = CLOSE_NORMAL
    reason = message.get("reason")
    if reason is None:
        reason = ""
    if type(code) is not int or not close_code_valid(code):
        raise RuntimeError(f"websocket.close's code {code!r} may not be sent (1000-1003, 1007-1014, 3000-4999)")
    if not isinstance(reason, str):
        raise RuntimeError(f"websocket.close's reason is a str, not {type(reason).__name__}")
    if len(reason.encode("utf-8")) > MAX_CLOSE_REASON:
        raise RuntimeError(f"websocket.close's reason is longer than {MAX_CLOSE_REASON} UTF-8 bytes")
    return code, reason

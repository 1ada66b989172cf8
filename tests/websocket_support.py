"""What the WebSocket tests share (tests/test_autobahn.py, tests/test_websocket_apps.py): which
engines serve WebSockets yet, and the echo ASGI app.

WEBSOCKET_ENGINES names the engines whose ASGIServer speaks WebSockets (issue 15). The tests of an
engine not listed skip, saying so: the engine that lands its WebSockets adds its name here (one line,
no other change), and from then on its parametrization runs. The suites were checked against uvicorn
(`--ws websockets`) before any engine existed, so a failure after the flip is the engine's.
"""
import pytest

WEBSOCKET_ENGINES = frozenset({"compiled", "pure"})


def skip_unless_websockets(engine):
    if engine not in WEBSOCKET_ENGINES:
        pytest.skip(f"the {engine} engine does not serve WebSockets yet "
                    "(tests/websocket_support.py WEBSOCKET_ENGINES)")


async def echo_app(scope, receive, send):
    """Echo every message back as it came: text as text, bytes as bytes. Any HTTP request gets
    "ok" (a readiness probe); lifespan is answered."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    message = await receive()
    assert message["type"] == "websocket.connect", message
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})

"""WebSocket endpoints of real ASGI frameworks on fastcore, through the `websockets` client, on both
engines (each skips until its WebSockets land: tests/websocket_support.py).

Starlette: a function endpoint on a WebSocketRoute and a WebSocketEndpoint class (encoding "json").
FastAPI: an @app.websocket endpoint with a path parameter, a query parameter and a dependency, next
to HTTP routes on the same server. Each checks: the subprotocol the app accepts is the one the client
gets; JSON echoed through send_json/receive_json; the endpoint closing with its own code and reason;
and the app seeing WebSocketDisconnect, with the client's code, when the client leaves (a close frame:
its code; the TCP connection dropped without one: 1006).

The apps report what they saw (disconnect codes, the scope's parameters) on a queue.Queue the test
reads with a timeout, since the app runs on the server's loop thread.
"""
import json
import queue
import socket

import pytest

from websocket_support import skip_unless_websockets

websockets_sync = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosed  # noqa: E402  (after the importorskip)

TIMEOUT = 5.0


@pytest.fixture
def serve(asgi_server, engine):
    """serve(app) -> "127.0.0.1:PORT" of a server running `app` (the engine's ASGIServer)."""
    skip_unless_websockets(engine)

    def start(app):
        return f"127.0.0.1:{asgi_server(app).port}"

    return start


def connect(address, path, subprotocols=None):
    return websockets_sync.connect(f"ws://{address}{path}", subprotocols=subprotocols, open_timeout=TIMEOUT,
                                   close_timeout=TIMEOUT)


def next_event(events):
    return events.get(timeout=TIMEOUT)


def close_code(ws):
    """The close frame the server sent, after the connection closed: (code, reason)."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None, "the server closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def drop(ws):
    """Leave without a close frame: the TCP connection is reset under the client."""
    ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    ws.socket.shutdown(socket.SHUT_RDWR)
    ws.socket.close()


# -- Starlette -------------------------------------------------------------------------------------

def starlette_app(events):
    from starlette.applications import Starlette
    from starlette.endpoints import WebSocketEndpoint
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocketDisconnect

    async def room(websocket):
        # accept the second protocol the client offers, so "the first offered" would be wrong
        await websocket.accept(subprotocol="chat.v2")
        events.put(("params", websocket.path_params["name"], websocket.query_params.get("user")))
        try:
            while True:
                message = await websocket.receive_json()
                if message.get("close"):
                    await websocket.close(code=message["close"], reason="as asked")
                    return
                await websocket.send_json({"echo": message, "room": websocket.path_params["name"]})
        except WebSocketDisconnect as disconnect:
            events.put(("disconnect", disconnect.code))

    class Counter(WebSocketEndpoint):
        encoding = "json"

        async def on_connect(self, websocket):
            self.count = 0
            await websocket.accept()

        async def on_receive(self, websocket, data):
            self.count += 1
            await websocket.send_json({"count": self.count, "data": data})

        async def on_disconnect(self, websocket, close_code):
            events.put(("disconnect", close_code))

    return Starlette(routes=[WebSocketRoute("/rooms/{name}", room), WebSocketRoute("/counter", Counter)])


def test_starlette_endpoint_subprotocol_json_params(serve):
    events = queue.Queue()
    address = serve(starlette_app(events))
    with connect(address, "/rooms/lobby?user=ada", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert next_event(events) == ("params", "lobby", "ada")
        for index in range(3):
            ws.send(json.dumps({"n": index, "text": "héllo"}))
            assert json.loads(ws.recv(timeout=TIMEOUT)) == {"echo": {"n": index, "text": "héllo"}, "room": "lobby"}
    assert next_event(events) == ("disconnect", 1000)


def test_starlette_endpoint_closes_with_its_code(serve):
    events = queue.Queue()
    address = serve(starlette_app(events))
    with connect(address, "/rooms/x", subprotocols=["chat.v2"]) as ws:
        next_event(events)
        ws.send(json.dumps({"close": 4001}))
        assert close_code(ws) == (4001, "as asked")


def test_starlette_client_close_codes_reach_the_app(serve):
    events = queue.Queue()
    address = serve(starlette_app(events))
    with connect(address, "/rooms/x", subprotocols=["chat.v2"]) as ws:
        next_event(events)
        ws.close(code=4002, reason="leaving")
    assert next_event(events) == ("disconnect", 4002)


def test_starlette_client_vanishing_is_1006(serve):
    events = queue.Queue()
    address = serve(starlette_app(events))
    with connect(address, "/rooms/x", subprotocols=["chat.v2"]) as ws:
        next_event(events)
        ws.send(json.dumps({"n": 1}))
        ws.recv(timeout=TIMEOUT)
        drop(ws)
    assert next_event(events) == ("disconnect", 1006)


def test_starlette_websocket_endpoint_class(serve):
    events = queue.Queue()
    address = serve(starlette_app(events))
    with connect(address, "/counter") as ws:
        assert ws.subprotocol is None
        for count in (1, 2):
            ws.send(json.dumps(["a", count]))
            assert json.loads(ws.recv(timeout=TIMEOUT)) == {"count": count, "data": ["a", count]}
    assert next_event(events) == ("disconnect", 1000)


# -- FastAPI ---------------------------------------------------------------------------------------

def fastapi_app(events):
    import fastapi
    from fastapi import Depends, Query, WebSocket, WebSocketDisconnect

    app = fastapi.FastAPI()

    async def current_user(websocket: WebSocket, token: str = Query(...)):
        # a dependency of the websocket route; a bad token is refused before accepting (a close
        # before accept: an HTTP 403 to the client)
        if token != "secret":
            await websocket.close(code=1008)
            return None
        return {"name": "ada", "token": token}

    @app.get("/health")
    async def health():
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item_id": item_id}

    @app.websocket("/items/{item_id}/ws")
    async def item_socket(websocket: WebSocket, item_id: int, q: str | None = None,
                          user=Depends(current_user)):
        if user is None:
            return
        subprotocol = "json" if "json" in websocket.scope["subprotocols"] else None
        await websocket.accept(subprotocol=subprotocol)
        events.put(("params", item_id, q, user["name"]))
        try:
            while True:
                message = await websocket.receive_json()
                if message == "bye":
                    await websocket.close(code=4003, reason="bye to you")
                    return
                await websocket.send_json({"item_id": item_id, "q": q, "message": message})
        except WebSocketDisconnect as disconnect:
            events.put(("disconnect", disconnect.code))

    return app


def test_fastapi_endpoint_with_parameters_and_dependency(serve):
    events = queue.Queue()
    address = serve(fastapi_app(events))
    with connect(address, "/items/42/ws?token=secret&q=find", subprotocols=["json"]) as ws:
        assert ws.subprotocol == "json"
        assert next_event(events) == ("params", 42, "find", "ada")
        ws.send(json.dumps({"a": [1, 2, 3]}))
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"item_id": 42, "q": "find", "message": {"a": [1, 2, 3]}}
        ws.send(json.dumps("bye"))
        assert close_code(ws) == (4003, "bye to you")


def test_fastapi_dependency_refusing_is_403(serve):
    from websockets.exceptions import InvalidStatus
    address = serve(fastapi_app(queue.Queue()))
    with pytest.raises(InvalidStatus) as refused:
        with connect(address, "/items/1/ws?token=wrong"):
            pass
    assert refused.value.response.status_code == 403


def test_fastapi_disconnect_reaches_the_app(serve):
    events = queue.Queue()
    address = serve(fastapi_app(events))
    with connect(address, "/items/7/ws?token=secret") as ws:
        assert ws.subprotocol is None
        assert next_event(events) == ("params", 7, None, "ada")
        ws.close(code=1001)
    assert next_event(events) == ("disconnect", 1001)


def test_fastapi_http_routes_on_the_same_server(serve):
    import http.client
    events = queue.Queue()
    address = serve(fastapi_app(events))
    host, port = address.split(":")
    with connect(address, "/items/3/ws?token=secret") as ws:
        next_event(events)
        # while a WebSocket is open, plain HTTP on another connection, and a 404 for a websocket
        # route asked over HTTP
        conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        try:
            for path, status, body in (("/health", 200, {"ok": True}), ("/items/5", 200, {"item_id": 5})):
                conn.request("GET", path)
                response = conn.getresponse()
                assert (response.status, json.loads(response.read())) == (status, body)
            conn.request("GET", "/items/3/ws")
            response = conn.getresponse()
            response.read()
            assert response.status == 404
        finally:
            conn.close()
        ws.send(json.dumps(1))
        assert json.loads(ws.recv(timeout=TIMEOUT))["message"] == 1
    assert next_event(events) == ("disconnect", 1000)

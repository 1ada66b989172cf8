"""WebSocket benchmark servers, one per process, all serving the same ASGI echo app:

    python bench/ws_servers.py NAME --port 8080 [--threads 1] [--max-connections 11000] [--fastcore-from DIR]

The app (`bench.ws_servers:echo_app`): a WebSocket on any path is accepted and every message sent
back as it came (text as text, bytes as bytes); `GET /` answers bench/apps.py's "Hello, World!", so
bench/run.py's readiness probe (http_probe) serves here too. WebSocket options are each server's
defaults (permessage-deflate accepted when offered, 16 MiB max message, server pings every 20 s),
except where a launcher says otherwise.

The fastcore launchers import fastcore as bench/servers.py's do (the checkout's in-place build, or
--fastcore-from DIR) and print its FASTCORE and READY lines; the others exec their server.
"""
import argparse
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import servers  # noqa: E402  (bench/servers.py: fixes sys.path for the checkout's fastcore)
from servers import ROOT, _exec_module, _fastcore_config, _serve, launch  # noqa: E402

from bench.apps import HELLO, asgi_lifespan  # noqa: E402

_HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]


async def echo_app(scope, receive, send):
    kind = scope["type"]
    if kind == "websocket":
        await receive()                                 # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return                                  # websocket.disconnect
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif kind == "http":
        await send({"type": "http.response.start", "status": 200, "headers": _HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
    elif kind == "lifespan":
        await asgi_lifespan(receive, send)


def run_fastcore_asgi(args):
    import fastcore
    _serve(fastcore.ASGIServer(echo_app, lifespan="off", **_fastcore_config(args)))


def _echo_native(ws, message):
    ws.send(message)


def _hello(request):
    import fastcore
    return fastcore.Response(HELLO, content_type="text/plain")


def run_fastcore_native(args):
    # the native API (Server.add_websocket): callbacks in the workers' handler batches, no event loop
    import fastcore
    server = fastcore.Server(_hello, **_fastcore_config(args))
    server.add_websocket("/ws", _echo_native)               # bench/ws_run.py's clients use /ws
    _serve(server)


def run_picows_echo(args):
    # A floor, not a competitor: picows's own Cython server (on uvloop) echoing each frame from its
    # frame callback, with no ASGI and no app: what this client and the loopback cost by themselves.
    import asyncio

    import picows
    from picows import WSListener, WSMsgType, WSUpgradeResponse, WSUpgradeResponseWithListener

    class Echo(WSListener):
        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT):
                transport.send(frame.msg_type, frame.get_payload_as_bytes())    # (the client never fragments)

    def listener(request):
        if (request.headers.get("upgrade") or "").lower() != "websocket":
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(HELLO), None)
        return Echo()

    async def main():
        server = await picows.ws_create_server(listener, "127.0.0.1", args.port, backlog=1024,
                                               max_frame_size=16 << 20)
        servers.ready(args.port)
        async with server:
            await server.serve_forever()

    import uvloop
    uvloop.run(main())


def run_pure_asgi(args):
    from fastcore.pure import ASGIServer
    _serve(ASGIServer(echo_app, lifespan="off", **_fastcore_config(args)))


def _uvicorn(args, ws):
    # as bench/servers.py's uvicorn (httptools, uvloop when installed), with the given WebSocket
    # implementation
    _exec_module("uvicorn", ["--host", "127.0.0.1", "--port", str(args.port), "--workers", "1",
                             "--http", "httptools", "--loop", servers.UVICORN_LOOP, "--ws", ws,
                             "--lifespan", "off", "--no-access-log", "--log-level", "warning",
                             "--backlog", "1024", "--app-dir", ROOT, "bench.ws_servers:echo_app"])


def run_uvicorn_websockets(args):
    _uvicorn(args, "websockets")


def run_uvicorn_wsproto(args):
    _uvicorn(args, "wsproto")


def run_granian_asgi(args):
    # as bench/servers.py's granian-asgi, WebSockets on (its default); --backpressure raised so the
    # idle test can hold its connections
    _exec_module("granian", ["--interface", "asgi", "--host", "127.0.0.1", "--port", str(args.port),
                             "--workers", "1", "--backpressure", str(args.max_connections), "--http", "1",
                             "--backlog", "1024", "--log-level", "warning", "--working-dir", ROOT,
                             "bench.ws_servers:echo_app"])


# name: (launcher, Python modules it needs, one-line description)
SERVERS = {
    "fastcore-asgi": (run_fastcore_asgi, ["fastcore._core"], "fastcore.ASGIServer, echo app; threads=T"),
    "fastcore-native": (run_fastcore_native, ["fastcore._core"],
                        "fastcore.Server.add_websocket('/ws', echo callback): no event loop; threads=T"),
    "pure-asgi": (run_pure_asgi, ["fastcore.pure"], "fastcore.pure.ASGIServer, echo app; threads=T"),
    "uvicorn-websockets": (run_uvicorn_websockets, ["uvicorn", "websockets", "httptools"],
                           f"uvicorn --ws websockets, 1 worker, httptools, {servers.UVICORN_LOOP} loop"),
    "uvicorn-wsproto": (run_uvicorn_wsproto, ["uvicorn", "wsproto", "httptools"],
                        f"uvicorn --ws wsproto, 1 worker, httptools, {servers.UVICORN_LOOP} loop"),
    "picows-echo": (run_picows_echo, ["picows", "uvloop"],
                    "picows.ws_create_server echoing in its frame callback (uvloop): a floor, no ASGI"),
    "granian-asgi": (run_granian_asgi, ["granian"], "granian --interface asgi (WebSockets on), 1 worker, HTTP/1"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=list(SERVERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-connections", type=int, default=11000)
    parser.add_argument("--fastcore-from", default=None, metavar="DIR")
    args = parser.parse_args(argv)
    return launch(parser, args, SERVERS)


if __name__ == "__main__":
    sys.exit(main())

"""ASGI on fastcore: the entry points.

    import fastcore
    fastcore.serve_asgi(app, host="0.0.0.0", port=8000)          # blocks; Ctrl-C stops
    server = fastcore.Server.asgi(app, port=0).start()            # an ASGIServer, its own loop thread
    async with fastcore.AsyncServer(app, port=0) as server:       # on the caller's running loop
        ...

ASGIServer (fastcore.server, beside WSGIServer, so that Server.asgi needs no upward import) runs
the app on an event loop of its own, in a thread. AsyncServer, here, runs it on the caller's
running loop instead, for an asyncio service that embeds the server: the lifespan startup is
awaited in start() (__aenter__), the core is built with that loop watching it, and stop()
(__aexit__) runs the blocking part of the stop (joining the I/O workers) in the loop's default
executor, so the loop keeps serving the cycles a graceful stop waits for; the lifespan shutdown
is awaited after. The pieces (LoopThread, Lifespan, ASGIApp, the response rules) are in
fastcore.asgi; each engine's per-request side in pyext/asgi.pxi and fastcore/pure/asgi.py.
"""
from __future__ import annotations

import asyncio
from typing import Any, Literal, Self, Unpack

from .asgi import ASGIAppCallable, Lifespan
from .config import ServerConfig, ServerOptions
from .errors import ConfigError, ServerStateError
from .server import ASGIServer

__all__ = ["ASGIServer", "AsyncServer", "serve_asgi"]


def serve_asgi(app: ASGIAppCallable, config: ServerConfig | None = None, **options: Unpack[ServerOptions]) -> None:
    """Serve the ASGI application `app` until Ctrl-C / SIGTERM (or stop() from another thread)."""
    ASGIServer(app, config, **options).serve_forever()


class AsyncServer:
    """An ASGI server on the caller's running event loop (no loop thread of its own).

        async with fastcore.AsyncServer(app, port=8000) as server:
            print(server.url)
            await other_work()

    Options are ServerConfig fields; `engine="pure"` (or fastcore.pure.AsyncServer) runs the
    pure-Python engine. The I/O workers are threads as always; the app runs on this loop."""

    engine = "compiled"

    def __init__(self, app: ASGIAppCallable, config: ServerConfig | None = None, *,
                 engine: Literal["compiled", "pure"] | None = None, **options: Unpack[ServerOptions]) -> None:
        chosen = engine or self.engine
        server_class: type[ASGIServer]
        if chosen == "pure":
            from .pure.server import ASGIServer as PureASGIServer
            server_class = PureASGIServer
        elif chosen == "compiled":
            server_class = ASGIServer
        else:
            raise ConfigError(f"engine must be 'compiled' or 'pure', not {chosen!r}")
        self.server: ASGIServer = server_class(app, config, **options)
        self._lifespan: Lifespan | None = None

    @property
    def config(self) -> ServerConfig:
        return self.server.config

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str | None:
        return self.server.url

    @property
    def running(self) -> bool:
        return self.server.running

    def stats(self) -> dict[str, Any]:
        return self.server.stats()

    async def start(self) -> Self:
        """Run the lifespan startup on this loop, then start serving (the listener accepts on return)."""
        if self.server.running or self._lifespan is not None:
            raise ServerStateError("server already started")
        loop = asyncio.get_running_loop()
        lifespan = Lifespan(self.server.app, self.server.config.lifespan)
        state = await lifespan.startup()
        self._lifespan = lifespan
        self.server._embedded_loop = loop
        self.server._embedded_state = state
        try:
            self.server.start()
        except BaseException:
            self._lifespan = None
            await lifespan.shutdown()
            raise
        return self

    async def stop(self, timeout: float | None = None) -> bool | None:
        """Stop as Server.stop does (the joins in an executor thread, so this loop keeps running
        the cycles the stop waits for), then run the lifespan shutdown."""
        lifespan, self._lifespan = self._lifespan, None
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.server.stop, timeout)
        finally:
            if lifespan is not None:
                await lifespan.shutdown()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return "<fastcore.AsyncServer " + repr(self.server)[1:]

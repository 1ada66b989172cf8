"""fastcore.pure.server: Server, fastcore.Server with the pure-Python Core.

Theory of operation. fastcore.server.Server drives its engine through a small interface: a Core
with run_listener(), run_worker(i), stop_listener(), stop_workers(timeout), release() and stats().
fastcore.pure.core.Core has the same interface, so this class inherits everything (options and
ServerConfig, add_static, stop() with its ordering and joins, serve_forever() and signals,
stats(), port / host / running, the context manager, the stop-at-exit registry) and overrides only
start(), the one place the compiled Core is built.
"""
import socket
import threading

from .. import server as compiled_server
from ..errors import ServerStateError
from .core import Core


class Server(compiled_server.Server):
    """An HTTP/1.1 server in pure Python (standard library + httptools), with fastcore.Server's API:

        server = fastcore.pure.Server(handler, host="127.0.0.1", port=8000, threads=2)
        server.add_static("/health", b"OK")
        server.serve_forever()          # or: with fastcore.pure.Server(handler, port=0) as s: ...
    """

    def start(self):
        with self._lifecycle_lock:
            if self._core is not None:
                raise ServerStateError("server already started")
            config = self.config
            family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
            listening = socket.create_server((config.host, config.port), family=family, backlog=config.backlog)
            listening.setblocking(False)
            try:
                core = Core(listening, self.handler, config, list(self._static_routes.values()))
            except BaseException:
                listening.close()
                raise
            self._socket = listening
            self._core = core
            self._stop_requested.clear()
            self._listener_thread = threading.Thread(
                target=core.run_listener, name=f"fastcore-listener:{self.port}", daemon=True)
            self._worker_threads = [
                threading.Thread(target=core.run_worker, args=(index,),
                                 name=f"fastcore-worker-{index}:{self.port}", daemon=True)
                for index in range(config.threads)
            ]
            for thread in self._worker_threads:
                thread.start()
            self._listener_thread.start()
            compiled_server._running_servers.add(self)
        return self

    def __repr__(self):
        state = f"listening on {self.host}:{self.port}" if self.running else "stopped"
        return f"<fastcore.pure.Server {state}, {self.config.threads} threads>"

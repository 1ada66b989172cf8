"""ServerConfig: the one source of fastcore's options and their defaults.

Every option is a field here, with its default and a one-line help text in the field metadata;
the Server constructor and the command line are derived from these fields, so an option is
written down once, and tests/test_docs.py checks that README's options table lists every field with
its default. A leaf module: it imports only fastcore.errors and fastcore.proxy (a leaf too, whose
parser validates forwarded_allow_ips).

Limits, next to what peers use by default:
    max_request_line  8190 bytes   gunicorn limit_request_line 4094; nginx large_client_header_buffers 8k
    max_head_size     32768 bytes  nginx 4 x 8k buffers; gunicorn 100 fields x 8190
    max_header_count  100          gunicorn limit_request_fields 100
    max_body_size     1 MiB        nginx client_max_body_size 1m; gunicorn none
Timeouts (0 disables one):
    header_timeout    30 s         nginx client_header_timeout 60s
    body_timeout      60 s         nginx client_body_timeout 60s (between two reads)
    body_min_rate     240 B/s      Kestrel MinRequestBodyDataRate 240 bytes/s, after a 5 s grace
                                   (body_min_rate_grace 5 s; 0 disables the rate)
    keepalive_timeout 5 s          gunicorn keepalive 2s, uvicorn 5s, nginx keepalive_timeout 75s
    write_timeout     60 s         nginx send_timeout 60s (between two writes)
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from .errors import ConfigError
from .proxy import TrustedProxies


def _option(default: Any, help_text: str, minimum: float | None = None, octal: bool = False) -> Any:
    """octal: a permission mode, which the command line reads and shows in octal as chmod does."""
    return field(default=default, metadata={"help": help_text, "minimum": minimum, "octal": octal})


class ServerOptions(TypedDict, total=False):
    """The keyword arguments Server(...), Server.wsgi(...), serve_wsgi(...) and ServerConfig.replace()
    take: ServerConfig's fields, so that a type checker catches a misspelt option (`prot=8000`).
    tests/test_typing.py checks it lists exactly ServerConfig's fields with their types."""
    host: str
    port: int
    uds: str
    uds_mode: int
    fd: int
    reuse_port: bool
    threads: int
    queue_size: int
    backlog: int
    max_request_line: int
    max_head_size: int
    max_header_count: int
    max_body_size: int
    body_buffer_size: int
    max_connections: int
    header_timeout: float
    body_timeout: float
    body_min_rate: int
    body_min_rate_grace: float
    keepalive_timeout: float
    write_timeout: float
    shutdown_timeout: float
    processes: int
    max_requests: int
    max_requests_jitter: int
    timeout: float
    metrics_path: str
    handler_threads: int
    python_batch: int
    server_name: str
    root_path: str
    forwarded_allow_ips: str
    lifespan: str
    loop: str
    ws_max_size: int
    ws_max_queue: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_per_message_deflate: bool
    access_log: bool
    access_log_file: str
    log_level: str
    log_config: str


@dataclass(frozen=True)
class ServerConfig:
    host: str = _option("127.0.0.1", "address or name to bind (IPv6 bare or in brackets: ::1 or [::1])")
    port: int = _option(8000, "TCP port to bind (0 picks a free one)", 0)
    uds: str = _option("", "listen on this unix domain socket path instead of host:port")
    uds_mode: int = _option(0o660, "permissions of the unix socket file, in octal as for chmod (nginx must "
                            "read and write it: 660 with nginx's user in the server's group, or 666)", 0, octal=True)
    fd: int = _option(-1, "serve on this inherited listening socket fd instead of binding (-1: none)", -1)
    reuse_port: bool = _option(False, "set SO_REUSEPORT on the TCP socket")
    threads: int = _option(2, "worker threads, each with its own epoll set", 1)
    queue_size: int = _option(1024, "accepted connections waiting for a worker; beyond it: 503 and close", 1)
    backlog: int = _option(1024, "listen() backlog", 1)
    max_request_line: int = _option(8190, "longest request line in bytes (414 beyond)", 16)
    max_head_size: int = _option(32768, "largest request head in bytes (431 beyond)", 64)
    max_header_count: int = _option(100, "most header fields in a request (431 beyond)", 1)
    max_body_size: int = _option(1048576, "largest request body in bytes (413 beyond)", 0)
    body_buffer_size: int = _option(262144, "bodies up to this size are read whole before the handler runs; "
                                    "larger ones are streamed to it through request.stream", 1)
    max_connections: int = _option(10000, "open connections at most; beyond: 503 and close (0: no cap)", 0)
    header_timeout: float = _option(30.0, "seconds for a request head to arrive, from its first byte (408); "
                                    "a new connection's first head is due this long after accept", 0)
    body_timeout: float = _option(60.0, "seconds between two reads of a request body (408)", 0)
    body_min_rate: int = _option(240, "bytes/s a request body must average once body_min_rate_grace has "
                                 "passed since its head, or 408 and close: a client trickling bytes "
                                 "within body_timeout cannot hold a connection or handler thread (0: off)", 0)
    body_min_rate_grace: float = _option(5.0, "seconds a request body is given before body_min_rate applies", 0)
    keepalive_timeout: float = _option(5.0, "seconds an idle keep-alive connection stays open", 0)
    write_timeout: float = _option(60.0, "seconds a client may stop taking response bytes before it is closed", 0)
    shutdown_timeout: float = _option(10.0, "seconds a graceful stop lets in-flight requests finish "
                                      "before closing what remains (a second SIGINT/SIGTERM: at once); "
                                      "a handler still running then has 5 s more to return, so a stop "
                                      "takes at most this + 5 s; the command line exits with status 1 "
                                      "when requests were cut off", 0)
    processes: int = _option(1, "worker processes forked by a supervising parent (1: this process serves)", 1)
    max_requests: int = _option(0, "with processes > 1: recycle a child after this many requests (0: never)", 0)
    max_requests_jitter: int = _option(0, "a random 0..N added to max_requests per child, so they do not "
                                       "all restart at once", 0)
    timeout: float = _option(0.0, "a handler call running longer than this many seconds has its Python stack "
                             "logged once and is counted (stats: handlers_over_timeout); with processes > 1 "
                             "its process is then recycled; for an ASGI app, its event loop running no callback for this long (an app "
                             "blocking it) is reported the same way (0: off)", 0)
    metrics_path: str = _option("", "serve server.stats() in Prometheus text format on GET of this path "
                                "(e.g. /metrics; empty: off)")
    handler_threads: int = _option(0, "Python threads that run handlers beside the I/O workers, which then never "
                                   "take the GIL (0: each I/O worker runs its own handler batches inline)", 0)
    python_batch: int = _option(16, "handler calls per GIL acquisition, at most", 1)
    server_name: str = _option("fastcore", "value of the Server response field")
    # Used by the WSGI adapter, the ASGI server and the command line, not by the compiled core:
    root_path: str = _option("", "the URL prefix the app is mounted under: WSGI SCRIPT_NAME (stripped from "
                             "PATH_INFO), ASGI root_path (the scope's path includes it)")
    forwarded_allow_ips: str = _option("127.0.0.1,::1", "peers whose proxy headers are believed (X-Forwarded-For, "
                                       "-Proto, -Host; RFC 7239 Forwarded): IP addresses and CIDR networks, "
                                       "comma-separated; '*' any peer; '' none. A unix socket's peer is trusted "
                                       "unless the list is empty")
    lifespan: str = _option("auto", "ASGI: run the app's lifespan startup before accepting and its shutdown "
                            "after the last request (auto: when the app supports it; on: it must; off)")
    loop: str = _option("auto", "ASGI: the event loop (auto: uvloop when installed, else asyncio; asyncio; uvloop)")
    ws_max_size: int = _option(16777216, "ASGI WebSocket: largest message in bytes, after decompression; a larger "
                               "one closes the connection with 1009", 1)
    ws_max_queue: int = _option(32, "ASGI WebSocket: received messages the app has not taken yet, per "
                                "connection; while it is full the socket is not read", 1)
    ws_ping_interval: float = _option(20.0, "ASGI WebSocket: seconds between the server's pings (0: none)", 0)
    ws_ping_timeout: float = _option(20.0, "ASGI WebSocket: seconds a ping's pong may take before the connection "
                                     "is closed with 1011 (0: no limit)", 0)
    ws_per_message_deflate: bool = _option(True, "ASGI WebSocket: accept permessage-deflate (RFC 7692) when the "
                                           "client offers it")
    access_log: bool = _option(False, "log every response on the fastcore.access logger (gunicorn-like format)")
    access_log_file: str = _option("-", "command line: where --access-log writes its lines: - (stdout) or a "
                                        "file, appended to")
    log_level: str = _option("info", "command line: level of fastcore's loggers, printed to stderr; the "
                             "app's own logging is left as the app configures it "
                             "(critical, error, warning, info, debug)")
    log_config: str = _option("", "command line: a logging.config.dictConfig file (JSON, or TOML when it ends in "
                              ".toml), applied before the app is imported; it is then the whole logging "
                              "setup: fastcore adds no handler of its own (empty: fastcore's loggers to stderr)")

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            expected = (int, float) if spec.type is float else spec.type
            if not isinstance(value, expected) or (isinstance(value, bool) and spec.type is not bool):
                raise ConfigError(f"{spec.name} must be {spec.type.__name__}, not {type(value).__name__}")
            minimum = spec.metadata.get("minimum")
            if minimum is not None and value < minimum:
                raise ConfigError(f"{spec.name} must be at least {minimum}, not {value}")
        if self.host.startswith("[") and self.host.endswith("]"):
            # "[::1]", as IPv6 addresses are written in URLs (and in gunicorn's --bind): the
            # address is what is inside. Frozen, so set through object.
            object.__setattr__(self, "host", self.host[1:-1])
        if self.uds_mode > 0o7777:
            raise ConfigError(f"uds_mode must be a permission mode, at most 0o7777, not {self.uds_mode:#o}")
        if self.max_requests and self.processes == 1:
            # One process serves itself: there is no parent to start a fresh one, so recycling
            # would only stop the server. Refused rather than silently ignored.
            raise ConfigError("max_requests needs processes > 1 (a supervising parent replaces a recycled "
                              "process; with one process nothing would)")
        if self.port > 65535:
            raise ConfigError(f"port must be at most 65535, not {self.port}")
        if self.metrics_path and (not self.metrics_path.startswith("/")
                                  or any(c in self.metrics_path for c in " ?#\r\n\0")):
            raise ConfigError("metrics_path must start with '/' and hold no space, '?', '#', CR, LF or NUL")
        TrustedProxies(self.forwarded_allow_ips)          # raises ConfigError for what is not an address
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"lifespan must be auto, on or off, not {self.lifespan!r}")
        if self.loop not in ("auto", "asyncio", "uvloop"):
            raise ConfigError(f"loop must be auto, asyncio or uvloop, not {self.loop!r}")
        if any(c in self.server_name for c in "\r\n\0") or len(self.server_name) > 200:
            raise ConfigError("server_name must be at most 200 characters, without CR, LF or NUL")

    def replace(self, **changes: Unpack[ServerOptions]) -> "ServerConfig":
        unknown = set(changes) - {spec.name for spec in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

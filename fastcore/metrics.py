"""The opt-in metrics route: server.stats() in Prometheus text format (exposition format 0.0.4).

With `metrics_path="/metrics"` (`--metrics-path /metrics`) a GET or HEAD of exactly that path (the
query is ignored) is answered with the counters below; every other request goes to the
application. It is a wrapper around the server's Python handler (Server._dispatch applies it and
declares its path to the core, so a WSGI app keeps its compiled fast path for every other request);
it takes the GIL like any Python route.

    fastcore_requests_total                          requests parsed
    fastcore_responses_total{class="2xx"}            responses by status class (1xx..5xx, other)
    fastcore_bytes_received_total                    bytes read from clients
    fastcore_bytes_sent_total                        bytes written to clients
    fastcore_connections_open                        open connections now (a gauge)
    fastcore_accepted_total                          connections accepted
    fastcore_rejected_total{reason="queue_full"}     connections refused with 503 (queue full / cap)
    fastcore_rejected_total{reason="connection_limit"}
    fastcore_accept_pauses_total                     100 ms pauses of accepting: out of descriptors
                                                     (or memory)
    fastcore_accept_exhaustions_total                episodes of such pauses (each logged once)
    fastcore_handlers_over_timeout_total             handler calls that ran longer than timeout
    fastcore_worker_requests_total{worker="0"}       requests per worker thread

The numbers are this process's: with processes > 1 every child serves its own counters, and the
child that accepts the scrape's connection answers (Prometheus sums series; scrape each child on
its own socket with reuse_port, or aggregate elsewhere). The scrape is counted as a request; its
own response bytes are not yet in bytes_sent. A leaf module: it imports only the compiled core.
"""
from ._core import Response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")


def render(stats):
    """The Prometheus text for a server.stats() dict (an empty dict: a stopped server)."""
    lines = []

    def family(name, kind, help_text, samples):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{key}="{val}"' for key, val in labels)
            lines.append(f"{name}{{{label_text}}} {int(value)}" if label_text else f"{name} {int(value)}")

    responses = stats.get("responses", {})
    family("fastcore_requests_total", "counter", "Requests parsed by this process.",
           [((), stats.get("requests", 0))])
    family("fastcore_responses_total", "counter", "Responses sent, by status class.",
           [((("class", name),), responses.get(name, 0)) for name in _RESPONSE_CLASSES])
    family("fastcore_bytes_received_total", "counter", "Bytes read from clients.",
           [((), stats.get("bytes_received", 0))])
    family("fastcore_bytes_sent_total", "counter", "Bytes written to clients.",
           [((), stats.get("bytes_sent", 0))])
    family("fastcore_connections_open", "gauge", "Connections open now.",
           [((), stats.get("open_connections", 0))])
    family("fastcore_accepted_total", "counter", "Connections accepted.",
           [((), stats.get("accepted", 0))])
    family("fastcore_rejected_total", "counter", "Connections refused with a 503, by reason.",
           [((("reason", "queue_full"),), stats.get("rejected_queue_full", 0)),
            ((("reason", "connection_limit"),), stats.get("rejected_connection_limit", 0))])
    family("fastcore_accept_pauses_total", "counter",
           "Times accepting paused for 100 ms: out of file descriptors (or memory).",
           [((), stats.get("accept_pauses", 0))])
    family("fastcore_accept_exhaustions_total", "counter",
           "Episodes of descriptor (or memory) exhaustion while accepting.",
           [((), stats.get("accept_exhaustions", 0))])
    family("fastcore_handlers_over_timeout_total", "counter",
           "Handler calls that ran longer than timeout (their stacks are logged).",
           [((), stats.get("handlers_over_timeout", 0))])
    family("fastcore_worker_requests_total", "counter", "Requests handled, by worker thread.",
           [((("worker", str(index)),), worker.get("requests", 0))
            for index, worker in enumerate(stats.get("workers", []))])
    return "\n".join(lines) + "\n"


def metrics_route(handler, path, stats):
    """Wrap `handler` (or None: no Python routes) so that `path` answers with render(stats())."""

    def serve_metrics(request):
        if request.path == path:
            if request.method not in ("GET", "HEAD"):
                return Response(b"Method Not Allowed\n", status=405, headers={"Allow": "GET, HEAD"},
                                content_type="text/plain; charset=utf-8")
            return Response(render(stats()).encode("ascii"), content_type=CONTENT_TYPE)
        if handler is None:
            return Response(b"Not Found\n", status=404, content_type="text/plain; charset=utf-8")
        return handler(request)

    serve_metrics.logs_access = getattr(handler, "logs_access", False)
    return serve_metrics


def asgi_metrics_route(app, path, stats):
    """An ASGI app that answers GET and HEAD of exactly `path` with render(stats()) itself and
    passes everything else (lifespan included) to `app`."""

    async def routed(scope, receive, send):
        if scope["type"] != "http" or scope["path"] != path or scope["method"] not in ("GET", "HEAD"):
            return await app(scope, receive, send)
        body = render(stats()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return routed

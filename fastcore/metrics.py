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

With processes = 1 the numbers are this process's. With processes > 1 the child that accepts
the scrape answers for every child, from the memory they share (fastcore.process_stats): the
families above are the totals of all processes (fastcore_worker_requests_total is then labelled
{process="<index>",worker="<n>"}), and each family is repeated per process as
fastcore_process_<name>{process="<index>"} (fastcore_process_requests_total{process="0"}, ...),
with fastcore_process_pid{process="<index>"} and fastcore_process_restarts_total{process="<index>"}.
Separate names, so that sum() over a family never counts a request twice.

The label is the process index 0..processes-1, not the pid: a replacement child keeps the index,
so Prometheus sees one series per index across restarts instead of a new series per pid, and the
pid is there as a gauge. A replaced child's counters are kept (the parent folds them into its
index's slot), so neither the totals nor the per-process `_total` series go backwards when a child
is killed or recycled; what a killed child counted in its last PUBLISH_INTERVAL (0.5 s) is lost.
The scraped child's numbers are current, the others' at most PUBLISH_INTERVAL old.

The scrape is counted as a request; its own response bytes are not yet in bytes_sent. It imports
the compiled core (Response) and fastcore.process_stats (the shared numbers' layout).
"""
from . import process_stats
from ._core import Response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_RESPONSE_CLASSES = process_stats.RESPONSE_CLASSES

# (name after "fastcore_", type, help, samples of a stats() dict as [(labels, value)]). Each is
# rendered once for the server (the total across processes, when there are several) and, with
# several processes, once more per process as fastcore_process_<name>{process="<index>"}.
_FAMILIES = (
    ("requests_total", "counter", "Requests parsed.", lambda stats: [((), stats.get("requests", 0))]),
    ("responses_total", "counter", "Responses sent, by status class.",
     lambda stats: [((("class", name),), stats.get("responses", {}).get(name, 0)) for name in _RESPONSE_CLASSES]),
    ("bytes_received_total", "counter", "Bytes read from clients.",
     lambda stats: [((), stats.get("bytes_received", 0))]),
    ("bytes_sent_total", "counter", "Bytes written to clients.", lambda stats: [((), stats.get("bytes_sent", 0))]),
    ("connections_open", "gauge", "Connections open now.", lambda stats: [((), stats.get("open_connections", 0))]),
    ("accepted_total", "counter", "Connections accepted.", lambda stats: [((), stats.get("accepted", 0))]),
    ("rejected_total", "counter", "Connections refused with a 503, by reason.",
     lambda stats: [((("reason", "queue_full"),), stats.get("rejected_queue_full", 0)),
                    ((("reason", "connection_limit"),), stats.get("rejected_connection_limit", 0))]),
    ("accept_pauses_total", "counter", "Times accepting paused for 100 ms: out of file descriptors (or memory).",
     lambda stats: [((), stats.get("accept_pauses", 0))]),
    ("accept_exhaustions_total", "counter", "Episodes of descriptor (or memory) exhaustion while accepting.",
     lambda stats: [((), stats.get("accept_exhaustions", 0))]),
    ("handlers_over_timeout_total", "counter", "Handler calls that ran longer than timeout (their stacks are logged).",
     lambda stats: [((), stats.get("handlers_over_timeout", 0))]),
)


def render(stats, processes=None):
    """The Prometheus text for a server.stats() dict (an empty dict: a stopped server). With
    `processes` (Server.process_stats(): several processes), `stats` is their total
    (process_stats.aggregate) and every family is repeated per process."""
    lines = []

    def family(name, kind, help_text, samples):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{key}="{val}"' for key, val in labels)
            lines.append(f"{name}{{{label_text}}} {int(value)}" if label_text else f"{name} {int(value)}")

    for name, kind, help_text, samples in _FAMILIES:
        family(f"fastcore_{name}", kind, help_text if processes is None else f"{help_text} All processes.",
               samples(stats))
    if processes is None:
        family("fastcore_worker_requests_total", "counter", "Requests handled, by worker thread.",
               [((("worker", str(index)),), worker.get("requests", 0))
                for index, worker in enumerate(stats.get("workers", []))])
        return "\n".join(lines) + "\n"
    family("fastcore_worker_requests_total", "counter", "Requests handled, by process and worker thread.",
           [((("process", str(each["process"])), ("worker", str(index))), worker.get("requests", 0))
            for each in processes for index, worker in enumerate(each.get("workers", []))])
    for name, kind, help_text, samples in _FAMILIES:
        family(f"fastcore_process_{name}", kind, f"{help_text} By process index.",
               [((("process", str(each["process"])),) + labels, value)
                for each in processes for labels, value in samples(each)])
    family("fastcore_process_pid", "gauge", "The pid of the process serving this index now (0: none).",
           [((("process", str(each["process"])),), each["pid"]) for each in processes])
    family("fastcore_process_restarts_total", "counter",
           "Processes of this index that have exited and were replaced (their counters are kept).",
           [((("process", str(each["process"])),), each["restarts"]) for each in processes])
    return "\n".join(lines) + "\n"


def _text(stats, process_stats_of):
    """The route's body: this process's stats(), or every process's when they are shared."""
    processes = process_stats_of() if process_stats_of is not None else None
    if processes is None:
        return render(stats())
    return render(process_stats.aggregate(processes), processes)


def metrics_route(handler, path, stats, process_stats_of=None):
    """Wrap `handler` (or None: no Python routes) so that `path` answers with render(stats()), or
    with every process's numbers when `process_stats_of()` (Server.process_stats) gives them."""

    def serve_metrics(request):
        if request.path == path:
            if request.method not in ("GET", "HEAD"):
                return Response(b"Method Not Allowed\n", status=405, headers={"Allow": "GET, HEAD"},
                                content_type="text/plain; charset=utf-8")
            return Response(_text(stats, process_stats_of).encode("ascii"), content_type=CONTENT_TYPE)
        if handler is None:
            return Response(b"Not Found\n", status=404, content_type="text/plain; charset=utf-8")
        return handler(request)

    serve_metrics.logs_access = getattr(handler, "logs_access", False)
    return serve_metrics


def asgi_metrics_route(app, path, stats, process_stats_of=None):
    """An ASGI app that answers GET and HEAD of exactly `path` with render(stats()) itself and
    passes everything else (lifespan included) to `app`."""

    async def routed(scope, receive, send):
        if scope["type"] != "http" or scope["path"] != path or scope["method"] not in ("GET", "HEAD"):
            return await app(scope, receive, send)
        body = _text(stats, process_stats_of).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return routed

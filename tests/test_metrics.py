"""The opt-in metrics route: server.stats() in Prometheus text format."""
import os
import re

import pytest

import fastcore
from fastcore import metrics, process_stats
from conftest import ResponseReader, connect

SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)\})? (\d+)$')


def parse(text):
    """{(name, labels): value}; every line is a sample or a # HELP / # TYPE comment."""
    samples = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) fastcore_[a-z_]+ .+$", line), line
            continue
        match = SAMPLE.match(line)
        assert match, line
        samples[(match.group(1), match.group(3) or "")] = int(match.group(5))
    return samples


def test_metrics_match_the_traffic(server):
    srv = server(lambda request: b"python", static={"/static": b"S"}, metrics_path="/metrics")
    sent = received = 0
    requests = [b"GET /py HTTP/1.1\r\nHost: t\r\n\r\n"] * 5 + [b"GET /static HTTP/1.1\r\nHost: t\r\n\r\n"] * 3 \
        + [b"GET /nothing-here HTTP/1.1\r\nHost: t\r\n\r\n"]
    scrape = b"GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
    with connect(srv.port) as sock:
        reader = ResponseReader(sock)
        for request in requests:
            sock.sendall(request)
            sent += len(request)
            response = reader.read_response()
            received += len(response.raw)
        sock.sendall(scrape)
        sent += len(scrape)
        response = reader.read_response()
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse(response.body.decode("ascii"))
    assert samples[("fastcore_requests_total", "")] == len(requests) + 1      # the scrape counts
    assert samples[("fastcore_responses_total", 'class="2xx"')] == len(requests)
    assert samples[("fastcore_responses_total", 'class="4xx"')] == 0
    assert samples[("fastcore_bytes_received_total", "")] == sent
    assert samples[("fastcore_bytes_sent_total", "")] == received            # not the scrape's own
    assert samples[("fastcore_connections_open", "")] == 1
    assert samples[("fastcore_accepted_total", "")] == 1
    assert samples[("fastcore_rejected_total", 'reason="queue_full"')] == 0
    assert samples[("fastcore_rejected_total", 'reason="connection_limit"')] == 0
    workers = {labels: value for (name, labels), value in samples.items()
               if name == "fastcore_worker_requests_total"}
    assert set(workers) == {f'worker="{index}"' for index in range(srv.config.threads)}
    assert sum(workers.values()) == len(requests) + 1


def test_metrics_route_is_off_by_default_and_only_answers_get(server):
    srv = server(lambda request: b"app:" + request.path.encode())
    with connect(srv.port) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ResponseReader(sock).read_response().body == b"app:/metrics"
    srv2 = server(lambda request: b"app", metrics_path="/stats")
    with connect(srv2.port) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"POST /stats HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        response = reader.read_response()
        assert response.status == 405 and response.headers["allow"] == "GET, HEAD"
        sock.sendall(b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_response().body == b"app"


def test_render_of_a_stopped_server_parses():
    samples = parse(metrics.render({}))
    assert samples[("fastcore_requests_total", "")] == 0


def test_metrics_path_must_be_a_path():
    with pytest.raises(fastcore.ConfigError):
        fastcore.ServerConfig(metrics_path="metrics")


@pytest.mark.compiled_only("the WSGI fast path is the compiled engine's")
def test_metrics_route_keeps_the_wsgi_fast_path(engine, wsgi_server, python_wsgi_calls):
    """With metrics on, /metrics is answered by the route and every other request still goes
    through pyext/wsgi.pxi, not through the Python WSGIHandler.__call__ (which is counted here)."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    srv = wsgi_server(app, validate=False, metrics_path="/metrics")     # a list body: Content-Length
    with connect(srv.port, 5) as sock:
        reader = ResponseReader(sock)
        for path in (b"/app", b"/metrics", b"/metrics/x", b"/app2"):
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            response = reader.read_response()
            assert response.status == 200, path
            if path == b"/metrics":
                assert b"fastcore_requests_total" in response.body
            else:
                assert response.body == path
    assert python_wsgi_calls == []


# -- several processes: fastcore.process_stats, without forking ---------------------------------

def stats_of(requests, open_connections=0, worker_requests=(0, 0)):
    return {"requests": requests, "open_connections": open_connections, "responses": {"2xx": requests},
            "workers": [{"requests": count} for count in worker_requests]}


def test_shared_stats_carry_a_retired_childs_counters_to_its_replacement():
    shared = process_stats.SharedStats(processes=2, threads=2)
    try:
        first = process_stats.ChildStats(shared, 0, 0, 1, lambda: stats_of(10, 3, (4, 6)))
        first.publish()
        other = process_stats.ChildStats(shared, 1, 0, 2, lambda: stats_of(5, 1))
        other.publish()
        first.publish(stats_of(7, 2))               # a counter lower than published stays put
        view = shared.read()
        assert [(each["process"], each["requests"], each["open_connections"]) for each in view] \
            == [(0, 10, 2), (1, 5, 1)]
        assert view[0]["pid"] == os.getpid() and view[0]["workers"][1]["requests"] == 6
        assert process_stats.aggregate(view)["requests"] == 15
        shared.retire(0, 0)                         # the parent reaped the first child
        view = shared.read()
        assert (view[0]["requests"], view[0]["open_connections"], view[0]["pid"], view[0]["restarts"]) \
            == (10, 0, 0, 1)
        replacement = process_stats.ChildStats(shared, 0, 0, 3, lambda: stats_of(2, 1))
        replacement.publish()
        rolling = process_stats.ChildStats(shared, 0, 1, 4, lambda: stats_of(1))
        rolling.publish()                           # a rolling restart's new child: the other slot
        view = shared.read()
        assert (view[0]["requests"], view[0]["open_connections"], view[0]["restarts"]) == (13, 1, 1)
        assert view[0]["responses"]["2xx"] == 13
    finally:
        shared.close()


def test_a_torn_slot_is_read_as_its_previous_snapshot():
    """A reader that copies a buffer while it is written (or one a killed child left half
    written) sees its crc fail and takes the other buffer, the previous complete snapshot."""
    shared = process_stats.SharedStats(processes=1, threads=1)
    try:
        child = process_stats.ChildStats(shared, 0, 0, 1, lambda: {})
        child.publish(stats_of(1, worker_requests=(1,)))
        child.publish(stats_of(2, worker_requests=(2,)))       # the newer version, in the second buffer
        size = shared._buffer.size
        shared._memory[size + 40:size + 48] = b"\xff" * 8       # tear it
        assert shared.read()[0]["requests"] == 1
        child.publish(stats_of(3, worker_requests=(3,)))       # the writer overwrites the torn one
        assert shared.read()[0]["requests"] == 3
    finally:
        shared.close()


def test_render_across_processes_parses_and_keeps_totals_apart():
    processes = [dict(stats_of(4, 1, (1, 3)), process=0, pid=100, restarts=0),
                 dict(stats_of(6, 0, (6, 0)), process=1, pid=101, restarts=2)]
    samples = parse(metrics.render(process_stats.aggregate(processes), processes))
    assert samples[("fastcore_requests_total", "")] == 10
    assert samples[("fastcore_process_requests_total", 'process="1"')] == 6
    assert samples[("fastcore_process_responses_total", 'process="0",class="2xx"')] == 4
    assert samples[("fastcore_connections_open", "")] == 1
    assert samples[("fastcore_worker_requests_total", 'process="0",worker="1"')] == 3
    assert samples[("fastcore_process_pid", 'process="1"')] == 101
    assert samples[("fastcore_process_restarts_total", 'process="1"')] == 2
    assert not any(name == "fastcore_requests_total" and labels for name, labels in samples)

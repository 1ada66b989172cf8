"""Out of file descriptors: the listener pauses accepting (100 ms at a time) and counts it; the
Server logs one line per episode (rate-limited) and stats() / the metrics route show the counts.
The server runs in a subprocess whose RLIMIT_NOFILE is lowered just above what it has open, so
that this test process keeps its own descriptors."""
import logging
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import fastcore.server
from conftest import child_env, connect, wait_until

SCRIPT = textwrap.dedent(r"""
    import logging, os, resource, sys
    import fastcore, fastcore.pure

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    server_class = fastcore.pure.Server if sys.argv[1] == "pure" else fastcore.Server
    server = server_class(lambda request: b"ok", port=0, threads=1, metrics_path="/metrics")
    server.start()
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1 + int(sys.argv[2]), hard))
    server.serve_forever(on_ready=lambda s: print(s.port, flush=True))
""")

EXHAUSTED_LINE = "out of file descriptors accepting connections (EMFILE)"


def lines_of(stream):
    """A queue that receives the stream's lines as they come (None at its end)."""
    lines = queue.Queue()

    def pump():
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(lines, text, seconds, seen):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if text in line:
            return True
    return False


def scrape(port):
    with connect(port, timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    samples = {}
    for line in data.decode().split("\r\n\r\n", 1)[1].splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = int(value)
    return samples


@pytest.mark.parametrize("engine", ["compiled", "pure"])
def test_descriptor_exhaustion_is_logged_once_and_counted(engine):
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, engine, "6"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env(), text=True)
    clients = []
    try:
        port = int(child.stdout.readline())
        stderr_lines = lines_of(child.stderr)
        seen = []
        for _ in range(40):                     # more than the child has descriptors left
            clients.append(connect(port, timeout=5))
        assert wait_for_line(stderr_lines, EXHAUSTED_LINE, 10, seen), "".join(seen)

        for sock in clients:                    # the child's connections see EOF and close
            sock.close()
        clients = []
        samples = {}

        def scraped():
            try:
                samples.update(scrape(port))
            except OSError:
                return False
            return True

        assert wait_until(scraped, 10)
        assert samples["fastcore_accept_exhaustions_total"] >= 1
        assert samples["fastcore_accept_pauses_total"] >= samples["fastcore_accept_exhaustions_total"]

        child.send_signal(signal.SIGTERM)
        assert child.wait(15) == 0
        wait_for_line(stderr_lines, "\0never", 5, seen)      # the rest of stderr, to its end
        assert sum(EXHAUSTED_LINE in line for line in seen) == 1, "".join(seen)     # rate-limited
    finally:
        for sock in clients:
            sock.close()
        child.kill()
        child.wait()


def test_episodes_are_logged_once_each_and_rate_limited(monkeypatch):
    """The reporting logic on its own: a new episode is logged once; episodes within the interval
    wait and are summed into the next line."""
    server = fastcore.Server(lambda request: b"ok")
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect()
    logging.getLogger("fastcore.error").addHandler(handler)
    try:
        stats = {"accept_exhaustions": 0, "accept_exhaustion_errno": 24}
        server._report_accept_exhaustion(stats)
        assert records == []
        stats["accept_exhaustions"] = 1
        server._report_accept_exhaustion(stats)
        server._report_accept_exhaustion(stats)             # the same episode: not again
        assert len(records) == 1 and EXHAUSTED_LINE in records[0]
        stats["accept_exhaustions"] = 3
        server._report_accept_exhaustion(stats)             # within the interval: held back
        assert len(records) == 1
        monkeypatch.setattr(fastcore.server, "ACCEPT_EXHAUSTION_LOG_INTERVAL", 0.0)
        server._report_accept_exhaustion(stats)
        assert len(records) == 2 and "2 episodes since the last report" in records[1]
        stats.update(accept_exhaustions=4, accept_exhaustion_errno=105)     # ENOBUFS
        server._report_accept_exhaustion(stats)
        assert "out of memory accepting connections (ENOBUFS)" in records[2]
    finally:
        logging.getLogger("fastcore.error").removeHandler(handler)

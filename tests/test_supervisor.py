"""--processes N: a supervising parent and forked children, driven as a user would (subprocesses)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import connect, child_env

PID_APP = textwrap.dedent("""
    import os
    import fastcore

    def app(request):
        return fastcore.Response(str(os.getpid()).encode(), content_type="text/plain")
""")


class Service:
    def __init__(self, tmp_path, *options, app="pidapp:app", source=PID_APP):
        (tmp_path / "pidapp.py").write_text(source)
        self.stderr_path = tmp_path / "stderr.txt"
        self.stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fastcore", "--interface", "native", app, "--port", "0",
             "--app-dir", str(tmp_path), *options],
            stdout=subprocess.PIPE, stderr=self.stderr, env=child_env(), text=True, cwd=tmp_path)
        self.port = None

    def wait_ready(self):
        line = self.process.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, self.errors())
        self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        return self

    def errors(self):
        self.stderr.flush()
        return self.stderr_path.read_text()

    def children(self):
        pid = self.process.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as listing:
                return {int(word) for word in listing.read().split()}
        except FileNotFoundError:
            return set()

    def get(self, path=b"/", timeout=5.0):
        """The body of a 200 to GET `path` on a new connection (whichever child accepts it)."""
        with connect(self.port, timeout=timeout) as sock:
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data
        return data.split(b"\r\n\r\n", 1)[1]

    def get_pid(self, timeout=5.0):
        return int(self.get(b"/", timeout))

    def close(self):
        children = self.children()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.stdout.close()
        self.stderr.close()


@pytest.fixture
def service(tmp_path):
    started = []

    def start(*options, **kwargs):
        started.append(Service(tmp_path, *options, **kwargs))
        return started[-1]
    yield start
    for each in started:
        each.close()


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def test_two_children_serve_and_sigterm_exits_zero(service):
    svc = service("--processes", "2").wait_ready()
    children = svc.children()
    assert len(children) == 2
    seen = set()
    for _ in range(300):                                # the kernel picks the child that accepts
        seen.add(svc.get_pid())
        if len(seen) == 2:
            break
        time.sleep(0.005)
    assert seen == children, (seen, children)
    started = time.monotonic()
    svc.process.send_signal(signal.SIGTERM)
    assert svc.process.wait(15) == 0
    assert time.monotonic() - started < 10
    assert all(not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
               for pid in children)


def test_a_killed_child_is_replaced_and_the_service_keeps_answering(service):
    svc = service("--processes", "2").wait_ready()
    before = svc.children()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    answered = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answered.append(svc.get_pid())                  # never fails: the other child serves
        now = svc.children()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.02)
    now = svc.children()
    assert victim not in now and len(now) == 2, (before, now)
    assert answered and victim not in answered[1:]
    new = (now - before).pop()
    assert wait_for(lambda: new in {svc.get_pid() for _ in range(20)}, 5)
    assert "died (killed by SIGKILL)" in svc.errors()


def test_sighup_replaces_every_child_without_failed_requests(service):
    svc = service("--processes", "2").wait_ready()
    before = svc.children()
    pids = []
    started = time.monotonic()
    for index in range(200):
        if index == 20:
            svc.process.send_signal(signal.SIGHUP)
        pids.append(svc.get_pid())                      # raises on any failed request
        time.sleep(0.015)
        if index > 20 and not (svc.children() & before) and len(svc.children()) == 2 \
                and set(pids[-10:]).isdisjoint(before):
            break
    assert time.monotonic() - started < 20
    after = svc.children()
    assert len(after) == 2 and not (after & before), (before, after)
    assert set(pids[-10:]) <= after
    svc.process.send_signal(signal.SIGTERM)
    assert svc.process.wait(15) == 0


def test_max_requests_recycles_children(service):
    svc = service("--processes", "2", "--max-requests", "20").wait_ready()
    before = svc.children()
    seen = set()
    for _ in range(300):
        seen.add(svc.get_pid())
        if seen - before:
            break
        time.sleep(0.02)
    assert seen - before, "no child was recycled after max_requests"
    assert "max_requests" in svc.errors()
    assert svc.process.poll() is None


def test_an_app_that_fails_at_import_exits_quickly_with_one_message(service):
    svc = service("--processes", "2", source="raise RuntimeError('broken app')\n")
    assert svc.process.wait(15) == 1
    assert svc.process.stdout.read() == ""
    lines = [line for line in svc.errors().splitlines() if line.strip()]
    assert lines == ["fastcore: error: importing 'pidapp' failed: RuntimeError: broken app "
                     "(--log-level debug shows the traceback)"], lines


CRASHING_SCRIPT = textwrap.dedent(r"""
    import fastcore

    server = fastcore.Server(lambda request: b"x", port=0, processes=2)
    def start():
        raise RuntimeError("cannot start")
    server.start = start                  # every child fails right at start
    try:
        server.serve_forever(on_ready=lambda s: print("ready", flush=True))
    except fastcore.supervisor.SupervisorError as error:
        print("failed:", error, flush=True)
        raise SystemExit(3)
""")


def test_children_failing_at_start_make_the_parent_give_up():
    child = subprocess.Popen([sys.executable, "-c", "import fastcore.supervisor\n" + CRASHING_SCRIPT],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), text=True)
    try:
        started = time.monotonic()
        out, err = child.communicate(timeout=20)
        assert child.returncode == 3, (out, err)
        assert time.monotonic() - started < 10
        assert out.startswith("failed: the worker processes keep failing at start"), out
        assert "cannot start" in err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


SERVER_API_SCRIPT = textwrap.dedent(r"""
    import os, sys
    import fastcore

    server = fastcore.Server(lambda request: str(os.getpid()).encode(), port=0, processes=2)
    server.serve_forever(on_ready=lambda s: print(s.port, flush=True))
    print("stopped", flush=True)
""")


def test_server_processes_option_from_python():
    child = subprocess.Popen([sys.executable, "-c", SERVER_API_SCRIPT], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env(), text=True)
    try:
        port = int(child.stdout.readline())
        pids = set()
        for _ in range(300):
            if len(pids) == 2:
                break
            with connect(port) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            pids.add(int(data.split(b"\r\n\r\n", 1)[1]))
        assert len(pids) == 2 and child.pid not in pids
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=15)
        assert child.returncode == 0 and out.strip() == "stopped"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


# -- metrics across processes (fastcore.process_stats) -------------------------------------------

def scrape(svc):
    """{(name, labels): value} of one /metrics scrape (a new connection: any child answers)."""
    samples = {}
    for line in svc.get(b"/metrics").decode("ascii").splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            samples[(name, labels.rstrip("}"))] = int(value)
    return samples


def scrape_until(svc, sent, settled, seconds=10):
    """Scrape until the total counts every request sent plus the scrapes so far and settled(samples)
    holds (children publish every 0.5 s), or `seconds` pass: (samples, scrapes, total)."""
    scrapes = 0
    deadline = time.monotonic() + seconds
    while True:
        samples = scrape(svc)
        scrapes += 1
        total = samples[("fastcore_requests_total", "")]
        if (total >= sent + scrapes and settled(samples)) or time.monotonic() > deadline:
            return samples, scrapes, total


def per_process(samples, name):
    """{process index: value} of a fastcore_process_* family without other labels."""
    return {labels.split('"')[1]: value for (family, labels), value in samples.items() if family == name}


def serve_on_both_children(svc, at_least):
    """GET / until both children answered and at least `at_least` requests went out: {pid: count}."""
    served = {}
    deadline = time.monotonic() + 20
    while (len(served) < 2 or sum(served.values()) < at_least) and time.monotonic() < deadline:
        pid = svc.get_pid()
        served[pid] = served.get(pid, 0) + 1
    assert len(served) == 2 and set(served) == svc.children(), (served, svc.children())
    return served


def test_metrics_from_any_child_report_every_process(service):
    """Each scrape reaches one child; every one reports the total of both, never more than was
    sent (no request counted twice), and a series per process index naming its pid."""
    svc = service("--processes", "2", "--metrics-path", "/metrics").wait_ready()
    served = serve_on_both_children(svc, 40)
    sent = sum(served.values())
    scrapes = 0
    previous = 0
    deadline = time.monotonic() + 10
    while True:                                   # the other child publishes every 0.5 s
        samples = scrape(svc)
        scrapes += 1
        total = samples[("fastcore_requests_total", "")]
        if total >= sent + scrapes or time.monotonic() > deadline:
            break
    for _ in range(20):
        samples = scrape(svc)
        scrapes += 1
        total = samples[("fastcore_requests_total", "")]
        requests = per_process(samples, "fastcore_process_requests_total")
        pids = per_process(samples, "fastcore_process_pid")
        assert set(requests) == set(pids) == {"0", "1"}, samples
        assert set(pids.values()) == set(served), (pids, served)
        assert sent <= total <= sent + scrapes, (total, sent, scrapes)
        assert total == sum(requests.values())
        assert total >= previous
        previous = total
        for index, pid in pids.items():           # each index counts at least what its pid served
            assert requests[index] >= served[pid], (requests, pids, served)
        workers = {labels: value for (name, labels), value in samples.items()
                   if name == "fastcore_worker_requests_total"}
        assert {labels.split('"')[1] for labels in workers} == {"0", "1"}
        assert sum(workers.values()) == total
        assert samples[("fastcore_responses_total", 'class="2xx"')] >= sent
        assert per_process(samples, "fastcore_process_restarts_total") == {"0": 0, "1": 0}


def test_metrics_totals_never_go_backwards_when_a_child_is_killed(service):
    """SIGKILL one child: its replacement takes its index, the index's counters carry on from the
    dead child's last published numbers, and no scrape ever shows a smaller total."""
    svc = service("--processes", "2", "--metrics-path", "/metrics").wait_ready()
    served = serve_on_both_children(svc, 30)
    sent = sum(served.values())
    victim = min(served)
    history = []

    def scrape_and_check():
        samples = scrape(svc)
        total = samples[("fastcore_requests_total", "")]
        assert not history or total >= history[-1], (history, total)
        history.append(total)
        return samples

    deadline = time.monotonic() + 10
    while True:                                   # both children's numbers published
        samples = scrape_and_check()
        pids = per_process(samples, "fastcore_process_pid")
        index = next((key for key, pid in pids.items() if pid == victim), None)
        requests = per_process(samples, "fastcore_process_requests_total")
        if (index is not None and requests[index] >= served[victim] and history[-1] >= sent) \
                or time.monotonic() > deadline:
            break
    assert index is not None and requests[index] >= served[victim], (pids, requests, served)
    before_kill = requests[index]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while True:                                   # until the replacement serves the index
        samples = scrape_and_check()
        pids = per_process(samples, "fastcore_process_pid")
        restarts = per_process(samples, "fastcore_process_restarts_total")
        if (pids[index] not in (0, victim) and restarts[index] == 1) or time.monotonic() > deadline:
            break
    assert pids[index] not in (0, victim) and pids[index] in svc.children(), (pids, svc.children())
    assert restarts == {index: 1, str(1 - int(index)): 0}, restarts
    assert per_process(samples, "fastcore_process_requests_total")[index] >= before_kill
    assert history[-1] >= sent
    more = serve_on_both_children(svc, 20)     # the replacement counts on top of what was kept
    sent_after = sum(more.values())
    deadline = time.monotonic() + 10
    while history[-1] < sent + sent_after and time.monotonic() < deadline:    # what is asserted next
        scrape_and_check()
    assert history[-1] >= sent + sent_after, (history, sent, sent_after)
    assert "died (killed by SIGKILL)" in svc.errors()


def test_metrics_keep_what_recycled_children_served(service):
    """max_requests recycles children gracefully: each publishes its final numbers before it
    exits, so the total counts every request served (exactly, plus the scrapes)."""
    svc = service("--processes", "2", "--max-requests", "15", "--metrics-path", "/metrics").wait_ready()
    before = svc.children()
    sent = 0
    deadline = time.monotonic() + 20
    while (svc.children() & before) and time.monotonic() < deadline:   # both recycled at least once
        svc.get_pid()
        sent += 1
    assert not (svc.children() & before), "the children were not recycled"
    # (a child that exited is counted in restarts once the parent reaped it)
    samples, scrapes, total = scrape_until(
        svc, sent, lambda samples: sum(per_process(samples, "fastcore_process_restarts_total").values()) >= 2)
    restarts = sum(per_process(samples, "fastcore_process_restarts_total").values())
    assert total == sent + scrapes, (total, sent, scrapes)
    assert restarts >= 2


def test_metrics_keep_process_indexes_through_a_rolling_restart(service):
    """SIGHUP: each new child takes the index of the one it replaces (both alive for a moment,
    in the index's two slots), so the series stay process="0" and "1" and count every request."""
    svc = service("--processes", "2", "--metrics-path", "/metrics").wait_ready()
    before = svc.children()
    sent = len([svc.get_pid() for _ in range(20)])
    svc.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while (svc.children() & before or len(svc.children()) != 2) and time.monotonic() < deadline:
        svc.get_pid()
        sent += 1
    after = svc.children()
    assert len(after) == 2 and not (after & before), (before, after)
    samples, scrapes, total = scrape_until(
        svc, sent, lambda samples: per_process(samples, "fastcore_process_restarts_total") == {"0": 1, "1": 1})
    restarts = per_process(samples, "fastcore_process_restarts_total")
    assert restarts == {"0": 1, "1": 1}, restarts
    assert set(per_process(samples, "fastcore_process_pid").values()) == after
    assert total == sent + scrapes, (total, sent, scrapes)

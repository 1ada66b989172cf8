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

    def get_pid(self, timeout=5.0):
        with connect(self.port, timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data
        return int(data.split(b"\r\n\r\n", 1)[1])

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

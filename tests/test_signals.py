"""serve_forever and signals, driven as a user would: a server in a subprocess."""
import os
import signal
import subprocess
import sys
import textwrap
import time

from conftest import connect, child_env

SCRIPT = textwrap.dedent(r"""
    import sys, time
    import fastcore

    def handler(request):
        if request.path == "/slow":
            print("entered", flush=True)                 # the parent waits for this line
            time.sleep(float(sys.argv[1]))
        return b"done"

    server = fastcore.Server(handler, port=0, shutdown_timeout=float(sys.argv[2]))
    server.serve_forever(on_ready=lambda s: print(s.port, flush=True))
    print("stopped", flush=True)
""")


def start_child(sleep, shutdown_timeout):
    env = child_env()
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(sleep), str(shutdown_timeout)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    port = int(child.stdout.readline())
    return child, port


def test_sigterm_lets_the_in_flight_request_finish_and_refuses_new_connections():
    child, port = start_child(sleep=1.0, shutdown_timeout=10)
    try:
        sock = connect(port, timeout=10)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert child.stdout.readline().strip() == "entered"   # the request is now inside the handler
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        data = b""
        while b"done" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in data
        try:
            connect(port, timeout=2).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        assert refused or child.poll() is not None      # not accepting once the stop began
        assert child.wait(10) == 0
        assert time.monotonic() - started < 5
        assert child.stdout.read().strip() == "stopped"
    finally:
        child.kill()
        child.wait()


def test_a_second_sigint_forces_the_stop():
    child, port = start_child(sleep=30.0, shutdown_timeout=60)
    try:
        sock = connect(port, timeout=10)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert child.stdout.readline().strip() == "entered"
        child.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert child.poll() is None                      # graceful: still waiting for the handler
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        assert child.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        child.kill()
        child.wait()


def test_serve_forever_on_a_non_main_thread_installs_no_signal_handler():
    import signal as signals
    import threading

    import fastcore
    before = {signum: signals.getsignal(signum) for signum in (signals.SIGINT, signals.SIGTERM)}
    server = fastcore.Server(lambda request: b"from a thread", port=0)
    ready = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"on_ready": lambda s: ready.set()})
    thread.start()
    try:
        assert ready.wait(10)
        assert {signum: signals.getsignal(signum) for signum in before} == before
        with connect(server.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(4096).endswith(b"from a thread")
    finally:
        server.stop()
        thread.join(10)
    assert not thread.is_alive()

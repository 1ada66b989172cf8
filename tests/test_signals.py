"""serve_forever and signals, driven as a user would: a server in a subprocess."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

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


# -- SIGHUP with processes=1 -----------------------------------------------------------------------
# A single process has nothing to reload into, and the default action of SIGHUP (exit at once, no
# drain) would take the service down whenever a manager asks for a reload (systemd ExecReload): it
# is ignored with a line on fastcore.error. With processes > 1 the supervisor does a rolling restart
# instead (tests/test_supervisor.py).

HANGUP_SCRIPT = textwrap.dedent(r"""
    import logging, signal, sys, time
    import fastcore, fastcore.pure

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    if sys.argv[2] == "app-ignores":
        signal.signal(signal.SIGHUP, signal.SIG_IGN)     # the app's own choice is left alone

    def handler(request):
        if request.path == "/slow":
            print("entered", flush=True)
            time.sleep(0.5)
        return b"done " + request.path.encode()

    server_class = fastcore.pure.Server if sys.argv[1] == "pure" else fastcore.Server
    server = server_class(handler, port=0)
    server.serve_forever(on_ready=lambda s: print(s.port, flush=True))
    print("stopped", flush=True)
""")


def start_hangup_child(engine, mode="default"):
    child = subprocess.Popen([sys.executable, "-c", HANGUP_SCRIPT, engine, mode], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env(), text=True)
    return child, int(child.stdout.readline())


def get_on_new_connection(port, path):
    with connect(port, timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


@pytest.mark.parametrize("engine", ["compiled", "pure"])
def test_sighup_on_a_single_process_is_ignored_with_a_log_line(engine):
    child, port = start_hangup_child(engine)
    try:
        sock = connect(port, timeout=10)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert child.stdout.readline().strip() == "entered"      # a request is in flight
        child.send_signal(signal.SIGHUP)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"done /slow")
        child.send_signal(signal.SIGHUP)                         # again, while idle
        assert get_on_new_connection(port, b"/after").endswith(b"done /after")
        assert child.poll() is None                              # still serving
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=10)
        assert child.returncode == 0, err
        assert out.strip() == "stopped"
        assert err.count("SIGHUP ignored") == 2, err
    finally:
        child.kill()
        child.wait()


def test_sighup_disposition_chosen_by_the_app_is_kept():
    child, port = start_hangup_child("compiled", "app-ignores")
    try:
        child.send_signal(signal.SIGHUP)
        assert get_on_new_connection(port, b"/x").endswith(b"done /x")
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=10)
        assert child.returncode == 0 and "SIGHUP" not in err, err
    finally:
        child.kill()
        child.wait()

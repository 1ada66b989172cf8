"""Static routes are answered without the GIL.

A child process starts a server with a static route, then lets a pure-Python thread hold the GIL
essentially forever (switch interval 100 s, busy loop). If serving /health needed the GIL, no
request would be answered for up to 100 s; the test requires each answer within 1 s.
"""
import os
import select
import socket
import subprocess
import sys
import textwrap
import time

from conftest import PROJECT_ROOT, ResponseReader, child_env

CHILD_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import fastcore

    server = fastcore.Server(None, host="127.0.0.1", port=0, threads=2)
    server.add_static("/health", b"OK")
    server.start()
    print(server.port, flush=True)

    def hog_the_gil():
        print("busy", flush=True)
        x = 0
        while True:
            x += 1

    sys.setswitchinterval(100)
    threading.Thread(target=hog_the_gil, daemon=True).start()
    time.sleep(3600)     # with a 100 s switch interval the main thread may never run again: fine
""")


def read_line(stream, deadline):
    """One line from the child's stdout, or fail at the deadline (never blocks past it)."""
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"child printed {line!r} and then nothing"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = os.read(stream.fileno(), 1)
            assert chunk, f"child exited early after printing {line!r}"
            line += chunk
    return line.decode().strip()


def test_static_route_is_served_while_a_python_thread_holds_the_gil():
    env = child_env()
    child = subprocess.Popen([sys.executable, "-c", CHILD_SCRIPT], stdout=subprocess.PIPE, env=env,
                             cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 15
        port = int(read_line(child.stdout, deadline))
        assert read_line(child.stdout, deadline) == "busy"   # the GIL-hogging loop is running

        for i in range(20):
            began = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.settimeout(1)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
                response = ResponseReader(sock).read_response()
            elapsed = time.monotonic() - began
            assert response.status == 200, f"request {i}"
            assert response.body == b"OK", f"request {i}"
            assert elapsed < 1.0, f"request {i} took {elapsed:.2f} s"
        assert child.poll() is None, "the child died while serving"
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()

"""Static routes are answered without the GIL.

A child process starts a server with a static route, then lets a pure-Python thread hold the GIL
essentially forever (switch interval 100 s, busy loop). If serving /health needed the GIL, no
request would be answered for up to 100 s; the test requires each answer within 1 s. The same
holds for an ASGI server whose app itself hogs the GIL on its event loop: the I/O workers hand
requests to the loop through the bridge and never wait for it.
"""
import os
import select
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import PROJECT_ROOT, ResponseReader, child_env

HOG = """
    def hog_the_gil():
        print("busy", flush=True)
        sys.setswitchinterval(100)
        x = 0
        while True:
            x += 1
"""

CHILD_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import fastcore
""" + HOG + """
    server = fastcore.Server(None, host="127.0.0.1", port=0, threads=2)
    server.add_static("/health", b"OK")
    server.start()
    print(server.port, flush=True)
    threading.Thread(target=hog_the_gil, daemon=True).start()
    time.sleep(3600)     # with a 100 s switch interval the main thread may never run again: fine
""")

# The ASGI variant: the app's first request runs the hog on the event loop's thread itself.
ASGI_CHILD_SCRIPT = textwrap.dedent("""
    import sys, time
    import fastcore
""" + HOG + """
    async def app(scope, receive, send):
        hog_the_gil()

    server = fastcore.ASGIServer(app, host="127.0.0.1", port=0, threads=2, lifespan="off")
    server.add_static("/health", b"OK")
    server.start()
    print(server.port, flush=True)
    time.sleep(3600)
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


@pytest.mark.parametrize("script", [CHILD_SCRIPT, ASGI_CHILD_SCRIPT], ids=["native", "asgi"])
def test_static_route_is_served_while_a_python_thread_holds_the_gil(script):
    env = child_env()
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env,
                             cwd=PROJECT_ROOT)
    trigger = None
    try:
        deadline = time.monotonic() + 15
        port = int(read_line(child.stdout, deadline))
        if script is ASGI_CHILD_SCRIPT:             # the app's first request starts the hog
            trigger = socket.create_connection(("127.0.0.1", port), timeout=1)
            trigger.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
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
        if trigger is not None:
            trigger.close()
        child.kill()
        child.wait(10)
        child.stdout.close()

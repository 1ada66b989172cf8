"""The server survives its process starting subprocesses (fork/exec) while connections come and go.

Between fork and exec a child holds copies of every descriptor, the server's sockets included.
Closing a socket then does not take it out of the epoll set (epoll(7): registrations go away only
when every descriptor of the open file is closed), so the server must not rely on close() for
that. The scenario runs in a child interpreter so that a crash is reported as a failure instead
of killing the test run.
"""
import os
import subprocess
import sys
import textwrap

from conftest import PROJECT_ROOT, child_env

SCRIPT = textwrap.dedent(r"""
    import socket, subprocess, sys, threading, time
    import fastcore

    server = fastcore.Server(lambda request: b"py", host="127.0.0.1", port=0, threads=2)
    server.add_static("/health", b"OK")
    server.start()
    stop = threading.Event()

    def spawn_subprocesses():
        while not stop.is_set():
            subprocess.run(["true"])

    spawner = threading.Thread(target=spawn_subprocesses)
    spawner.start()
    requests = 0
    deadline = time.monotonic() + float(sys.argv[1])
    try:
        while time.monotonic() < deadline:
            # Alternate who closes: the client after a keep-alive response, or the server
            # after `Connection: close`.
            path = b"/health" if requests % 2 else b"/python"
            client_closes = requests % 4 < 2
            connection = b"" if client_closes else b"Connection: close\r\n"
            expected = b"OK" if path == b"/health" else b"py"
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n" + connection + b"\r\n")
                data = b""
                while not data.endswith(b"\r\n\r\n" + expected):
                    chunk = sock.recv(65536)
                    assert chunk, data[:200]
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200 "), data[:100]
            requests += 1
    finally:
        stop.set()
        spawner.join(10)
        server.stop()
    print("served", requests, flush=True)
""")


def test_server_survives_the_process_spawning_subprocesses_while_connections_close():
    env = child_env()
    completed = subprocess.run([sys.executable, "-c", SCRIPT, "2.0"], env=env, cwd=PROJECT_ROOT,
                               capture_output=True, timeout=40)
    stderr = completed.stderr.decode(errors="replace")
    assert completed.returncode == 0, (
        f"child exited with {completed.returncode} (negative: killed by that signal); stderr tail:\n"
        + stderr[-3000:])
    assert completed.stdout.startswith(b"served "), completed.stdout
    assert int(completed.stdout.split()[1]) > 0

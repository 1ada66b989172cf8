"""Sockets from the system: unix domain sockets, inherited listening fds, systemd socket
activation, IPv6 and dual-stack. Each is driven as a user would (curl, a subprocess)."""
import http.client
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import ResponseReader, connect, child_env

CHILD = textwrap.dedent(r"""
    import os, sys
    if sys.argv[1] == "systemd":
        os.environ["LISTEN_PID"] = str(os.getpid())        # as systemd sets it for this process
        os.environ["LISTEN_FDS"] = "1"
    import fastcore
    server = fastcore.Server(lambda request: b"from child " + request.path.encode(),
                             **eval(sys.argv[2]))
    server.serve_forever(on_ready=lambda s: print(s.url, flush=True))
""")




def get_over(sock):
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
    return ResponseReader(sock).read_response()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_unix_socket_is_served_to_curl_with_its_permissions_and_removed_at_stop(server, tmp_path):
    path = str(tmp_path / "app.sock")
    srv = server(lambda request: b"over unix " + request.remote_addr.encode(), uds=path, uds_mode=0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert srv.url == f"unix:{path}"
    out = subprocess.run(["curl", "-sS", "--unix-socket", path, "http://localhost/x"],
                         capture_output=True, timeout=10)
    assert out.stdout == b"over unix "
    srv.stop()
    assert not os.path.exists(path)


def test_a_stale_unix_socket_file_is_replaced(server, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()                                       # the file stays behind, as after a crash
    server(lambda request: b"fresh", uds=path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        assert get_over(sock).body == b"fresh"


def test_inherited_listening_fd_is_served():
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    fd = listening.fileno()
    child = subprocess.Popen([sys.executable, "-c", CHILD, "fd", repr({"fd": fd})], pass_fds=[fd],
                             stdout=subprocess.PIPE, env=child_env(), text=True)
    try:
        assert child.stdout.readline().strip() == f"http://127.0.0.1:{port}/"
        listening.close()                               # the child's copy serves on its own
        with connect(port) as sock:
            assert get_over(sock).body == b"from child /ping"
    finally:
        child.terminate()
        assert child.wait(10) == 0


def test_systemd_socket_activation_is_detected():
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    # systemd hands the socket over as fd 3; host/port given here must then be ignored.
    child = subprocess.Popen([sys.executable, "-c", CHILD, "systemd", repr({"port": 1})],
                             stdout=subprocess.PIPE, env=child_env(), text=True,
                             pass_fds=[3],
                             preexec_fn=None if listening.fileno() == 3 else (lambda: os.dup2(listening.fileno(), 3)))
    try:
        assert child.stdout.readline().strip() == f"http://127.0.0.1:{port}/"
        listening.close()
        with connect(port) as sock:
            assert get_over(sock).body == b"from child /ping"
    finally:
        child.terminate()
        assert child.wait(10) == 0


def test_a_non_listening_fd_is_refused_with_a_clear_error(tmp_path):
    import fastcore
    with open(tmp_path / "file", "w") as handle:
        with pytest.raises(OSError, match="not a socket|not a listening"):
            fastcore.Server(lambda request: b"", fd=handle.fileno()).start()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_and_dual_stack(server):
    srv = server(lambda request: request.remote_addr.encode(), host="::")
    assert srv.url.startswith("http://[::]:")
    with socket.create_connection(("::1", srv.port), timeout=5) as sock:
        assert get_over(sock).body == b"::1"
    if socket.has_dualstack_ipv6():
        with connect(srv.port) as sock:                  # IPv4 on the same socket
            assert get_over(sock).body == b"::ffff:127.0.0.1"


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_bracketed_ipv6_host_in_the_api(server):
    srv = server(lambda request: request.remote_addr.encode(), host="[::1]")
    assert srv.config.host == "::1" and srv.url.startswith("http://[::1]:")
    conn = http.client.HTTPConnection("::1", srv.port, timeout=5)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"::1"
    finally:
        conn.close()

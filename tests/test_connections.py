"""Connection management: keep-alive, pipelining, Connection: close, HTTP/1.0."""
import http.client
import json
import os
import socket
import time

import fastcore
from conftest import ResponseReader, assert_standard_fields, connect, echo_handler


def path_handler(request):
    """The body is the request's path (and query), so every response can be checked."""
    target = request.path + ("?" + request.query_string if request.query_string else "")
    return fastcore.Response(target.encode("latin-1"), content_type="text/plain")


def test_keep_alive_reuses_one_http_client_connection(server):
    srv = server(path_handler)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        local_ports = set()
        sockets = set()
        for i in range(10):
            conn.request("GET", f"/keep/{i}")
            response = conn.getresponse()
            assert response.status == 200
            assert response.read() == f"/keep/{i}".encode()
            assert (response.getheader("Connection") or "").lower() != "close"
            assert conn.sock is not None, "the server closed a keep-alive connection"
            sockets.add(id(conn.sock))
            local_ports.add(conn.sock.getsockname()[1])
        assert len(sockets) == 1
        assert len(local_ports) == 1
    finally:
        conn.close()


def test_keep_alive_sequential_requests_on_raw_socket(server):
    srv = server(path_handler, static={"/health": b"OK"})
    with connect(srv.port) as sock:
        reader = ResponseReader(sock)
        for i in range(20):
            if i % 3 == 0:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
                expected = b"OK"
            else:
                body = b"x" * i
                sock.sendall(f"POST /seq/{i} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                             + body)
                expected = f"/seq/{i}".encode()
            response = reader.read_response()
            assert response.status == 200
            assert response.body == expected
            assert response.headers.get("connection", "").lower() != "close"


def test_sixteen_pipelined_requests_answered_in_order(server):
    srv = server(path_handler)
    paths = [f"/pipelined/{i}?n={i}" for i in range(16)]
    data = b"".join(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for path in paths)
    with connect(srv.port) as sock:
        sock.sendall(data)                   # one send: all 16 requests arrive together
        reader = ResponseReader(sock)
        bodies = [reader.read_response().body for _ in paths]
    assert bodies == [path.encode() for path in paths]


def test_pipelined_static_and_python_routes_keep_order(server):
    srv = server(path_handler, static={"/health": b"OK"})
    paths = ["/health" if i % 2 else f"/py/{i}" for i in range(16)]
    data = b"".join(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for path in paths)
    with connect(srv.port) as sock:
        sock.sendall(data)
        reader = ResponseReader(sock)
        bodies = [reader.read_response().body for _ in paths]
    assert bodies == [b"OK" if path == "/health" else path.encode() for path in paths]


def test_pipelined_requests_with_bodies_answered_in_order(server):
    def handler(request):
        return request.method.encode() + b" " + request.path.encode() + b" " + request.body

    srv = server(handler)
    requests = []
    expected = []
    for i in range(16):
        body = f"body-{i}-".encode() * i
        requests.append(f"POST /b{i} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        expected.append(f"POST /b{i} ".encode() + body)
    with connect(srv.port) as sock:
        sock.sendall(b"".join(requests))
        reader = ResponseReader(sock)
        bodies = [reader.read_response().body for _ in requests]
    assert bodies == expected


def test_request_split_across_many_sends_is_assembled(server):
    srv = server(echo_handler)
    data = b"POST /split?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
    with connect(srv.port) as sock:
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
        response = ResponseReader(sock).read_response()
    described = json.loads(response.body)
    assert (described["path"], described["query_string"], described["body"]) == ("/split", "q=1", "hello world")


def test_connection_close_is_honoured(server):
    srv = server(path_handler)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /bye HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        reader = ResponseReader(sock)
        response = reader.read_response()
        assert response.status == 200
        assert response.body == b"/bye"
        assert response.headers["connection"].lower() == "close"
        assert_standard_fields(response)
        assert sock.recv(100) == b""         # the server closed after the response


def test_connection_close_on_static_route_is_honoured(server):
    srv = server(None, static={"/health": b"OK"})
    with connect(srv.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        response = ResponseReader(sock).read_response()
        assert response.body == b"OK"
        assert response.headers["connection"].lower() == "close"
        assert sock.recv(100) == b""


def test_pipelined_requests_after_connection_close_are_not_answered(server):
    srv = server(path_handler)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                     b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.read_response().body == b"/first"
        assert reader.closed_by_peer()


def test_response_connection_close_from_handler_closes(server):
    srv = server(lambda request: fastcore.Response(b"closing", headers={"Connection": "close"}))
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        reader = ResponseReader(sock)
        response = reader.read_response()
        assert response.body == b"closing"
        assert response.getall("connection") == ["close"]
        assert reader.closed_by_peer()


def test_http_1_0_request_is_closed_after_response(server):
    srv = server(path_handler)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        reader = ResponseReader(sock)
        response = reader.read_response()
        assert response.status == 200
        assert response.body == b"/old"
        assert response.headers.get("connection", "close").lower() == "close"
        assert_standard_fields(response)
        assert sock.recv(100) == b""


def test_http_1_0_with_keep_alive_stays_open(server):
    srv = server(echo_handler)
    with connect(srv.port) as sock:
        reader = ResponseReader(sock)
        for i in range(3):
            sock.sendall(f"GET /old/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            response = reader.read_response()
            assert response.status == 200
            assert response.headers.get("connection", "").lower() != "close"
            described = json.loads(response.body)
            assert described["path"] == f"/old/{i}"
            assert described["http_version"] == "1.0"
            assert described["keep_alive"] is True
        # The last one without keep-alive: answered, then closed.
        sock.sendall(b"GET /old/last HTTP/1.0\r\n\r\n")
        assert json.loads(reader.read_response().body)["path"] == "/old/last"
        assert reader.closed_by_peer()


def test_http_1_0_keep_alive_on_static_route_stays_open(server):
    srv = server(None, static={"/health": b"OK"})
    with connect(srv.port) as sock:
        reader = ResponseReader(sock)
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = reader.read_response()
            assert response.body == b"OK"
            assert response.headers.get("connection", "").lower() != "close"


def test_connection_header_is_case_insensitive(server):
    srv = server(path_handler)
    with connect(srv.port) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\nconnection: CLOSE\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.read_response().body == b"/x"
        assert reader.closed_by_peer()


def server_side_socket(client):
    """The server's end of `client`'s connection: the servers under test run in this process, so
    it is one of our own descriptors (a dup of it is returned, to be closed by the caller)."""
    wanted = client.getsockname()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            candidate = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if candidate.family == socket.AF_INET and candidate.getpeername() == wanted:
                return candidate
        except OSError:
            pass
        candidate.close()
    raise AssertionError("no server-side socket for this connection")


def test_accepted_connections_have_tcp_nodelay(server):
    """Streamed body parts must not wait for Nagle. The compiled core sets TCP_NODELAY on the
    listening socket and relies on Linux copying it to accepted sockets (checked on the first);
    every connection, first or later, must have it."""
    srv = server(lambda request: b"ok")
    for _ in range(3):
        with connect(srv.port) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert ResponseReader(client).read_response().body == b"ok"
            accepted = server_side_socket(client)
            try:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            finally:
                accepted.close()


def test_a_request_sent_with_the_connect_is_answered(server):
    """The compiled worker reads a new connection at once, before it enters any epoll set: the
    request that came with the connect is answered (static and Python routes, keep-alive and
    close), and a keep-alive connection then serves its next request."""
    srv = server(path_handler, static={"/health": b"OK"})
    for path, expected in (("/health", b"OK"), ("/python", b"/python")):
        for close in (False, True):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.settimeout(5)
            client.connect(("127.0.0.1", srv.port))
            with client:
                head = f"GET {path} HTTP/1.1\r\nHost: h\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
                client.sendall(head.encode())
                reader = ResponseReader(client)
                assert reader.read_response().body == expected
                if close:
                    assert reader.closed_by_peer()
                else:
                    client.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
                    assert reader.read_response().body == expected


def test_a_client_that_connects_and_sends_later_is_answered_when_it_sends(server):
    """A deferred accept (TCP_DEFER_ACCEPT) hands the connection over when its first bytes come:
    a client that connects, waits, then sends is answered at once, not a retransmission later;
    and one that sends its head in two parts is answered when the rest comes."""
    srv = server(path_handler)
    with connect(srv.port) as client:
        time.sleep(0.3)                                 # the client's own delay, part of the scenario
        started = time.monotonic()
        client.sendall(b"GET /late HTTP/1.1\r\nHost: h\r\n")
        time.sleep(0.1)
        client.sendall(b"\r\n")
        assert ResponseReader(client).read_response().body == b"/late"
        assert time.monotonic() - started < 0.9         # a SYN-ACK retransmission would be >= 1 s


def test_tcp_listening_socket_defers_accept(server):
    srv = server(path_handler)
    if not hasattr(socket, "TCP_DEFER_ACCEPT"):
        return
    assert srv._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0

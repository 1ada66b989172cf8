"""Trusted proxy headers (forwarded_allow_ips, fastcore/proxy.py).

The rules first, on fastcore.proxy alone; then over real sockets on both engines what a native
handler, a WSGI app, an ASGI app and the access log see, from a trusted peer (127.0.0.1 is trusted
by default) and from an untrusted one (a server whose list leaves 127.0.0.1 out plays the
untrusted peer: its spoofed headers must change nothing); a unix socket's peer; and nginx in front
(over TCP and a unix socket) when nginx is installed, with a client that connects to nginx from
127.0.0.2 and spoofs X-Forwarded-For.
"""
import json
import logging
import os
import shutil
import socket
import tempfile
import time

import pytest

from fastcore import Response, ServerConfig
from fastcore.errors import ConfigError
from fastcore.proxy import Proxied, TrustedProxies, header_values, parse_forwarded, resolve, trusted_proxies

from conftest import LogCollector, get

LOOPBACK = TrustedProxies("127.0.0.1,::1")


# -- the rules --------------------------------------------------------------------------------------

def test_the_list_takes_addresses_networks_and_star():
    trusted = TrustedProxies(" 10.0.0.0/8, 192.0.2.1 ,[::1], 2001:db8::/32")
    assert "10.1.2.3" in trusted and "192.0.2.1" in trusted and "::1" in trusted
    assert "2001:db8::5" in trusted and "192.0.2.2" not in trusted and "11.0.0.1" not in trusted
    assert "::ffff:10.0.0.9" in trusted                 # an IPv4 peer seen on a dual-stack socket
    assert "" in trusted                                # a unix socket's peer
    assert "unknown" not in trusted and "fe80::1%eth0" not in trusted
    assert "203.0.113.9" in TrustedProxies("*")
    assert trusted_proxies("") is None and trusted_proxies(" , ") is None
    assert trusted_proxies("*") is not None


def test_a_list_with_something_else_is_refused():
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        ServerConfig(forwarded_allow_ips="127.0.0.1,localhost")
    with pytest.raises(ConfigError):
        ServerConfig(forwarded_allow_ips="10.0.0.0/33")
    assert ServerConfig().forwarded_allow_ips == "127.0.0.1,::1"


def test_the_command_line_option():
    from fastcore.cli import resolve as cli_resolve
    _, config = cli_resolve(["--forwarded-allow-ips", "10.0.0.0/8,*"], environ={})
    assert config.forwarded_allow_ips == "10.0.0.0/8,*"


def test_x_forwarded_for_is_walked_from_the_right_past_trusted_proxies():
    trusted = TrustedProxies("127.0.0.1,10.0.0.0/8")
    assert resolve(trusted, "127.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.2", None, None, None) == \
        Proxied("203.0.113.7", 0, None, None)
    assert resolve(trusted, "127.0.0.1", "10.0.0.5,10.0.0.2", None, None, None).client_host == "10.0.0.5"
    assert resolve(trusted, "127.0.0.1", "unknown, 10.0.0.2", None, None, None).client_host == "unknown"
    assert resolve(trusted, "127.0.0.1", "[2001:db8::1]:4711", None, None, None) == \
        Proxied("2001:db8::1", 4711, None, None)
    assert resolve(trusted, "127.0.0.1", "198.51.100.1:8080", None, None, None) == \
        Proxied("198.51.100.1", 8080, None, None)
    assert resolve(TrustedProxies("*"), "192.0.2.9", "1.1.1.1, 2.2.2.2", None, None, None).client_host == "1.1.1.1"


def test_an_untrusted_peer_changes_nothing():
    assert resolve(LOOPBACK, "192.0.2.1", "6.6.6.6", "https", "evil.test", None) is None
    assert resolve(LOOPBACK, "192.0.2.1", None, None, None, "for=6.6.6.6;proto=https") is None


def test_proto_and_host_take_the_nearest_proxys_value_and_must_be_sane():
    assert resolve(LOOPBACK, "127.0.0.1", None, "http, HTTPS", "a.test, b.test:8443", None) == \
        Proxied(None, None, "https", "b.test:8443")
    assert resolve(LOOPBACK, "127.0.0.1", None, "gopher", "bad host/x", None) is None
    assert resolve(LOOPBACK, "127.0.0.1", None, None, "[2001:db8::1]:8443", None).host == "[2001:db8::1]:8443"


def test_rfc7239_forwarded():
    assert parse_forwarded('for="[2001:db8:cafe::17]:4711";proto=https;Host="a.test", for=10.0.0.1') == \
        [{"for": "[2001:db8:cafe::17]:4711", "proto": "https", "host": "a.test"}, {"for": "10.0.0.1"}]
    trusted = TrustedProxies("127.0.0.1,10.0.0.0/8")
    value = 'for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";proto=https;host=a.test, for=10.0.0.1'
    assert resolve(trusted, "127.0.0.1", None, None, None, value) == \
        Proxied("2001:db8:cafe::17", 4711, "https", "a.test")
    assert resolve(trusted, "127.0.0.1", None, None, None, 'for=_hidden;proto=https').client_host == "_hidden"
    assert resolve(trusted, "127.0.0.1", None, None, None, 'for="a\\"b;c";proto=https') == \
        Proxied('a"b;c', 0, "https", None)


def test_the_x_forwarded_family_wins_over_forwarded_never_a_mix():
    # A proxy that sets X-Forwarded-For passes a client's Forwarded through: it must not count.
    assert resolve(LOOPBACK, "127.0.0.1", "203.0.113.7", None, None, "for=6.6.6.6;proto=https;host=evil.test") == \
        Proxied("203.0.113.7", 0, None, None)


def test_the_pure_engines_header_scan():
    head = (b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n"
            b"FORWARDED: for=3.3.3.3\r\nX-Forwarded-Proto:  https \r\n\r\n")
    assert header_values(head) == ("1.1.1.1,2.2.2.2", "https", None, "for=3.3.3.3")
    assert header_values(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded: x\r\n\r\n") is None
    assert header_values(b"GET /forwarded HTTP/1.1\r\nHost: a\r\n\r\n") is None


# -- over sockets, both engines -----------------------------------------------------------------------

def view_handler(request):
    return Response(json.dumps({"remote_addr": request.remote_addr, "remote_port": request.remote_port,
                                "scheme": request.scheme, "host": request.host}),
                    content_type="application/json")


def fetch(port, headers):
    status, _, body = get(port, "/", headers=headers)
    assert status == 200
    return json.loads(body)


SPOOF = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test"}


def test_native_handler_behind_a_trusted_peer(server):
    srv = server(view_handler)
    seen = fetch(srv.port, {"Host": "inner:8000", "X-Forwarded-For": "203.0.113.7, 127.0.0.1",
                            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.test"})
    assert seen == {"remote_addr": "203.0.113.7", "remote_port": 0, "scheme": "https", "host": "www.example.test"}
    seen = fetch(srv.port, {"Forwarded": 'for="[2001:db8::17]:4711";proto=https;host=b.test'})
    assert seen == {"remote_addr": "2001:db8::17", "remote_port": 4711, "scheme": "https", "host": "b.test"}
    plain = fetch(srv.port, {"Host": "inner:8000"})
    assert plain["remote_addr"] == "127.0.0.1" and plain["remote_port"] > 0
    assert plain["scheme"] == "http" and plain["host"] == "inner:8000"


def test_native_handler_ignores_spoofed_headers_from_an_untrusted_peer(server):
    srv = server(view_handler, forwarded_allow_ips="10.0.0.0/8")       # 127.0.0.1 is not trusted
    for headers in (SPOOF, {"Forwarded": "for=6.6.6.6;proto=https;host=evil.test"}):
        seen = fetch(srv.port, {"Host": "inner:8000", **headers})
        assert seen["remote_addr"] == "127.0.0.1" and seen["remote_port"] > 0
        assert seen["scheme"] == "http" and seen["host"] == "inner:8000"
    off = server(view_handler, forwarded_allow_ips="")
    assert fetch(off.port, {"Host": "inner", **SPOOF})["remote_addr"] == "127.0.0.1"


def test_a_unix_socket_peer_is_trusted_unless_the_list_is_empty(server):
    directory = tempfile.mkdtemp(prefix="fastcore-proxy-")
    try:
        for allow, expected in (("127.0.0.1", "203.0.113.7"), ("", "")):
            path = os.path.join(directory, f"s{len(allow)}.sock")
            server(view_handler, uds=path, forwarded_allow_ips=allow)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(path)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n"
                             b"Connection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            assert json.loads(data.partition(b"\r\n\r\n")[2])["remote_addr"] == expected
    finally:
        shutil.rmtree(directory)


def environ_view(environ, start_response):
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT")
    body = json.dumps({key: environ.get(key) for key in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def test_wsgi_environ_behind_a_trusted_peer(wsgi_server):
    srv = wsgi_server(environ_view)
    seen = fetch(srv.port, {"Host": "inner:8000", "X-Forwarded-For": "203.0.113.7",
                            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.test"})
    assert seen == {"REMOTE_ADDR": "203.0.113.7", "REMOTE_PORT": "0", "wsgi.url_scheme": "https",
                    "HTTP_HOST": "www.example.test", "SERVER_NAME": "www.example.test", "SERVER_PORT": "443"}
    seen = fetch(srv.port, {"Host": "inner:8000", "Forwarded": "for=198.51.100.4;host=c.test:8080"})
    assert seen["REMOTE_ADDR"] == "198.51.100.4" and seen["wsgi.url_scheme"] == "http"
    assert (seen["HTTP_HOST"], seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("c.test:8080", "c.test", "8080")


def test_wsgi_environ_ignores_spoofed_headers_from_an_untrusted_peer(wsgi_server):
    srv = wsgi_server(environ_view, forwarded_allow_ips="192.0.2.0/24")
    seen = fetch(srv.port, {"Host": "inner:8000", **SPOOF})
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and seen["REMOTE_PORT"] != "0"
    assert seen["wsgi.url_scheme"] == "http" and seen["HTTP_HOST"] == "inner:8000"
    assert seen["SERVER_NAME"] == "127.0.0.1" and seen["SERVER_PORT"] == str(srv.port)


@pytest.fixture
def access_lines():
    logger = logging.getLogger("fastcore.access")
    collector = LogCollector()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(collector)
    logger.setLevel(logging.INFO)
    yield collector
    logger.removeHandler(collector)
    logger.setLevel(level)
    logger.propagate = propagate


def test_the_access_log_names_the_client(server, wsgi_server, access_lines):
    native = server(view_handler, access_log=True)
    wsgi = wsgi_server(environ_view, access_log=True)
    untrusted = server(view_handler, access_log=True, forwarded_allow_ips="10.0.0.0/8")
    for srv in (native, wsgi, untrusted):
        access_lines.records.clear()
        fetch(srv.port, {"Host": "x", "X-Forwarded-For": "203.0.113.7"})
        deadline = time.monotonic() + 5
        while not access_lines.records and time.monotonic() < deadline:
            access_lines.arrived.wait(0.1)
        line = access_lines.records[0].getMessage()
        expected = "127.0.0.1" if srv is untrusted else "203.0.113.7"
        assert line.startswith(expected + " - - ["), line


async def scope_view(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    body = json.dumps({"client": scope["client"], "scheme": scope["scheme"],
                       "host": headers.get(b"host", b"").decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def test_asgi_scope_behind_a_trusted_peer_and_an_untrusted_one(asgi_server):
    trusting = asgi_server(scope_view, lifespan="off")
    seen = fetch(trusting.port, {"Host": "inner:8000", "X-Forwarded-For": "203.0.113.7",
                                 "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.test"})
    assert seen == {"client": ["203.0.113.7", 0], "scheme": "https", "host": "www.example.test"}
    seen = fetch(trusting.port, {"Forwarded": 'for="[2001:db8::17]:4711";proto=https'})
    assert seen["client"] == ["2001:db8::17", 4711] and seen["scheme"] == "https"
    untrusting = asgi_server(scope_view, lifespan="off", forwarded_allow_ips="10.0.0.0/8")
    seen = fetch(untrusting.port, {"Host": "inner:8000", **SPOOF})
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] > 0
    assert seen["scheme"] == "http" and seen["host"] == "inner:8000"


# -- nginx in front ----------------------------------------------------------------------------------

def request_from(source, port, headers):
    """A GET to 127.0.0.1:port from the address `source` (127.0.0.2: an untrusted client)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"GET / HTTP/1.1\r\n{lines}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


def test_behind_nginx_over_tcp_and_a_unix_socket(server, nginx):
    tcp = server(view_handler)                                      # trusts 127.0.0.1: nginx
    directory = tempfile.mkdtemp(prefix="fastcore-proxy-")
    try:
        path = os.path.join(directory, "app.sock")
        unix = server(view_handler, uds=path, uds_mode=0o666)      # a unix peer is trusted
        for upstream in (f"127.0.0.1:{tcp.port}", f"unix:{path}"):
            port = nginx(upstream)
            seen = request_from("127.0.0.2", port, {"Host": "www.example.test", **SPOOF})
            # nginx appended 127.0.0.2 to the spoofed 6.6.6.6: the walk stops at 127.0.0.2, which
            # no one trusts. Scheme and host are nginx's: it overwrote the client's.
            assert seen == {"remote_addr": "127.0.0.2", "remote_port": 0, "scheme": "https",
                            "host": "www.example.test"}, upstream
            plain = request_from("127.0.0.2", port, {"Host": "www.example.test"})
            assert plain == {"remote_addr": "127.0.0.2", "remote_port": 0, "scheme": "https",
                             "host": "www.example.test"}
    finally:
        shutil.rmtree(directory, ignore_errors=True)

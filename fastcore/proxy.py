"""Trusted proxy headers: the client, scheme and host of a request that came through a proxy.

Behind nginx or a load balancer the socket's peer is the proxy, and the request's scheme is the
one between the proxy and us. The proxy says what it saw in headers, which anyone can also send:
they are believed only from a peer listed in `forwarded_allow_ips` (ServerConfig), as uvicorn and
gunicorn do.

Theory of operation. TrustedProxies(spec) parses the list once: IP addresses and CIDR networks,
comma-separated; "*" trusts every peer; "" none (proxy headers are then never read). A peer on a
unix socket, which has no address (its host is ""), is trusted whenever the list is not empty:
only processes on this machine reach that socket (gunicorn's rule). An IPv4 address mapped into
IPv6 (::ffff:127.0.0.1, a dual-stack socket's view of an IPv4 peer) is checked as the IPv4 one.

Per request, the engines first look for the headers without building anything in Python (the
compiled one in C, pyext/python.pxi proxy_header_values; the pure one with header_values() below)
and call resolve() only when one is there, so a request without them pays nothing here. resolve()
returns None when the peer is not trusted or the headers say nothing usable, else a Proxied whose
fields are None where the socket's own view stays.

Which headers: X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host when any of the three is
present, else RFC 7239 Forwarded (for=, proto=, host=). Never a mix: a proxy that sets one family
passes the other through from the client untouched, so reading both would let a client fill in
what the proxy left out.

The client: each proxy appends the address it received the request from, so the right-most
entries are written by the proxies nearest to us. The walk goes from the right, skipping entries
that are trusted proxies; the first untrusted one is the client (what stands left of it was written
by that client, or by proxies nobody vouches for). When every entry is trusted, the left-most is
the client. An entry that is not an IP address ("unknown", RFC 7239's obfuscated "_node") ends
the walk and is the client as written, as uvicorn does. A port written with the address
("[2001:db8::1]:4711", "192.0.2.1:4711") is the client's port, else it is 0 (the socket's port is
the proxy's).

The scheme and host: Forwarded's proto= and host= of the element the walk chose (they describe
the request as that hop received it, which is the client's request); X-Forwarded-Proto's and
X-Forwarded-Host's right-most value, the one the nearest proxy wrote. A scheme other than http or
https, or a host that is not a host[:port], is ignored.

A leaf module (it imports only fastcore.errors): the config validates the list with it and the
compiled core calls it.
"""
import ipaddress
import re
from typing import NamedTuple

from .errors import ConfigError

__all__ = ["Proxied", "TrustedProxies", "trusted_proxies", "resolve", "header_values", "apply_to_environ",
           "apply_to_scope", "PROXY_HEADERS"]

# The header names looked for, lower-case, in the order of resolve()'s arguments.
PROXY_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded")

_HOST = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
_SCHEMES = ("http", "https")
_MAX_CACHED_PEERS = 256


class Proxied(NamedTuple):
    """What trusted proxy headers say about a request; None: the socket's own view stands."""
    client_host: str | None
    client_port: int | None
    scheme: str | None
    host: str | None


class TrustedProxies:
    """The parsed forwarded_allow_ips: `peer in trusted` for a peer's host text ("" for a unix
    socket)."""

    __slots__ = ("spec", "trust_all", "_networks", "_known")

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.trust_all = False
        networks = []
        for entry in spec.split(","):
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.trust_all = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                raise ConfigError(f"forwarded_allow_ips: {entry!r} is not an IP address or a network "
                                  f"(e.g. 10.0.0.0/8), nor '*'") from None
        self._networks = tuple(networks)
        self._known: dict[str, bool] = {"": True}      # peer host -> trusted (bounded cache)

    def __bool__(self) -> bool:
        return self.trust_all or bool(self._networks)

    def __contains__(self, host: str) -> bool:
        if self.trust_all:
            return True
        known = self._known.get(host)
        if known is not None:
            return known
        address = _address(host)
        trusted = address is not None and any(address in network for network in self._networks
                                              if network.version == address.version)
        if len(self._known) < _MAX_CACHED_PEERS:
            self._known[host] = trusted
        return trusted

    def __repr__(self) -> str:
        return f"TrustedProxies({self.spec!r})"


def trusted_proxies(spec: str) -> TrustedProxies | None:
    """The matcher for a forwarded_allow_ips value, or None when it trusts nobody (so the engines
    skip proxy headers without looking)."""
    trusted = TrustedProxies(spec)
    return trusted if trusted else None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _split_host_port(text: str) -> tuple[str, int]:
    """An address as proxies write it: "192.0.2.1", "192.0.2.1:4711", "2001:db8::1",
    "[2001:db8::1]", "[2001:db8::1]:4711" -> (address, port or 0)."""
    if text.startswith("["):
        end = text.find("]")
        if end > 0:
            port = text[end + 2:] if text[end + 1:end + 2] == ":" else ""
            return text[1:end], int(port) if port.isdigit() and int(port) < 65536 else 0
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port) if port.isdigit() and int(port) < 65536 else 0
    return text, 0


def _choose(hops: list[str | None], trusted: TrustedProxies) -> int:
    """Index of the client among the hops (left to right, None for an unknown one): walking from
    the right, the first that is not a trusted proxy; the left-most when all are."""
    for index in range(len(hops) - 1, -1, -1):
        hop = hops[index]
        if hop is None:
            return index                            # an element without for=: a hop we know nothing of
        host = _split_host_port(hop)[0]
        if _address(host) is None or host not in trusted:
            return index                            # "unknown", "_hidden" or an untrusted address
    return 0


def _client(hop: str | None) -> tuple[str | None, int | None]:
    if not hop:
        return None, None
    host, port = _split_host_port(hop)
    address = _address(host)
    return (str(address) if address is not None and "%" not in host else host), port


def _scheme(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().strip('"').lower()
    return value if value in _SCHEMES else None


def _host(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if value and _HOST.match(value) else None


def _last(value: str | None) -> str | None:
    return value.rpartition(",")[2].strip() if value is not None else None


def _split_quoted(text: str, separator: str) -> list[str]:
    """Split at `separator` outside double quotes (a quoted-string may hold it)."""
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 Forwarded: its elements, left to right, each {lower-case parameter: value}."""
    elements = []
    for element in _split_quoted(value, ","):
        pairs = {}
        for pair in _split_quoted(element, ";"):
            name, equals, text = pair.partition("=")
            name = name.strip().lower()
            if equals and name and name not in pairs:
                pairs[name] = _unquote(text)
        if pairs:
            elements.append(pairs)
    return elements


def resolve(trusted: TrustedProxies, peer_host: str, forwarded_for: str | None, forwarded_proto: str | None,
            forwarded_host: str | None, forwarded: str | None) -> Proxied | None:
    """What the proxy headers (their values, repeated fields joined with ",", None when absent)
    say about a request from `peer_host` ("" for a unix socket): None when the peer is not
    trusted or they say nothing usable."""
    if peer_host not in trusted:
        return None
    if forwarded_for is not None or forwarded_proto is not None or forwarded_host is not None:
        client_host = client_port = None
        if forwarded_for is not None:
            hops: list[str | None] = [hop.strip() or None for hop in forwarded_for.split(",")]
            client_host, client_port = _client(hops[_choose(hops, trusted)])
        result = Proxied(client_host, client_port, _scheme(_last(forwarded_proto)), _host(_last(forwarded_host)))
    elif forwarded is not None:
        elements = parse_forwarded(forwarded)
        if not elements:
            return None
        chosen = elements[_choose([element.get("for") for element in elements], trusted)]
        client_host, client_port = _client(chosen.get("for"))
        result = Proxied(client_host, client_port, _scheme(chosen.get("proto")), _host(chosen.get("host")))
    else:
        return None
    if result.client_host is None and result.scheme is None and result.host is None:
        return None
    return result


def header_values(head: bytes) -> tuple[str | None, str | None, str | None, str | None] | None:
    """The pure engine's look at a request head (CRLF lines, as the parser checked them): the
    values of PROXY_HEADERS (str, repeated fields joined with ","), or None when it has none of
    them. The compiled engine's twin is proxy_header_values in pyext/python.pxi."""
    if b"forwarded" not in head.lower():
        return None
    values: list[str | None] = [None, None, None, None]
    found = False
    for line in head.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        try:
            index = PROXY_HEADERS.index(name.lower())
        except ValueError:
            continue
        text = value.strip(b" \t").decode("latin-1")
        previous = values[index]
        values[index] = text if previous is None else previous + "," + text
        found = True
    return (values[0], values[1], values[2], values[3]) if found else None


def _server_name_port(host: str, scheme: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT of a Host value; the port defaults to the scheme's."""
    if host.startswith("["):
        end = host.find("]")
        name, port = host[:end + 1], host[end + 2:] if host[end + 1:end + 2] == ":" else ""
    else:
        name, _, port = host.partition(":")
    return name, port or ("443" if scheme == "https" else "80")


def apply_to_environ(environ: dict, proxied: Proxied) -> None:
    """A WSGI environ as the client's request: REMOTE_ADDR and REMOTE_PORT, wsgi.url_scheme, and
    HTTP_HOST with SERVER_NAME and SERVER_PORT (PEP 3333's URL reconstruction reads them)."""
    if proxied.client_host is not None:
        environ["REMOTE_ADDR"] = proxied.client_host
        environ["REMOTE_PORT"] = str(proxied.client_port or 0)
    if proxied.scheme is not None:
        environ["wsgi.url_scheme"] = proxied.scheme
    if proxied.host is not None:
        environ["HTTP_HOST"] = proxied.host
        environ["SERVER_NAME"], environ["SERVER_PORT"] = _server_name_port(
            proxied.host, environ.get("wsgi.url_scheme", "http"))


def apply_to_scope(scope: dict, proxied: Proxied) -> None:
    """An ASGI http scope as the client's request: client, scheme, and the host header."""
    if proxied.client_host is not None:
        scope["client"] = (proxied.client_host, proxied.client_port or 0)
    if proxied.scheme is not None:
        scope["scheme"] = proxied.scheme
    if proxied.host is not None:
        host = proxied.host.encode("latin-1")
        headers = scope["headers"]
        for index, (name, _) in enumerate(headers):
            if name == b"host":
                headers[index] = (b"host", host)
                break
        else:
            headers.append((b"host", host))

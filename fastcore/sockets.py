"""Listening sockets: where the server's connections come from.

open_listening_socket(config) gives the non-blocking listening socket the core accepts on, from
the first of these that applies:

1. systemd socket activation: LISTEN_PID is this process and LISTEN_FDS >= 1; the socket is fd 3
   (SD_LISTEN_FDS_START). The variables are then removed, so child processes do not claim it.
2. an inherited listening fd (`fd=N`, `--fd N`): e.g. from a supervisor or `systemd-socket-proxyd`.
3. a unix domain socket (`uds=PATH`, `--uds PATH`), created with `uds_mode` permissions; a stale
   socket file left by an earlier run is replaced, anything else at PATH is an error.
4. TCP on host:port: IPv4, IPv6 (a host with ':'), or both for "::" where the system allows
   dual-stack sockets; `reuse_port` sets SO_REUSEPORT.

A TCP socket we create gets TCP_DEFER_ACCEPT (Linux; nginx's `listen ... deferred`): the kernel
hands a connection to accept() only once its first bytes have arrived, so the worker's first
read finds the request and a connection answered at once never enters an epoll set. A client
that connects and sends later is accepted when it sends; one that sends nothing is accepted
after about DEFER_ACCEPT_SECONDS anyway (the kernel's SYN-ACK retransmission), and its
header_timeout runs from then. A socket someone else made (systemd, --fd) is left as it is.

The core needs nothing but a listening stream socket; what kind it is only matters here and for
describing it. A leaf module next to config.
"""
import errno
import os
import socket
import stat

SD_LISTEN_FDS_START = 3
DEFER_ACCEPT_SECONDS = 1          # the shortest: one SYN-ACK retransmission (as nginx's `deferred`)

# Unix socket files this process created (and so removes on close). An adopted socket (systemd,
# --fd) or one inherited by a forked child belongs to someone else: its file stays.
_created_unix_paths = set()
os.register_at_fork(after_in_child=_created_unix_paths.clear)


def systemd_listen_fd():
    """The activated socket's fd if systemd passed one to this process, else None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    if count < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return SD_LISTEN_FDS_START


def _adopt(fd, origin):
    """Wrap an fd we were given; it must be a listening stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as error:
        raise OSError(error.errno, f"{origin} fd {fd} is not a socket: {error.strerror}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise OSError(errno.EINVAL, f"{origin} fd {fd} is not a listening stream socket")
    sock.set_inheritable(False)
    return sock


def _unix_socket(path, mode, backlog):
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)                                 # left by an earlier run
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    _created_unix_paths.add(path)
    return sock


def _tcp_socket(host, port, backlog, reuse_port):
    if host in ("::", "") and socket.has_dualstack_ipv6():
        return socket.create_server(("::", port), family=socket.AF_INET6, backlog=backlog,
                                    reuse_port=reuse_port, dualstack_ipv6=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Resolved here, not inside create_server(): a name that does not resolve then raises the
    # resolver's socket.gaierror as it is ("Name or service not known"), which the command line
    # prints; create_server() would re-raise it as an OSError whose message is wrapped and whose
    # negative EAI_* errno os.strerror() cannot name.
    address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0][4]
    return socket.create_server(address, family=family, backlog=backlog, reuse_port=reuse_port)


def _defer_accept(sock):
    """TCP_DEFER_ACCEPT where the system has it (see the top of this module)."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, DEFER_ACCEPT_SECONDS)
        except OSError:
            pass
    return sock


def open_listening_socket(config):
    activated = systemd_listen_fd()
    if activated is not None:
        sock = _adopt(activated, "systemd-activated")
    elif config.fd >= 0:
        sock = _adopt(config.fd, "inherited")
    elif config.uds:
        sock = _unix_socket(config.uds, config.uds_mode, config.backlog)
    else:
        sock = _defer_accept(_tcp_socket(config.host, config.port, config.backlog, config.reuse_port))
    sock.setblocking(False)
    return sock


def close_listening_socket(sock):
    """Close, and remove the socket file of a unix socket we created."""
    path = None
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        path = name if isinstance(name, str) and name and not name.startswith("\0") else None
    sock.close()
    if path and path in _created_unix_paths:
        _created_unix_paths.discard(path)
        try:
            os.unlink(path)
        except OSError:
            pass


def describe(sock):
    """'http://127.0.0.1:8000/', 'http://[::1]:8000/' or 'unix:/run/app.sock' for banners and logs."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host, port = name[0], name[1]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

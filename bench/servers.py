"""Benchmark servers, one per process, all serving bench/apps.py's routes (`GET /` "Hello, World!",
`GET /big` 64 KiB, `POST /echo` the body back):

    python bench/servers.py NAME --port 8080 [--threads 1] [--max-connections 11000] [--workdir DIR]
                                         [--fastcore-from DIR]

NAME is one of the keys of SERVERS below (`python bench/servers.py --help` lists them). Each binds
127.0.0.1:PORT and runs in the foreground until SIGTERM or SIGINT. The in-process launchers print
"READY <port>" once they accept; launchers that exec another program (nginx with --workdir,
gunicorn, granian, uvicorn) do not. bench/run.py trusts neither: it waits for a correct HTTP
answer. Which fastcore is measured: the checkout's when it is built in place (`python setup.py
build_ext --inplace`: a developer measuring their build), else the installed fastcore-server (`pip
install .`), which the source folder would otherwise shadow; `python bench/servers.py
--which-fastcore` prints the extension file that is used. With --fastcore-from DIR (the A/B mode's
builds, bench/ab.py), DIR goes first instead: the fastcore and fastcore.pure servers then import
fastcore from DIR while bench.apps stays this checkout's, and the launcher refuses to serve a fastcore
found anywhere else. They print "FASTCORE<tab>fastcore.__file__<tab>fastcore._core.__file__ (or -)"
before READY, so bench/run.py can record which build answered.

Every launcher raises its RLIMIT_NOFILE soft limit (to --max-connections + 1000 at least, when the
hard limit allows), and raises the server's own connection limit and idle keep-alive timeout where
it has them, so the idle-connection test (10,000 connections held open) measures memory, not a
limit. SERVERS also carries, for bench/run.py, what each server needs and how to install it.
"""
import argparse
import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)


def checkout_is_built():
    """The checkout's fastcore/ holds a compiled _core (an in-place build)."""
    folder = os.path.join(ROOT, "fastcore")
    return os.path.isdir(folder) and any(name.startswith("_core") and name.endswith(".so")
                                         for name in os.listdir(folder))


# `bench` comes from the checkout either way. Put first, the checkout would also supply `fastcore`,
# which without an in-place build has no extension and hides an installed one: then it goes last.
if checkout_is_built():
    if ROOT in sys.path:
        sys.path.remove(ROOT)
    sys.path.insert(0, ROOT)
elif ROOT not in sys.path:
    sys.path.append(ROOT)

from bench import apps  # noqa: E402  (after the sys.path fix above)

KEEPALIVE_TIMEOUT = 75          # seconds: nginx's default, applied to every server that has the option
# Thread pools of the threaded competitors, chosen in bench/README.md ("Servers"); the environment
# variables let you try others without editing this file (the value used is in the results).
GUNICORN_THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", 4))
WAITRESS_THREADS = int(os.environ.get("BENCH_WAITRESS_THREADS", 4))
GRANIAN_BLOCKING_THREADS = int(os.environ.get("BENCH_GRANIAN_BLOCKING_THREADS", 1))
FASTCORE_HANDLER_THREADS = int(os.environ.get("BENCH_FASTCORE_HANDLER_THREADS", 4))  # the *-threads kinds
NGINX_ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def ready(port):
    print(f"READY {port}", flush=True)


def raise_fd_limit(wanted):
    """Raise RLIMIT_NOFILE's soft limit to at least `wanted` (up to the hard limit; as root, the
    hard limit too). Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def import_fastcore(kind, fastcore_from):
    """Import the fastcore that `kind` will serve with, print the FASTCORE line, and return None, or a
    one-line reason when --fastcore-from was given and fastcore came from somewhere else."""
    if fastcore_from:
        # after bench.apps (imported above, from this checkout): only fastcore is looked up here first
        sys.path.insert(0, os.path.realpath(fastcore_from))
    import fastcore
    if kind.startswith("fastcore"):
        import fastcore._core  # noqa: F401  (the compiled servers need it; the pure ones may not)
    files = [fastcore.__file__, getattr(sys.modules.get("fastcore._core"), "__file__", None)]
    print("\t".join(["FASTCORE"] + [f or "-" for f in files]), flush=True)     # tabs: paths may hold spaces
    if fastcore_from:
        inside = os.path.realpath(fastcore_from) + os.sep
        stray = [f for f in files if f and not os.path.realpath(f).startswith(inside)]
        if stray:
            return f"--fastcore-from {fastcore_from}, but {', '.join(stray)} was imported"
    return None


def _module_present(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def find_nginx():
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def _fastcore_config(args):
    return dict(host="127.0.0.1", port=args.port, threads=args.threads, max_connections=args.max_connections,
                keepalive_timeout=KEEPALIVE_TIMEOUT)


def _serve(server):
    server.start()
    ready(server.port)
    server.serve_forever()          # already started: waits; SIGINT/SIGTERM stop it cleanly


# -- fastcore (compiled core) ------------------------------------------------------------------

def run_fastcore_static(args):
    import fastcore
    # / and /big are static routes, answered in C without the GIL; /echo needs the request body,
    # which a static route cannot send back, so it is the native handler (run.py marks the echo
    # scenario n/a for this server).
    server = fastcore.Server(apps.make_native_handler(fastcore.Response), **_fastcore_config(args))
    server.add_static("/", apps.HELLO, content_type="text/plain")
    server.add_static("/big", apps.BIG, content_type="application/octet-stream")
    _serve(server)


def run_fastcore_native(args):
    import fastcore
    _serve(fastcore.Server(apps.make_native_handler(fastcore.Response), **_fastcore_config(args)))


def run_fastcore_wsgi(args):
    import fastcore
    _serve(fastcore.WSGIServer(apps.wsgi_app, **_fastcore_config(args)))


def run_fastcore_asgi(args):
    import fastcore
    # lifespan off, as uvicorn runs here: the apps need no startup
    _serve(fastcore.ASGIServer(apps.asgi_app, lifespan="off", **_fastcore_config(args)))


def run_fastcore_native_threads(args):
    import fastcore
    _serve(fastcore.Server(apps.make_native_handler(fastcore.Response), handler_threads=FASTCORE_HANDLER_THREADS,
                           **_fastcore_config(args)))


def run_fastcore_wsgi_threads(args):
    import fastcore
    _serve(fastcore.WSGIServer(apps.wsgi_app, handler_threads=FASTCORE_HANDLER_THREADS, **_fastcore_config(args)))


# -- fastcore.pure (standard library + httptools) -------------------------------------------------

def run_pure_native(args):
    import fastcore
    import fastcore.pure
    _serve(fastcore.pure.Server(apps.make_native_handler(fastcore.Response), **_fastcore_config(args)))


def run_pure_wsgi(args):
    import fastcore
    import fastcore.pure
    options = _fastcore_config(args)
    try:
        from fastcore.pure.wsgi import WSGIServer       # the pure engine's own WSGIServer, when it has one
    except ImportError:
        WSGIServer = None
    if WSGIServer is not None:
        server = WSGIServer(apps.wsgi_app, **options)
    else:                                               # else the adapter as a native handler
        config = fastcore.ServerConfig(**options)
        server = fastcore.pure.Server(fastcore.WSGIHandler(apps.wsgi_app, config), config=config)
    _serve(server)


# -- standard library ThreadingHTTPServer ---------------------------------------------------------

def run_stdlib(args):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"      # keep-alive
        wbufsize = -1                      # buffered wfile: head + body leave in one send()
        disable_nagle_algorithm = True     # TCP_NODELAY, as nginx and fastcore do

        def _send(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                # the request said `Connection: close` (or was HTTP/1.0): BaseHTTPRequestHandler
                # closes but leaves saying so to the handler; without it a client (wrk) sends its
                # next request on the closing connection
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)         # handle_one_request() flushes wfile afterwards

        def do_GET(self):
            if self.path == "/":
                self._send(200, "text/plain", apps.HELLO)
            elif self.path == "/big":
                self._send(200, "application/octet-stream", apps.BIG)
            else:
                self._send(404, "text/plain", b"Not Found")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            if self.path == "/echo":
                self._send(200, "application/octet-stream", body)
            else:
                self._send(404, "text/plain", b"Not Found")

        def log_message(self, format, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024          # listen() backlog; the default of 5 drops wrk's 64 SYNs

        def handle_error(self, request, client_address):
            # wrk stops by closing connections with responses in flight: not worth a traceback
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", args.port), Handler)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    ready(httpd.server_address[1])
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


# -- nginx: the native anchor -----------------------------------------------------------------------

NGINX_CONF = """\
{load_echo}worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;

events {{
    worker_connections {max_connections};
}}

http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout {keepalive}s;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/client_body;
    client_body_buffer_size 16k;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location = / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
        location = /big {{
            default_type application/octet-stream;
            alias {tmp}/big.bin;
        }}
{echo_location}    }}
}}
"""

NGINX_ECHO_LOCATION = """\
        location = /echo {
            default_type application/octet-stream;
            client_body_in_single_buffer on;
            echo_read_request_body;
            echo_request_body;
        }
"""


def nginx_has_echo():
    return os.path.exists(NGINX_ECHO_MODULE)


def run_nginx(args):
    nginx = find_nginx()
    if nginx is None:
        print("nginx not found: install it with `apt-get install -y nginx`", file=sys.stderr)
        return 127
    own_tmp = args.workdir is None
    tmp = tempfile.mkdtemp(prefix="bench-nginx-", dir=args.workdir)
    echo = nginx_has_echo()
    conf = os.path.join(tmp, "nginx.conf")
    with open(os.path.join(tmp, "big.bin"), "wb") as f:
        f.write(apps.BIG)
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=args.port, max_connections=args.max_connections,
                                  keepalive=KEEPALIVE_TIMEOUT,
                                  load_echo=f"load_module {NGINX_ECHO_MODULE};\n" if echo else "",
                                  echo_location=NGINX_ECHO_LOCATION if echo else ""))
    argv = [nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")]
    if not own_tmp:
        # run.py's work directory is removed by run.py: become nginx, so this pid is the server
        # (master_process off: it is the process that serves) and its RSS is nginx's alone.
        os.execv(nginx, argv)
    try:
        proc = subprocess.Popen(argv)

        def forward(signum, frame):
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT if signum == signal.SIGINT else signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        rc = proc.wait()
        if rc:
            try:
                with open(os.path.join(tmp, "error.log")) as f:
                    sys.stderr.write(f.read()[-4000:])
            except OSError:
                pass
        return rc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- other Python servers -------------------------------------------------------------------------

def _exec_module(module, argv):
    """Become `python -m module argv...` (same interpreter), working in the repository root, so the
    launcher's pid is the server's and bench.apps imports."""
    os.chdir(ROOT)
    os.execv(sys.executable, [sys.executable, "-m", module] + argv)


def run_granian(args):
    # 1 worker process (granian's main process supervises it), HTTP/1 only, no websockets, the
    # WSGI interface, GRANIAN_BLOCKING_THREADS threads running the app. --backpressure (requests
    # in flight; default backlog / workers = 1024) is raised to the connection limit so that the
    # idle test can hold its connections; the header read timeout, which hyper also applies to
    # idle keep-alive connections, is raised to granian's maximum, 60 s.
    _exec_module("granian", ["--interface", "wsgi", "--host", "127.0.0.1", "--port", str(args.port),
                             "--workers", "1", "--blocking-threads", str(GRANIAN_BLOCKING_THREADS),
                             "--backpressure", str(args.max_connections), "--http", "1", "--no-ws",
                             "--backlog", "1024", "--http1-header-read-timeout", "60000",
                             "--log-level", "warning", "--working-dir", ROOT, "bench.apps:wsgi_app"])


def run_granian_asgi(args):
    # as run_granian, with the ASGI interface (its own event loop; --blocking-threads is WSGI's)
    _exec_module("granian", ["--interface", "asgi", "--host", "127.0.0.1", "--port", str(args.port),
                             "--workers", "1", "--backpressure", str(args.max_connections), "--http", "1",
                             "--no-ws", "--backlog", "1024", "--http1-header-read-timeout", "60000",
                             "--log-level", "warning", "--working-dir", ROOT, "bench.apps:asgi_app"])


def run_bjoern(args):
    import bjoern
    bjoern.listen(apps.wsgi_app, "127.0.0.1", args.port, listen_backlog=1024)
    ready(args.port)
    # SIGTERM keeps its default action (bjoern has no stop call, and a Python handler would run
    # only when bjoern next calls into Python): run.py counts death by SIGTERM as a clean exit.
    try:
        bjoern.run()
    except KeyboardInterrupt:
        pass


def run_gunicorn(args):
    # gthread worker, 1 worker process (plus gunicorn's arbiter), GUNICORN_THREADS threads
    _exec_module("gunicorn", ["--worker-class", "gthread", "--workers", "1", "--threads", str(GUNICORN_THREADS),
                              "--bind", f"127.0.0.1:{args.port}", "--backlog", "1024",
                              "--worker-connections", str(args.max_connections),
                              "--keep-alive", str(KEEPALIVE_TIMEOUT), "--graceful-timeout", "5",
                              "--log-level", "warning", "--chdir", ROOT, "bench.apps:wsgi_app"])


def run_waitress(args):
    import logging

    import waitress
    # waitress logs "Task queue depth is N" at WARNING whenever requests wait for a thread, which
    # under a benchmark is all the time: keep its errors only.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # asyncore_use_poll: waitress's default select() cannot watch fds above 1023 (1000 connections);
    # connection_limit: the default of 100 would refuse the 1000-connection and idle tests.
    server = waitress.create_server(apps.wsgi_app, host="127.0.0.1", port=args.port, threads=WAITRESS_THREADS,
                                    backlog=1024, connection_limit=args.max_connections,
                                    asyncore_use_poll=True, channel_timeout=max(120, KEEPALIVE_TIMEOUT))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    ready(args.port)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def run_uvicorn(args):
    # one process (--workers 1 runs in-process), httptools HTTP parser, uvloop when installed
    _exec_module("uvicorn", ["--host", "127.0.0.1", "--port", str(args.port), "--workers", "1",
                             "--http", "httptools", "--loop", UVICORN_LOOP, "--lifespan", "off",
                             "--no-access-log", "--log-level", "warning", "--backlog", "1024",
                             "--timeout-keep-alive", str(KEEPALIVE_TIMEOUT), "--app-dir", ROOT,
                             "bench.apps:asgi_app"])


# -- the registry bench/run.py reads ----------------------------------------------------------------

UVICORN_LOOP = "uvloop" if _module_present("uvloop") else "asyncio"
FASTCORE_HINT = ("install it (`pip install .`) or build it in place (`python setup.py build_ext --inplace`); "
                 "`python bench/servers.py --which-fastcore` says what failed")
BENCH_EXTRA_HINT = "pip install -e '.[bench]'"

# name: (launcher, Python modules it needs, install hint, one-line description, {scenario: why n/a})
SERVERS = {
    "fastcore-static": (run_fastcore_static, ["fastcore._core"], FASTCORE_HINT,
                        "fastcore.Server, static routes (answered in C, no GIL); threads=T",
                        {"echo4k": "a static route cannot echo a body"}),
    "fastcore-native": (run_fastcore_native, ["fastcore._core"], FASTCORE_HINT,
                        "fastcore.Server, native Python handler (request -> Response); threads=T", {}),
    "fastcore-wsgi": (run_fastcore_wsgi, ["fastcore._core"], FASTCORE_HINT,
                      "fastcore.WSGIServer, WSGI hello app; threads=T", {}),
    "fastcore-asgi": (run_fastcore_asgi, ["fastcore._core"], FASTCORE_HINT,
                      "fastcore.ASGIServer, ASGI hello app on its event loop (lifespan off); threads=T", {}),
    "fastcore-native-threads": (run_fastcore_native_threads, ["fastcore._core"], FASTCORE_HINT,
                                f"fastcore.Server, native handler on {FASTCORE_HANDLER_THREADS} handler threads "
                                "(handler_threads); threads=T", {}),
    "fastcore-wsgi-threads": (run_fastcore_wsgi_threads, ["fastcore._core"], FASTCORE_HINT,
                              f"fastcore.WSGIServer, WSGI hello app on {FASTCORE_HANDLER_THREADS} handler threads "
                              "(handler_threads); threads=T", {}),
    "pure-native": (run_pure_native, ["fastcore.pure"], "fastcore.pure is not importable",
                    "fastcore.pure.Server, native Python handler; threads=T", {}),
    "pure-wsgi": (run_pure_wsgi, ["fastcore.pure"], "fastcore.pure is not importable",
                  "fastcore.pure WSGIServer (or pure.Server(WSGIHandler(app))), WSGI hello app; threads=T", {}),
    "stdlib": (run_stdlib, [], "",
               "http.server.ThreadingHTTPServer, HTTP/1.1, one thread per connection", {}),
    "nginx": (run_nginx, [], "install it with `apt-get install -y nginx`",
              "nginx, 1 worker, master_process off, `return 200`; /big a file (sendfile), /echo the echo module", {}),
    "granian": (run_granian, ["granian"], f"install it with `pip install granian` (or `{BENCH_EXTRA_HINT}`)",
                f"granian --interface wsgi, 1 worker, HTTP/1, {GRANIAN_BLOCKING_THREADS} blocking thread(s)", {}),
    "granian-asgi": (run_granian_asgi, ["granian"],
                     f"install it with `pip install granian` (or `{BENCH_EXTRA_HINT}`)",
                     "granian --interface asgi, 1 worker, HTTP/1, ASGI hello app", {}),
    "bjoern": (run_bjoern, ["bjoern"],
               f"install it with `apt-get install -y libev-dev && pip install bjoern` (or `{BENCH_EXTRA_HINT}`)",
               "bjoern (libev, single thread), WSGI", {}),
    "gunicorn": (run_gunicorn, ["gunicorn"], f"install it with `pip install gunicorn` (or `{BENCH_EXTRA_HINT}`)",
                 f"gunicorn, gthread worker, 1 worker process, {GUNICORN_THREADS} threads, WSGI", {}),
    "waitress": (run_waitress, ["waitress"], f"install it with `pip install waitress` (or `{BENCH_EXTRA_HINT}`)",
                 f"waitress, {WAITRESS_THREADS} threads (its default), WSGI", {}),
    "uvicorn": (run_uvicorn, ["uvicorn", "httptools"],
                f"install it with `pip install uvicorn httptools uvloop` (or `{BENCH_EXTRA_HINT}`)",
                f"uvicorn, 1 worker, httptools parser, {UVICORN_LOOP} loop, ASGI hello app", {}),
}


# The application interface each server runs bench/apps.py through: a real-app scenario
# (bench/run.py, apps.REAL_APPS) applies to the servers of its interface only.
INTERFACES = {name: "asgi" if name in ("fastcore-asgi", "granian-asgi", "uvicorn")
              else "wsgi" if name in ("fastcore-wsgi", "fastcore-wsgi-threads", "pure-wsgi", "granian",
                                      "bjoern", "gunicorn", "waitress")
              else "native" for name in SERVERS}


def which_fastcore(pure=False):
    """Print the fastcore._core file the fastcore launchers import (and import fastcore.pure too,
    when asked): bench/run.py asks this of a child, which sees sys.path as a server will."""
    import fastcore._core
    if pure:
        import fastcore.pure  # noqa: F401
    print(os.path.realpath(fastcore._core.__file__))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--which-fastcore"]:
        return which_fastcore(pure=argv[1:] == ["pure"])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=list(SERVERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="fastcore / fastcore.pure worker threads")
    parser.add_argument("--max-connections", type=int, default=11000,
                        help="connection limit, for servers that have one (default 11000)")
    parser.add_argument("--workdir", default=None,
                        help="directory for nginx's files; given, the launcher execs nginx and leaves cleanup to the caller")
    parser.add_argument("--fastcore-from", default=None, metavar="DIR",
                        help="import fastcore from DIR (a build of another revision) instead of this checkout")
    args = parser.parse_args(argv)
    return launch(parser, args, SERVERS)


def launch(parser, args, servers):
    """Run the launcher args.kind of `servers` (name: (launcher, ...)): a fastcore or pure kind
    imports the build asked for first (3 when it is the wrong one); bench/ws_servers.py too."""
    raise_fd_limit(args.max_connections + 1000)
    if args.kind.startswith(("fastcore", "pure")):
        wrong = import_fastcore(args.kind, args.fastcore_from)
        if wrong:
            print(wrong, file=sys.stderr)
            return 3
    elif args.fastcore_from:
        parser.error(f"--fastcore-from applies to the fastcore and pure servers, not {args.kind}")
    return servers[args.kind][0](args) or 0


if __name__ == "__main__":
    sys.exit(main())

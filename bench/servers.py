"""Benchmark servers, one per process: each answers GET / with "Hello, World!" (13 bytes).

    python bench/servers.py fastcore-static  --port 8080 [--threads 1]
    python bench/servers.py fastcore-handler --port 8080 [--threads 1]
    python bench/servers.py stdlib           --port 8080
    python bench/servers.py nginx            --port 8080

Each one binds 127.0.0.1:PORT, prints one line "READY <port>" on stdout once it accepts, and runs
in the foreground until SIGTERM or SIGINT. run.py does not trust that line for readiness: it
connects to the port. Run from the repository root (or anywhere: the root is put on sys.path), so
`fastcore` is the in-place build (`python setup.py build_ext --inplace`), not an installed copy.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = b"Hello, World!"


def ready(port):
    print(f"READY {port}", flush=True)


# -- (a) fastcore, static route answered in C --------------------------------------------------

def run_fastcore_static(port, threads):
    sys.path.insert(0, ROOT)
    import fastcore

    server = fastcore.Server(None, port=port, threads=threads)
    server.add_static("/", BODY)
    server.start()
    ready(server.port)
    server.serve_forever()  # already started: waits; SIGINT/SIGTERM stop it cleanly


# -- (b) fastcore, Python handler ---------------------------------------------------------------

def run_fastcore_handler(port, threads):
    sys.path.insert(0, ROOT)
    import fastcore

    def hello(request):
        return fastcore.Response(b"Hello, World!", content_type="text/plain")

    server = fastcore.Server(hello, port=port, threads=threads)
    server.start()
    ready(server.port)
    server.serve_forever()


# -- (c) standard library ThreadingHTTPServer ---------------------------------------------------

def run_stdlib(port, threads):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hello(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"      # keep-alive
        wbufsize = -1                      # buffered wfile: head + body leave in one send()
        disable_nagle_algorithm = True     # TCP_NODELAY, as nginx and fastcore do

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)         # handle_one_request() flushes wfile afterwards

        def log_message(self, format, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024          # listen() backlog; the default of 5 drops wrk's 64 SYNs

        def handle_error(self, request, client_address):
            # wrk stops by closing connections with responses in flight: not worth a traceback
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", port), Hello)

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


# -- (d) nginx ----------------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
    }}
}}
"""


def run_nginx(port, threads):
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if nginx is None:
        print("nginx not found: install it with `apt-get install -y nginx`", file=sys.stderr)
        return 127
    tmp = tempfile.mkdtemp(prefix="bench-nginx-")
    try:
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=tmp, port=port))
        # master_process off: the nginx process is the one that serves; it is our child, so run.py
        # counts its CPU by walking this launcher's process tree.
        proc = subprocess.Popen([nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")])

        def forward(signum, frame):
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT if signum == signal.SIGINT else signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        _wait_listening(port, proc)
        if proc.poll() is None:
            ready(port)
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


def _wait_listening(port, proc):
    """Block until 127.0.0.1:port accepts (or the process dies): connect-polling, no fixed sleep."""
    import socket
    import time
    while proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)


SERVERS = {
    "fastcore-static": run_fastcore_static,
    "fastcore-handler": run_fastcore_handler,
    "stdlib": run_stdlib,
    "nginx": run_nginx,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="fastcore worker threads (others ignore it)")
    args = parser.parse_args(argv)
    return SERVERS[args.kind](args.port, args.threads) or 0


if __name__ == "__main__":
    sys.exit(main())

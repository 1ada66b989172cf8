"""`python -m fastcore`: serve the built-in demo app.

    /        Hello, World! (a Python handler)
    /echo    POST: the body back, with the request's Content-Type
    /health  OK (a static route, answered in C)
"""
import argparse
import json
import logging
import sys

from . import Response, Server


def demo_app(request):
    if request.path == "/":
        return Response(b"Hello, World!\n", content_type="text/plain; charset=utf-8")
    if request.path == "/echo":
        if request.method != "POST":
            return Response(b"POST a body to /echo\n", status=405, headers={"Allow": "POST"},
                            content_type="text/plain; charset=utf-8")
        return Response(request.body, content_type=request.headers.get("content-type", "application/octet-stream"))
    if request.path == "/request":
        described = {"method": request.method, "path": request.path, "query": request.query_string,
                     "version": request.http_version, "headers": request.headers.items()}
        return Response(json.dumps(described, indent=2), content_type="application/json")
    return Response(b"Not Found\n", status=404, content_type="text/plain; charset=utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastcore", description="Serve the fastcore demo app.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = Server(demo_app, host=args.host, port=args.port, threads=args.threads)
    server.add_static("/health", b"OK\n")

    def announce(server):
        print(f"fastcore demo serving on http://{args.host}:{server.port}/ (Ctrl-C to stop)", flush=True)

    try:
        server.serve_forever(on_ready=announce)     # the URL is printed once Ctrl-C is handled
    except OSError as error:
        print(f"fastcore: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

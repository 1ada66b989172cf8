"""`python -m fastcore`: the command line (fastcore.cli). Without an app argument it serves the
built-in demo app defined here:

    /        Hello, World! (a Python handler)
    /echo    POST: the body back, with the request's Content-Type
    /health  OK (a static route, answered in C)
"""
import json
import sys

from . import Response


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
    from .cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())

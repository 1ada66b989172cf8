"""The built-in demo app, served by `fastcore` / `python -m fastcore` without an app argument
(fastcore.cli adds the static route):

    /          Hello, World! (a Python handler)
    /echo      POST, PUT or PATCH: the body back, with the request's Content-Type
    /request   the request as JSON (method, path, query, version, headers)
    /health    OK (a static route, answered in C)

A native handler built on the compiled core's Response only: the command line imports it, it
imports nothing above the core.
"""
import json

from ._core import Response


def demo_app(request):
    if request.path == "/":
        return Response(b"Hello, World!\n", content_type="text/plain; charset=utf-8")
    if request.path == "/echo":
        if request.method not in ("POST", "PUT", "PATCH"):
            return Response(b"POST, PUT or PATCH a body to /echo\n", status=405,
                            headers={"Allow": "POST, PUT, PATCH"}, content_type="text/plain; charset=utf-8")
        return Response(request.body, content_type=request.headers.get("content-type", "application/octet-stream"))
    if request.path == "/request":
        described = {"method": request.method, "path": request.path, "query": request.query_string,
                     "version": request.http_version, "headers": request.headers.items()}
        return Response(json.dumps(described, indent=2), content_type="application/json")
    return Response(b"Not Found\n", status=404, content_type="text/plain; charset=utf-8")

"""Real ASGI frameworks on fastcore, through httpx and raw sockets, on both engines (the compiled
one skips until its ASGI side is built): FastAPI (JSON, path and query parameters, a form upload,
StreamingResponse, FileResponse, a background task, lifespan state), Starlette's
BaseHTTPMiddleware, a Django async view through Django's ASGI handler, and a Quart app."""
import asyncio
import os
import threading
import types

import pytest

from conftest import HTTPReader, configure_django, connect

httpx = pytest.importorskip("httpx")

TIMEOUT = 5.0


def client(srv):
    return httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=TIMEOUT)


# -- FastAPI ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fastapi_app(tmp_path_factory):
    fastapi = pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    import contextlib

    from fastapi import BackgroundTasks, File, Form, Request, UploadFile
    from fastapi.responses import FileResponse, StreamingResponse

    download = tmp_path_factory.mktemp("fastapi") / "download.bin"
    download.write_bytes(os.urandom(300_000))
    done = []
    background_ran = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield {"greeting": "from lifespan"}
        done.append("shutdown")

    app = fastapi.FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.post("/upload")
    async def upload(name: str = Form(...), file: UploadFile = File(...)):
        data = await file.read()
        return {"name": name, "filename": file.filename, "size": len(data), "head": data[:4].hex()}

    @app.get("/stream")
    async def stream():
        async def numbers():
            for number in range(5):
                await asyncio.sleep(0)
                yield f"{number}\n"
        return StreamingResponse(numbers(), media_type="text/plain")

    @app.get("/file")
    def file():
        return FileResponse(download)

    @app.post("/background")
    async def background(tasks: BackgroundTasks):
        tasks.add_task(background_ran.set)
        return {"queued": True}

    @app.get("/state")
    async def state(request: Request):
        return {"greeting": request.state.greeting}

    app.download = download
    app.background_ran = background_ran
    app.done = done
    return app


def test_fastapi_json_with_path_and_query_parameters(asgi_server, fastapi_app):
    srv = asgi_server(fastapi_app)
    with client(srv) as http:
        response = http.get("/items/42", params={"q": "hello world"})
        assert response.status_code == 200 and response.json() == {"item_id": 42, "q": "hello world"}
        assert response.headers["content-type"] == "application/json" and response.headers["server"] == "fastcore"
        assert http.get("/items/nope").status_code == 422
        assert http.get("/missing").status_code == 404


def test_fastapi_form_upload_small_and_streamed(asgi_server, fastapi_app):
    srv = asgi_server(fastapi_app, body_buffer_size=65536, max_body_size=4 << 20)
    with client(srv) as http:
        for size in (1000, 700_000):                 # read whole, and in parts (> body_buffer_size)
            data = os.urandom(size)
            response = http.post("/upload", data={"name": "bob"}, files={"file": ("a.bin", data)})
            assert response.status_code == 200, response.text
            assert response.json() == {"name": "bob", "filename": "a.bin", "size": size, "head": data[:4].hex()}


def test_fastapi_streaming_and_file_responses(asgi_server, fastapi_app):
    srv = asgi_server(fastapi_app)
    with client(srv) as http:
        response = http.get("/stream")
        assert response.text == "0\n1\n2\n3\n4\n" and response.headers["transfer-encoding"] == "chunked"
        response = http.get("/file")
        assert response.content == fastapi_app.download.read_bytes()
        assert response.headers["content-length"] == str(len(response.content))


def test_fastapi_background_task_and_lifespan_state(asgi_server, fastapi_app):
    fastapi_app.background_ran.clear()
    srv = asgi_server(fastapi_app)
    with client(srv) as http:
        assert http.post("/background").json() == {"queued": True}
        assert fastapi_app.background_ran.wait(TIMEOUT)
        assert http.get("/state").json() == {"greeting": "from lifespan"}
    srv.stop()
    assert fastapi_app.done[-1] == "shutdown"


def test_fastapi_over_a_raw_socket_pipelined(asgi_server, fastapi_app):
    srv = asgi_server(fastapi_app)
    with connect(srv.port) as sock:
        sock.sendall(b"".join(b"GET /items/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n for n in range(3)))
        reader = HTTPReader(sock)
        for n in range(3):
            status, fields, body, complete = reader.read()
            assert status == 200 and complete and body == b'{"item_id":%d,"q":null}' % n


# -- Starlette middleware --------------------------------------------------------------------------

def test_starlette_base_http_middleware(asgi_server):
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    class Stamp(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            response = await call_next(request)
            response.headers["x-stamp"] = request.url.path
            return response

    async def hello(request):
        body = await request.body()
        return PlainTextResponse(f"hello {request.query_params.get('name')} {len(body)}")

    async def stream(request):
        async def parts():
            for part in (b"a", b"b", b"c"):
                yield part
        return StreamingResponse(parts())

    app = Starlette(routes=[Route("/hello", hello, methods=["GET", "POST"]), Route("/stream", stream)],
                    middleware=[Middleware(Stamp)])
    srv = asgi_server(app)
    with client(srv) as http:
        response = http.post("/hello", params={"name": "mw"}, content=b"x" * 10)
        assert response.text == "hello mw 10" and response.headers["x-stamp"] == "/hello"
        response = http.get("/stream")
        assert response.text == "abc" and response.headers["x-stamp"] == "/stream"


# -- Django ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def django_asgi_app():
    pytest.importorskip("django")
    from django.http import JsonResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    async def hello(request):
        await asyncio.sleep(0)
        return JsonResponse({"name": request.GET.get("name", "world"), "path": request.path,
                             "script": request.META.get("SCRIPT_NAME", "")})

    @csrf_exempt
    async def submit(request):
        return JsonResponse({"method": request.method, "body_length": len(request.body),
                             "fields": {key: request.POST.getlist(key) for key in request.POST}})

    urls = types.ModuleType("fastcore_test_asgi_urls")
    urls.urlpatterns = [path("hello/", hello), path("submit/", submit)]
    configure_django(urls)
    from django.core.asgi import get_asgi_application
    return get_asgi_application()


def test_django_async_view_through_its_asgi_handler(asgi_server, django_asgi_app):
    srv = asgi_server(django_asgi_app)               # lifespan auto: Django refuses it, served without
    with client(srv) as http:
        assert http.get("/hello/", params={"name": "dj"}).json() == {"name": "dj", "path": "/hello/", "script": ""}
        response = http.post("/submit/", data={"a": ["1", "2"], "b": "x"})
        assert response.json() == {"method": "POST", "body_length": 11, "fields": {"a": ["1", "2"], "b": ["x"]}}


def test_django_under_a_root_path(asgi_server, django_asgi_app):
    srv = asgi_server(django_asgi_app, root_path="/site")
    with client(srv) as http:
        assert http.get("/site/hello/").json() == {"name": "world", "path": "/site/hello/", "script": "/site"}


# -- Quart -----------------------------------------------------------------------------------------

def test_quart_app(asgi_server):
    quart = pytest.importorskip("quart")
    app = quart.Quart("fastcore_quart_test")
    started = []

    @app.before_serving
    async def startup():
        started.append(True)

    @app.route("/hello/<name>")
    async def hello(name):
        return {"hello": name, "started": bool(started)}

    @app.route("/echo", methods=["POST"])
    async def echo():
        data = await quart.request.get_data()
        return data[::-1]

    srv = asgi_server(app, lifespan="on")
    with client(srv) as http:
        assert http.get("/hello/quart").json() == {"hello": "quart", "started": True}
        assert http.post("/echo", content=b"abc").content == b"cba"

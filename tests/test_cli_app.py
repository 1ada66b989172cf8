"""`fastcore module:app` / `python -m fastcore module:app` as a user runs them: a subprocess in a
temporary directory holding the app's module, talked to over real sockets, stopped with SIGINT.
Also each mistake a user can make: one line on stderr, no traceback, exit status 2 (usage) or 1
(runtime)."""
import http.client
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import tomllib

import pytest

from conftest import PROJECT_ROOT, child_env

STARTUP_TIMEOUT = 20.0
TIMEOUT = 5.0

APP_MODULE = '''
import json
import os

def app(environ, start_response):
    described = {key: environ[key] for key in ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PORT")}
    described["pid"] = os.getpid()
    body = json.dumps(described).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

def create_app(greeting="hello"):
    def greeter(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [greeting.encode()]
    return greeter

def handle(request):                       # a native handler
    import fastcore
    return fastcore.Response(b"native " + request.path.encode(), content_type="text/plain")

application = app
not_callable = 42
'''


ASYNC_APPS = '''
async def asgi(scope, receive, send):          # an ASGI app, as uvicorn takes it
    pass

class Framework:                                # FastAPI / Starlette: an instance with an async __call__
    async def __call__(self, scope, receive, send):
        pass

framework = Framework()

async def hello(scope, receive, send):           # lifespan state, root_path, and an answer
    if scope["type"] == "lifespan":
        await receive()
        scope["state"]["greeting"] = "hello from lifespan"
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = " ".join([scope["state"]["greeting"], scope["path"], scope["root_path"]]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})

async def failing_startup(scope, receive, send):     # lifespan.startup.failed, as Starlette sends it
    message = await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})

async def wsgi_shaped(environ, start_response):
    start_response("200 OK", [])
    return [b"never"]

async def handle(request):
    return b"never"
'''


OWN_LOGGING_APP = '''
import logging
import sys

# As Django's LOGGING does: a handler on the app's own logger, which still propagates to the root.
log = logging.getLogger("myproject")
log.setLevel(logging.INFO)
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(logging.Formatter("APP %(message)s"))
log.addHandler(handler)

def app(environ, start_response):
    log.info("handled %s", environ["PATH_INFO"])
    if environ["PATH_INFO"] == "/crash":
        raise RuntimeError("view crashed")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"logged"]
'''


SLOW_APP = '''
import os
import time

def app(environ, start_response):
    open(os.path.join(os.path.dirname(__file__), "entered"), "w").close()
    time.sleep(2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"late"]
'''


FASTAPI_APP = '''
import fastapi

app = fastapi.FastAPI()

@app.get("/items/{item_id}")
async def read_item(item_id: int):
    return {"item_id": item_id}
'''


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "userapp.py").write_text(APP_MODULE)
    (tmp_path / "broken.py").write_text("import json\nraise RuntimeError('the module itself is broken')\n")
    (tmp_path / "needsdep.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "asyncapps.py").write_text(ASYNC_APPS)
    (tmp_path / "ownlogging.py").write_text(OWN_LOGGING_APP)
    (tmp_path / "slowapp.py").write_text(SLOW_APP)
    (tmp_path / "main.py").write_text(FASTAPI_APP)
    return tmp_path


def environment(**extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith("FASTCORE_")}
    env["PYTHONPATH"] = PROJECT_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    env.update(extra)
    return env


def read_line(stream, timeout):
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete line within {timeout} s (got {line!r})"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                return line.decode()
            line += chunk
    return line.decode()


class Served:
    """A running `fastcore ...` child: its banner, its host and port (None on a unix socket), and
    stop() -> (returncode, stdout rest, stderr)."""

    def __init__(self, args, cwd, env, command=None):
        command = command or [sys.executable, "-m", "fastcore"]
        self.child = subprocess.Popen(command + args, cwd=cwd, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.banner = read_line(self.child.stdout, STARTUP_TIMEOUT)
        if not self.banner:
            _, stderr = self.child.communicate(timeout=TIMEOUT)
            raise AssertionError(f"exited with {self.child.returncode}: {stderr.decode(errors='replace')}")
        match = re.search(r"http://(127\.0\.0\.1|\[::1\]):(\d+)/", self.banner)
        assert match or "unix:" in self.banner, f"no URL in the banner {self.banner!r}"
        self.host = match.group(1).strip("[]") if match else None
        self.port = int(match.group(2)) if match else None

    def get(self, path="/"):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self):
        self.child.send_signal(signal.SIGINT)
        try:
            stdout, stderr = self.child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("did not exit within 10 s of SIGINT")
        return self.child.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")

    def kill(self):
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait(10)
        for stream in (self.child.stdout, self.child.stderr):
            if not stream.closed:
                stream.close()


@pytest.fixture
def serve(app_dir):
    started = []

    def start(*args, env=None, command=None):
        served = Served(list(args), app_dir, env or environment(), command)
        started.append(served)
        return served

    yield start
    for served in started:
        served.kill()


def run_failing(args, cwd, env=None):
    """Run a command that must fail fast; (returncode, stdout, stderr)."""
    completed = subprocess.run([sys.executable, "-m", "fastcore"] + args, cwd=cwd, env=env or environment(),
                               capture_output=True, timeout=STARTUP_TIMEOUT)
    return completed.returncode, completed.stdout.decode(errors="replace"), completed.stderr.decode(errors="replace")


# -- serving -------------------------------------------------------------------------------------

def test_module_app_from_the_current_directory(serve):
    import json
    served = serve("userapp:app", "--port", "0")
    assert "userapp:app" in served.banner and "WSGI" in served.banner
    status, body = served.get("/some/path?x=1")
    assert status == 200
    described = json.loads(body)
    assert described["PATH_INFO"] == "/some/path" and described["QUERY_STRING"] == "x=1"
    assert described["SERVER_PORT"] == str(served.port)
    assert described["pid"] == served.child.pid
    returncode, _, stderr = served.stop()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr


def test_module_alone_means_module_application(serve):
    served = serve("userapp", "--port", "0")
    assert served.get("/")[0] == 200
    assert served.stop()[0] == 0


@pytest.mark.parametrize("spec, extra, expected", [
    ("userapp:create_app()", [], b"hello"),
    ("userapp:create_app('bonjour')", [], b"bonjour"),
    ("userapp:create_app(greeting='hallo')", [], b"hallo"),
    ("userapp:create_app", ["--factory"], b"hello"),
])
def test_app_factory(serve, spec, extra, expected):
    served = serve(spec, "--port", "0", *extra)
    assert served.get("/") == (200, expected)
    assert served.stop()[0] == 0


def test_options_from_the_environment_and_flags_beat_them(serve):
    import json
    served = serve("userapp:app", env=environment(FASTCORE_PORT="0", FASTCORE_ROOT_PATH="/from-env",
                                                  FASTCORE_THREADS="3"))
    assert json.loads(served.get("/from-env/x")[1])["SCRIPT_NAME"] == "/from-env"
    assert served.stop()[0] == 0
    served = serve("userapp:app", "--root-path", "/from-flag",
                   env=environment(FASTCORE_PORT="0", FASTCORE_ROOT_PATH="/from-env"))
    described = json.loads(served.get("/from-flag/y")[1])
    assert (described["SCRIPT_NAME"], described["PATH_INFO"]) == ("/from-flag", "/y")
    assert served.stop()[0] == 0


def test_access_log_on_stdout(serve):
    served = serve("userapp:app", "--port", "0", "--access-log")
    assert served.get("/logged?q=1")[0] == 200
    line = read_line(served.child.stdout, TIMEOUT)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^\]]+\] "GET /logged\?q=1 HTTP/1\.1" 200 \d+ \d+us\n', line), line
    assert served.stop()[0] == 0


def test_access_log_to_a_file_with_the_core_s_own_responses(serve, tmp_path):
    log_file = tmp_path / "access.log"
    served = serve("userapp:app", "--port", "0", "--access-log", "--access-log-file", str(log_file),
                   "--max-body-size", "10")
    assert served.get("/to-file")[0] == 200
    with socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")
    assert served.stop()[0] == 0                # the last lines are written at the stop
    lines = log_file.read_text().splitlines()
    assert any('"GET /to-file HTTP/1.1" 200' in line for line in lines), lines
    assert any('"POST /big HTTP/1.1" 413' in line for line in lines), lines


def test_access_log_from_the_environment_and_off_by_default(serve):
    served = serve("userapp:app", "--port", "0", env=environment(FASTCORE_ACCESS_LOG="yes"))
    assert served.get("/env")[0] == 200
    assert '"GET /env HTTP/1.1" 200' in read_line(served.child.stdout, TIMEOUT)
    assert served.stop()[0] == 0
    served = serve("userapp:app", "--port", "0")
    assert served.get("/quiet")[0] == 200
    _, stdout, _ = served.stop()
    assert "/quiet" not in stdout


def test_native_interface(serve):
    served = serve("--interface", "native", "userapp:handle", "--port", "0", "--access-log")
    assert "native" in served.banner
    assert served.get("/n") == (200, b"native /n")
    assert '"GET /n HTTP/1.1" 200 9 ' in read_line(served.child.stdout, TIMEOUT)
    assert served.stop()[0] == 0


@pytest.mark.parametrize("engine", ["compiled", "pure"])
def test_an_asgi_app_is_detected_and_served(serve, engine):
    served = serve("asyncapps:hello", "--port", "0", "--engine", engine, "--root-path", "/api",
                   "--loop", "asyncio", "--lifespan", "on")
    assert "asyncapps:hello (ASGI)" in served.banner
    assert served.get("/api/x") == (200, b"hello from lifespan /api/x /api")
    returncode, _, stderr = served.stop()
    assert returncode == 0, stderr


@pytest.mark.parametrize("engine", ["compiled", "pure"])
def test_fastapi_main_app_as_a_user_runs_it(serve, engine):
    pytest.importorskip("fastapi")
    served = serve("main:app", "--port", "0", "--engine", engine)
    assert "main:app (ASGI)" in served.banner
    assert served.get("/items/7") == (200, b'{"item_id":7}')
    returncode, _, stderr = served.stop()
    assert returncode == 0, stderr


def test_demo_without_app_takes_the_generated_options(serve):
    served = serve("--port", "0", "--access-log", "--server-name", "demo-test")
    assert served.banner.startswith("fastcore demo serving on http://127.0.0.1:")
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=TIMEOUT)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Server") == "demo-test"
    assert b"Hello" in response.read()
    conn.close()
    assert '"GET / HTTP/1.1" 200' in read_line(served.child.stdout, TIMEOUT)
    assert served.stop()[0] == 0


def test_console_script_entry_point(serve, app_dir):
    """The `fastcore` console script is fastcore.cli:main (in pyproject.toml, and in the installed
    distribution's metadata when there is one); run that function as the script does, and the
    installed script itself when it sits next to this interpreter."""
    import importlib.metadata
    declared = []
    pyproject = os.path.join(PROJECT_ROOT, "pyproject.toml")
    if os.path.exists(pyproject):
        with open(pyproject, "rb") as handle:
            declared.append(tomllib.load(handle)["project"]["scripts"]["fastcore"])
    try:
        distribution = importlib.metadata.distribution("fastcore-server")
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        declared += [entry.value for entry in distribution.entry_points
                     if entry.group == "console_scripts" and entry.name == "fastcore"]
    if not declared:
        pytest.skip("neither pyproject.toml nor an installed fastcore-server distribution to read")
    assert set(declared) == {"fastcore.cli:main"}, declared
    commands = [[sys.executable, "-c", "import sys; from fastcore.cli import main; sys.exit(main())"]]
    script = os.path.join(os.path.dirname(sys.executable), "fastcore")
    if distribution is not None and os.access(script, os.X_OK):
        commands.append([script])
    for command in commands:
        served = serve("userapp:app", "--port", "0", command=command)
        assert served.get("/")[0] == 200
        assert served.stop()[0] == 0


def test_help_lists_every_server_config_option():
    import dataclasses
    import fastcore
    completed = subprocess.run([sys.executable, "-m", "fastcore", "--help"], env=environment(),
                               capture_output=True, timeout=STARTUP_TIMEOUT)
    assert completed.returncode == 0
    text = completed.stdout.decode()
    for spec in dataclasses.fields(fastcore.ServerConfig):
        assert "--" + spec.name.replace("_", "-") in text
        assert "FASTCORE_" + spec.name.upper() in text
    assert "--interface" in text and "--factory" in text


@pytest.mark.parametrize("flag, env", [(["--uds-mode", "666"], {}), (["--uds-mode", "0o666"], {}),
                                       (["--uds-mode", "0666"], {}), ([], {"FASTCORE_UDS_MODE": "666"})])
def test_uds_mode_is_octal_as_chmod_takes_it(serve, app_dir, flag, env):
    """`--uds-mode 666` is rw-rw-rw- (it was read as decimal 666 = 0o1232); 0o666 and 0666 too."""
    path = str(app_dir / "served.sock")
    served = serve("userapp:app", "--uds", path, *flag, env=environment(**env))
    assert f"unix:{path}" in served.banner, served.banner
    assert os.stat(path).st_mode & 0o7777 == 0o666
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(TIMEOUT)
        client.connect(path)
        client.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"PATH_INFO": "/x"' in reply
    assert served.stop()[0] == 0


def test_help_shows_the_uds_mode_in_octal():
    completed = subprocess.run([sys.executable, "-m", "fastcore", "--help"], env=environment(),
                               capture_output=True, timeout=STARTUP_TIMEOUT)
    text = " ".join(completed.stdout.decode().split())
    assert "--uds-mode MODE" in text and "(default: 660;" in text and "432" not in text


def test_the_apps_log_lines_print_once_and_ours_too(serve):
    """The command line configures fastcore's loggers, not the root: an app with its own handler
    (Django's LOGGING) printed every line twice through the root handler basicConfig added."""
    served = serve("ownlogging:app", "--port", "0")
    assert served.get("/once") == (200, b"logged")
    assert served.get("/crash")[0] == 500
    returncode, _, stderr = served.stop()
    assert returncode == 0
    assert stderr.count("handled /once") == 1, stderr
    assert stderr.count("RuntimeError: view crashed") == 1, stderr
    assert re.search(r"ERROR fastcore\.error: ", stderr), stderr


def test_engine_pure_without_httptools_says_what_to_install(app_dir):
    """httptools is an extra (fastcore-server[pure]), not a dependency: without it, --engine pure is
    one line and exit status 2, not a traceback. (sys.modules["httptools"] = None: as if not installed.)"""
    code = ("import sys; sys.modules['httptools'] = None; from fastcore.cli import main; "
            "sys.exit(main(['--engine', 'pure', '--port', '0']))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=app_dir, env=environment(),
                               capture_output=True, timeout=STARTUP_TIMEOUT)
    stderr = completed.stderr.decode(errors="replace")
    assert completed.returncode == 2, stderr
    assert stderr.strip() == ("fastcore: error: the pure engine (fastcore.pure, --engine pure) needs httptools, "
                              "which fastcore-server does not install by default: "
                              "pip install 'fastcore-server[pure]'"), stderr


def test_a_stop_that_cuts_requests_off_exits_1(serve, app_dir):
    """--shutdown-timeout 0.3 with a request in a 2 s handler: the stop overruns its bound, so the
    exit status is 1 (it was 0), and --help states the bound (shutdown_timeout + 5 s)."""
    import threading
    served = serve("slowapp:app", "--port", "0", "--shutdown-timeout", "0.3")
    client = threading.Thread(target=_quiet_get, args=(served,))
    client.start()
    deadline = time.monotonic() + TIMEOUT
    while not (app_dir / "entered").exists():
        assert time.monotonic() < deadline, "the app was never called"
        time.sleep(0.01)
    started = time.monotonic()
    returncode, _, stderr = served.stop()
    client.join(10)
    assert returncode == 1, stderr
    assert "requests were still in flight 0.3 s after the stop began" in stderr
    assert "WARNING fastcore.error: requests were" in stderr          # the name once, not "...: fastcore: ..."
    assert time.monotonic() - started < 0.3 + 5 + 2

    completed = subprocess.run([sys.executable, "-m", "fastcore", "--help"], env=environment(),
                               capture_output=True, timeout=STARTUP_TIMEOUT)
    assert "takes at most this + 5 s" in " ".join(completed.stdout.decode().split())


def _quiet_get(served):
    try:
        served.get("/")
    except (OSError, http.client.HTTPException):
        pass


# -- mistakes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, env, status, message", [
    (["nosuchmodule:app"], {}, 2, "cannot import 'nosuchmodule': no module named 'nosuchmodule'"),
    (["userapp.sub:app"], {}, 2, "no module named 'userapp.sub'"),
    (["userapp:nothing_here"], {}, 2, "'userapp' has no attribute 'nothing_here'"),
    (["userapp:not_callable"], {}, 2, "is a int, not a callable"),
    (["userapp:create_app"], {}, 2, "if it is an app factory, add '()'"),
    (["userapp:create_app(open('x'))"], {}, 2, "must be literals"),
    (["userapp:"], {}, 2, "APP must look like module:attribute"),
    (["broken:app"], {}, 1, "importing 'broken' failed: RuntimeError: the module itself is broken"),
    (["needsdep:app"], {}, 1, "importing 'needsdep' failed: ModuleNotFoundError"),
    (["userapp:app", "--port", "eighty"], {}, 2, "argument --port: invalid int value: 'eighty'"),
    (["userapp:app", "--threads", "0"], {}, 2, "threads must be at least 1, not 0"),
    (["userapp:app", "--port", "70000"], {}, 2, "port must be at most 65535"),
    (["userapp:app", "--log-level", "chatty"], {}, 2, "log_level must be one of"),
    (["userapp:app", "--interface", "cgi"], {}, 2, "argument --interface: invalid choice"),
    (["userapp:app", "--interface", "asgi"], {}, 2, "'userapp:app' is not an ASGI application"),
    (["asyncapps:asgi", "--lifespan", "sometimes"], {}, 2, "lifespan must be auto, on or off"),
    (["asyncapps:asgi", "--loop", "trio"], {}, 2, "loop must be auto, asyncio or uvloop"),
    (["asyncapps:failing_startup", "--port", "0"], {}, 1,
     "the app's lifespan startup failed: no database"),
    (["asyncapps:asgi", "--port", "0", "--lifespan", "on"], {}, 1,
     "the app returned from the lifespan scope without completing its startup"),
    (["userapp:app", "--no-such-option"], {}, 2, "unrecognized arguments: --no-such-option"),
    (["userapp:app"], {"FASTCORE_THREADS": "many"}, 2, "FASTCORE_THREADS='many': invalid int value"),
    (["userapp:app"], {"FASTCORE_ACCESS_LOG": "maybe"}, 2, "FASTCORE_ACCESS_LOG='maybe'"),
    (["userapp:app"], {"FASTCORE_INTERFACE": "cgi"}, 2, "FASTCORE_INTERFACE='cgi'"),
    (["userapp:app", "--root-path", "no-slash"], {}, 2, "root_path must start with '/'"),
    (["asyncapps:asgi", "--interface", "wsgi"], {}, 2, "'asyncapps:asgi': this is an ASGI application (async, "
                                                       "with scope, receive, send), not a WSGI application"),
    (["asyncapps:framework", "--interface", "native"], {}, 2, "'asyncapps:framework': this is an ASGI application"),
    (["asyncapps:wsgi_shaped"], {}, 2, "this is an async function (async def); a WSGI application is a "
                                       "plain callable (environ, start_response)"),
    (["asyncapps:handle", "--interface", "native"], {}, 2,
     "this is an async function (async def); a native handler is a plain callable"),
    (["userapp:app", "--max-requests", "100"], {}, 2, "max_requests needs processes > 1"),
    (["userapp:app", "--uds-mode", "rw"], {}, 2, "argument --uds-mode: invalid octal mode: 'rw'"),
    (["userapp:app", "--uds-mode", "689"], {}, 2, "invalid octal mode: '689'"),
    (["userapp:app", "--uds-mode", "77777"], {}, 2, "uds_mode must be a permission mode, at most 0o7777"),
    (["userapp:app"], {"FASTCORE_UDS_MODE": "9"}, 2, "FASTCORE_UDS_MODE='9': invalid octal mode"),
])
def test_user_mistakes_end_with_one_line_and_a_status(app_dir, args, env, status, message):
    returncode, stdout, stderr = run_failing(args, app_dir, environment(**env))
    assert returncode == status, (stdout, stderr)
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fastcore: error: ") and message in lines[0], lines[0]


def test_port_in_use_is_a_runtime_error(app_dir):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        returncode, _, stderr = run_failing(["userapp:app", "--port", str(port)], app_dir)
    assert returncode == 1
    assert stderr.strip() == f"fastcore: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_unresolvable_host_is_a_runtime_error(app_dir):
    """The resolver's own message, not os.strerror() of its negative EAI_* code ("Unknown error -2")."""
    returncode, _, stderr = run_failing(["userapp:app", "--host", "no-such-host.invalid", "--port", "0"], app_dir)
    assert returncode == 1
    assert stderr.startswith("fastcore: error: cannot listen on no-such-host.invalid:0: ")
    try:
        socket.getaddrinfo("no-such-host.invalid", 0)
    except socket.gaierror as error:
        expected = error.strerror
    assert stderr.strip().endswith(": " + expected) and "Unknown error" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_bracketed_ipv6_host(serve):
    """--host '[::1]' is the IPv6 address ::1, as written in URLs and in gunicorn's --bind."""
    served = serve("userapp:app", "--host", "[::1]", "--port", "0")
    assert re.search(r"http://\[::1\]:(\d+)/", served.banner), served.banner
    status, body = served.get("/v6")
    assert status == 200 and b'"PATH_INFO": "/v6"' in body
    assert served.stop()[0] == 0


def test_debug_log_level_shows_the_traceback_of_the_users_code(app_dir):
    returncode, _, stderr = run_failing(["broken:app", "--log-level", "debug"], app_dir)
    assert returncode == 1
    assert "Traceback" in stderr and "the module itself is broken" in stderr


def test_engine_pure_serves_the_demo_with_the_pure_python_server():
    """--engine pure selects fastcore.pure (the comparison engine) with the same command line."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    env = child_env()
    child = subprocess.Popen([sys.executable, "-m", "fastcore", "--port", "0", "--engine", "pure"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        url = child.stdout.readline().split(" on ", 1)[1].split(" ")[0]
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read() == b"Hello, World!\n"
        child.send_signal(signal.SIGINT)
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()


def test_an_asgi_app_with_worker_processes_runs_its_lifespan_in_each(serve):
    served = serve("asyncapps:hello", "--port", "0", "--processes", "2", "--lifespan", "on")
    assert "asyncapps:hello (ASGI)" in served.banner
    for _ in range(4):
        assert served.get("/x") == (200, b"hello from lifespan /x ")
    returncode, _, stderr = served.stop()
    assert returncode == 0, stderr

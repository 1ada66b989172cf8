"""The command line as a deployer uses it (issue 18): --log-config, --reload, --timeout, --version,
-b/--bind, -w/--workers and the config file. Each runs `python -m fastcore` as a child in a
temporary directory, as tests/test_cli_app.py does (its fixtures are reused here), and talks to it
over real sockets."""
import json
import os
import re

import pytest

from test_cli_app import TIMEOUT, app_dir, environment, read_line, run_failing, serve  # noqa: F401 (fixtures)


def wait_for_text(path, text, seconds=TIMEOUT):
    """The file at `path` holds `text` within `seconds` (log handlers write on their own time)."""
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path) and text in open(path, encoding="utf-8").read():
            return True
        time.sleep(0.02)
    return False


# -- --log-config ------------------------------------------------------------------------------------

def test_log_config_json_routes_fastcores_lines_and_leaves_the_rest_alone(serve, app_dir):
    log_file = app_dir / "server.log"
    (app_dir / "logging.json").write_text(json.dumps({
        "version": 1,
        "formatters": {"tagged": {"format": "CFG %(name)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "tagged"}},
        "loggers": {"fastcore": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }))
    served = serve("ownlogging:app", "--port", "0", "--access-log", "--log-config", "logging.json")
    assert served.get("/crash")[0] == 500
    assert served.get("/fine")[0] == 200
    assert wait_for_text(log_file, 'CFG fastcore.access 127.0.0.1 - - [')
    assert wait_for_text(log_file, "CFG fastcore.error WSGI application")
    returncode, stdout, stderr = served.stop()
    assert returncode == 0
    # fastcore added no handler of its own: no access line on stdout, no error line on stderr,
    # and the app's own logger kept printing its lines once.
    assert '"GET /fine' not in stdout and "fastcore.error" not in stderr, (stdout, stderr)
    assert stderr.count("APP handled /fine") == 1, stderr


def test_log_config_toml_and_the_level_given(serve, app_dir):
    log_file = app_dir / "server.log"
    (app_dir / "logging.toml").write_text(f'''
version = 1
[formatters.plain]
format = "TOML %(levelname)s %(name)s %(message)s"
[handlers.file]
class = "logging.FileHandler"
filename = "{log_file}"
formatter = "plain"
[root]
handlers = ["file"]
level = "DEBUG"
''')
    # No fastcore logger in the file: its lines propagate to the root's handler. --log-level error
    # sets the "fastcore" logger's level, yet the access lines pass: --access-log asks for them,
    # and the access logger is given INFO when the file gave it no level.
    served = serve("userapp:app", "--port", "0", "--log-config", "logging.toml", "--access-log",
                   "--log-level", "error")
    assert served.get("/via-root")[0] == 200
    assert wait_for_text(log_file, "TOML INFO fastcore.access 127.0.0.1")
    assert served.stop()[0] == 0


@pytest.mark.parametrize("content, name, message", [
    (None, "missing.json", "cannot read the log config 'missing.json'"),
    ("{not json", "bad.json", "is not valid JSON"),
    ("version = [", "bad.toml", "is not valid TOML"),
    ('["a list"]', "list.json", "must hold a dictionary"),
    ('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}', "refused.json",
     "was refused by logging.config"),
])
def test_a_bad_log_config_is_one_line_and_exit_2(app_dir, content, name, message):
    if content is not None:
        (app_dir / name).write_text(content)
    returncode, stdout, stderr = run_failing(["userapp:app", "--log-config", name], app_dir)
    assert returncode == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in stderr, stderr


# -- --reload ----------------------------------------------------------------------------------------

RELOADABLE = '''
MESSAGE = b"%s"

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [MESSAGE]
'''


def test_reload_restarts_on_a_source_change_on_the_same_address(serve, app_dir):
    import time
    module = app_dir / "reloadme.py"
    module.write_text(RELOADABLE % b"one".decode())
    served = serve("reloadme:app", "--port", "0", "--reload")
    assert served.get("/") == (200, b"one")
    module.write_text(RELOADABLE % "two")
    stamp = time.time() + 1                             # a later mtime even on a coarse clock
    os.utime(module, (stamp, stamp))
    deadline = time.monotonic() + 20
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = served.get("/")                    # the same port: the socket is the watcher's
        except OSError:
            answer = None                               # the old child closed this connection
        if answer == (200, b"two"):
            break
        time.sleep(0.05)
    assert answer == (200, b"two")
    returncode, _, stderr = served.stop()
    assert returncode == 0, stderr
    assert "fastcore: reload: change detected: restarting" in stderr
    import importlib.util
    watcher = "watchfiles" if importlib.util.find_spec("watchfiles") else "stat"
    assert f"for changes to *.py ({watcher})" in stderr, stderr


def test_reload_watches_only_the_included_names(tmp_path):
    from fastcore.reload import StatWatcher
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "views.py").write_text("x = 1\n")
    (tmp_path / "page.html").write_text("<p>")
    watcher = StatWatcher([str(tmp_path)], ["*.py"])
    (tmp_path / "page.html").write_text("<p>changed, but not watched")
    (tmp_path / "notes.txt").write_text("new, not watched")
    assert not watcher.changed()
    (tmp_path / "sub" / "new.py").write_text("y = 2\n")
    assert watcher.changed() and not watcher.changed()
    with_html = StatWatcher([str(tmp_path)], ["*.py", "*.html"])
    (tmp_path / "page.html").write_text("<p>watched now, and longer")
    assert with_html.changed()
    os.remove(tmp_path / "sub" / "views.py")
    assert with_html.changed()


def test_reload_is_refused_with_several_processes(app_dir):
    returncode, _, stderr = run_failing(["userapp:app", "--reload", "--processes", "2"], app_dir)
    assert returncode == 2
    assert stderr.strip() == ("fastcore: error: --reload restarts one serving process; "
                              "it cannot be used with --processes > 1")


# -- --version, -b/--bind, -w/--workers, the config file ------------------------------------------------

def test_version():
    import subprocess
    import sys
    import fastcore
    completed = subprocess.run([sys.executable, "-m", "fastcore", "--version"], env=environment(),
                               capture_output=True, timeout=20)
    assert completed.returncode == 0
    assert completed.stdout.decode().strip() == f"fastcore {fastcore.__version__}"


@pytest.mark.parametrize("bind, expected", [
    ("0.0.0.0:9000", {"host": "0.0.0.0", "port": 9000}),
    (":9000", {"host": "0.0.0.0", "port": 9000}),
    ("example.test", {"host": "example.test", "port": 8000}),
    ("[::1]:9001", {"host": "::1", "port": 9001}),
    ("[::]", {"host": "::", "port": 8000}),
    ("unix:/run/app.sock", {"uds": "/run/app.sock"}),
    ("fd://3", {"fd": 3}),
])
def test_bind_takes_gunicorns_addresses(bind, expected, tmp_path):
    from fastcore.cli import resolve
    for flag in ("-b", "--bind"):
        _, config = resolve([flag, bind], environ={}, directory=tmp_path)
        assert {name: getattr(config, name) for name in expected} == expected
    _, config = resolve([], environ={"FASTCORE_BIND": bind}, directory=tmp_path)
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize("args, message", [
    (["-b", "127.0.0.1:1", "-b", "127.0.0.1:2"], "one --bind only"),
    (["-b", "127.0.0.1:1", "--port", "2"], "--bind and --port both say where to listen"),
    (["-b", "[::1:80"], "write an IPv6 address as [::1]:8000"),
    (["-b", "host:http"], "the port must be a number"),
    (["-b", "fd://three"], "fd://N takes a file descriptor number"),
    (["-b", "unix:"], "needs a path"),
])
def test_bad_binds_are_usage_errors(args, message, tmp_path):
    from fastcore.cli import UsageError, resolve
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve(args, environ={}, directory=tmp_path)


def test_workers_is_processes(tmp_path):
    from fastcore.cli import resolve
    for flag in ("-w", "--workers", "--processes"):
        assert resolve([flag, "3"], environ={}, directory=tmp_path)[1].processes == 3


def test_the_config_file_sits_below_the_environment_and_the_flags(tmp_path):
    from fastcore.cli import resolve
    (tmp_path / "fastcore.toml").write_text('app = "userapp:app"\nbind = "0.0.0.0:9100"\nworkers = 2\n'
                                            'threads = 3\naccess-log = true\nshutdown_timeout = 4\n'
                                            'uds_mode = "666"\ninterface = "wsgi"\n')
    args, config = resolve([], environ={}, directory=tmp_path)
    assert args.app == "userapp:app" and args.interface == "wsgi"
    assert (config.host, config.port, config.processes, config.threads) == ("0.0.0.0", 9100, 2, 3)
    assert config.access_log is True and config.shutdown_timeout == 4.0 and config.uds_mode == 0o666
    args, config = resolve(["--threads", "5", "--port", "9200", "other:app"],
                           environ={"FASTCORE_PROCESSES": "4"}, directory=tmp_path)
    assert args.app == "other:app" and (config.threads, config.port, config.processes) == (5, 9200, 4)
    assert config.host == "0.0.0.0"                     # the file's bind, for what the flags left
    _, config = resolve(["-b", "127.0.0.1:9300"], environ={}, directory=tmp_path)
    assert (config.host, config.port) == ("127.0.0.1", 9300)


def test_pyproject_tool_fastcore_and_an_explicit_config(tmp_path):
    from fastcore.cli import resolve
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.fastcore]\nthreads = 6\n')
    args, config = resolve([], environ={}, directory=tmp_path)
    assert config.threads == 6 and args.config_file == "pyproject.toml [tool.fastcore]"
    (tmp_path / "fastcore.toml").write_text("threads = 7\n")
    assert resolve([], environ={}, directory=tmp_path)[1].threads == 7      # fastcore.toml first
    (tmp_path / "deploy.toml").write_text("threads = 8\n")
    assert resolve(["--config", str(tmp_path / "deploy.toml")], environ={}, directory=tmp_path)[1].threads == 8
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (tmp_path / "fastcore.toml").unlink()
    args, config = resolve([], environ={}, directory=tmp_path)
    assert config.threads == 2 and args.config_file is None


@pytest.mark.parametrize("content, message", [
    ("thread = 3\n", "unknown key 'thread'"),
    ('threads = "many"\n', "threads must be int, not str"),
    ("threads = 0\n", "threads must be at least 1"),
    ("threads = [\n", "is not valid TOML"),
    ('engine = "fast"\n', "engine='fast': expected compiled or pure"),
    ("workers = 2\nprocesses = 3\n", "workers and processes are the same option"),
])
def test_a_bad_config_file_is_a_usage_error(content, message, tmp_path):
    from fastcore.cli import UsageError, resolve
    (tmp_path / "fastcore.toml").write_text(content)
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve([], environ={}, directory=tmp_path)
    with pytest.raises(UsageError, match="cannot read the config file"):
        resolve(["--config", str(tmp_path / "missing.toml")], environ={}, directory=tmp_path)


def test_served_from_a_config_file_and_with_bind(serve, app_dir):
    (app_dir / "fastcore.toml").write_text('app = "userapp:app"\nbind = "127.0.0.1:0"\nthreads = 1\n')
    served = serve()
    assert served.host == "127.0.0.1" and served.get("/from-file")[0] == 200
    assert served.stop()[0] == 0
    (app_dir / "fastcore.toml").unlink()
    path = app_dir / "app.sock"
    served = serve("userapp:app", "-b", f"unix:{path}")
    assert served.banner.strip().endswith(f"on unix:{path} (Ctrl-C to stop)"), served.banner
    assert served.stop()[0] == 0

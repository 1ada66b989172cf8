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

"""The public API is typed for its users: `mypy --strict` accepts README's Python examples (and a
Flask app handed to Server.wsgi) without calling anything "untyped", and catches a misspelt option
(`Server(handler, prot=8000)`). Imported modules are checked as a user's mypy sees an installed
library (--follow-imports=silent: their types are used, their insides not reported). Skipped
without mypy or where README.md is not beside the tests."""
import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastcore
from fastcore.config import ServerConfig, ServerOptions

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
README = PROJECT_ROOT / "README.md"

# Names README's WSGI examples use without defining them.
PRELUDE = '''from collections.abc import Callable, Iterable
from typing import Any
import fastcore

def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    return [b""]

def handler(request: fastcore.Request) -> fastcore.Response:
    return fastcore.Response(b"")

config = fastcore.ServerConfig()
'''

FLASK_APP = '''import flask
import fastcore

app = flask.Flask("typed")
server = fastcore.Server.wsgi(app, port=0, threads=4)
fastcore.serve_wsgi(app, host="0.0.0.0", max_body_size=8 << 20, header_timeout=5)
'''

MISTAKES = '''import fastcore

def hello(request: fastcore.Request) -> fastcore.Response:
    return fastcore.Response(b"")

fastcore.Server(hello, prot=8000)
fastcore.Server.wsgi(hello, threads="8")
fastcore.ServerConfig().replace(max_body=1)
'''


def test_server_options_are_serverconfigs_fields():
    fields = {spec.name: spec.type for spec in dataclasses.fields(ServerConfig)}
    assert ServerOptions.__annotations__ == fields
    assert ServerOptions.__total__ is False


def run_mypy(tmp_path, files):
    pytest.importorskip("mypy")
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        paths.append(name)
    env = dict(os.environ)
    package_parent = pathlib.Path(fastcore.__file__).resolve().parent.parent
    if "site-packages" not in str(package_parent):
        env["MYPYPATH"] = str(package_parent)            # the source tree; installed: found as is
    completed = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                                "--cache-dir", str(tmp_path / ".mypy_cache"), *paths],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout + completed.stderr


@pytest.mark.hang_timeout(300)
def test_mypy_strict_accepts_readmes_examples_and_catches_a_misspelt_option(tmp_path):
    if not README.exists():
        pytest.skip("README.md is not beside the tests")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    files = {f"readme_{index}.py": (PRELUDE if "def " not in block else "") + block
             for index, block in enumerate(blocks)}
    files["flask_app.py"] = FLASK_APP
    files["mistakes.py"] = MISTAKES
    returncode, output = run_mypy(tmp_path, files)
    assert returncode == 1, output
    reported = [line for line in output.splitlines() if ": error: " in line]
    assert all(line.startswith("mistakes.py:") for line in reported), output
    assert any('Unexpected keyword argument "prot"' in line for line in reported), output
    assert any('Argument "threads" to "wsgi" of "Server" has incompatible type "str"' in line
               for line in reported), output
    assert any('Argument 1 to "wsgi" of "Server" has incompatible type "Callable[[Request], Response]"' in line
               for line in reported), output                 # a native handler is not a WSGI app
    assert any('Unexpected keyword argument "max_body"' in line for line in reported), output

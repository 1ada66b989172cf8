"""`python -m fastcore`: the demo app on a random port, stopped by SIGINT; and what a source folder
without the built extension says when it shadows an installed fastcore."""
import http.client
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import PROJECT_ROOT, get, child_env


def read_first_line(stream, timeout):
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete first line within {timeout} s (got {line!r})"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = os.read(stream.fileno(), 1)
            assert chunk, f"the demo exited before printing its URL (got {line!r})"
            line += chunk
    return line.decode()


def test_python_m_fastcore_serves_demo_and_exits_cleanly_on_sigint():
    env = child_env()
    child = subprocess.Popen([sys.executable, "-m", "fastcore", "--port", "0"], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first_line = read_first_line(child.stdout, timeout=15)
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", first_line)
        assert match, f"no URL in the first line of stdout: {first_line!r}"
        port = int(match.group(1))
        assert port != 0

        status, _, body = get(port, "/")
        assert status == 200
        assert b"Hello" in body

        status, _, body = get(port, "/health")
        assert status == 200
        assert body.strip() == b"OK"

        payload = b"echo me \x00\xff please"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for method in ("POST", "PUT", "PATCH"):         # README's curl -d is a POST; PUT was refused
                conn.request(method, "/echo", body=payload, headers={"Content-Type": "application/x-test"})
                response = conn.getresponse()
                assert response.status == 200, method
                assert response.read() == payload
            conn.request("GET", "/echo")
            response = conn.getresponse()
            assert response.status == 405 and response.getheader("Allow") == "POST, PUT, PATCH"
            response.read()
        finally:
            conn.close()

        child.send_signal(signal.SIGINT)
        try:
            _, stderr = child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("the demo did not exit within 10 s of SIGINT")
        assert child.returncode == 0, stderr.decode(errors="replace")[-2000:]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        for stream in (child.stdout, child.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def test_an_unbuilt_source_folder_says_what_to_do(tmp_path):
    """README's old first command, `pip install . && python -m fastcore` in the checkout, imported
    the source folder (the current directory comes first with -m), which has no _core, and ended
    in a bare "No module named 'fastcore._core'". It now says why and what to run instead. (-S: no
    site-packages, so nothing installed can stand in for the missing extension.)"""
    if not os.path.isdir(os.path.join(PROJECT_ROOT, "fastcore")):
        pytest.skip("no source folder beside the tests (the installed-wheel run)")
    checkout = tmp_path / "checkout"
    shutil.copytree(os.path.join(PROJECT_ROOT, "fastcore"), checkout / "fastcore",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (checkout / "pyext").mkdir()
    completed = subprocess.run([sys.executable, "-S", "-m", "fastcore", "--port", "0"], cwd=checkout,
                               capture_output=True, timeout=30,
                               env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"})
    assert completed.returncode != 0
    last = completed.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: fastcore._core is not built in the source folder "), last
    assert "Run the `fastcore` command" in last and "pip install -e ." in last

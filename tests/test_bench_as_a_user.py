"""`python -m bench` as a user runs it: it measures an installed fastcore when the checkout has no
in-place build (it used to skip every fastcore server), and a default run writes new result files
instead of the committed bench/RESULTS.md and chart. Skipped where bench/ is not beside the tests
(the installed-wheel run of .ci/run copies only tests/ and pyext/)."""
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from conftest import PROJECT_ROOT

run = pytest.importorskip("bench.run")

TIMEOUT = 20.0


def test_a_default_run_does_not_overwrite_the_committed_results():
    args = run.parse_args([])
    assert re.fullmatch(r"results-\d{8}-\d{6}\.md", os.path.basename(args.markdown)), args.markdown
    assert os.path.splitext(args.chart)[0] == os.path.splitext(args.markdown)[0]
    updating = run.parse_args(["--update-results"])
    assert os.path.basename(updating.markdown) == "RESULTS.md" and os.path.basename(updating.chart) == "RESULTS.png"
    assert run.parse_args(["--from-json", "/tmp/x/results-1.json"]).markdown == "/tmp/x/results-1.md"


def test_the_targets_table_names_what_each_target_shows():
    report = pytest.importorskip("bench.report")
    table = report.targets_table({})
    assert "issue" not in table and "| target | what it shows |" in table


def test_an_installed_fastcore_is_measured_when_the_checkout_is_not_built(tmp_path):
    """A checkout without an in-place build: its fastcore/ source folder must not hide the
    installed package. Here the 'installed' fastcore is this test run's own (on PYTHONPATH, or in
    site-packages for the wheel run); the copied checkout's fastcore/ has no extension."""
    import fastcore._core
    installed = os.path.realpath(fastcore._core.__file__)
    checkout = tmp_path / "checkout"
    shutil.copytree(os.path.join(PROJECT_ROOT, "bench"), checkout / "bench",
                    ignore=shutil.ignore_patterns("__pycache__", "results-*", "RESULTS.png"))
    (checkout / "fastcore").mkdir()
    (checkout / "fastcore" / "__init__.py").write_text("raise ImportError('the unbuilt source folder was imported')\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(installed)))
    servers_py = str(checkout / "bench" / "servers.py")

    which = subprocess.run([sys.executable, servers_py, "--which-fastcore"], cwd=checkout, env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert which.returncode == 0, which.stderr
    assert which.stdout.strip() == installed

    # And it serves: the fastcore-wsgi launcher over a real socket.
    child = subprocess.Popen([sys.executable, servers_py, "fastcore-wsgi", "--port", "0"], cwd=checkout, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = child.stdout.readline()
        if ready.startswith("FASTCORE\t"):                # which build answers (bench/servers.py)
            ready = child.stdout.readline()
        assert ready.startswith("READY "), (ready, child.stderr.read() if child.poll() is not None else "")
        port = int(ready.split()[1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.read() == b"Hello, World!"
    finally:
        child.terminate()
        child.wait(10)
        child.stdout.close()
        child.stderr.close()

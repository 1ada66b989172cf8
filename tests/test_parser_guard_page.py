"""The parser never reads past its input, proven as picohttpparser's test.c proves it: the input ends
right before an unreadable (PROT_NONE) page, so a read of one byte too many is a SIGSEGV.

The work is done by tests/fuzz/guard_page.py (its docstring lists the inputs and the ways they
arrive), in a child process: a crash then fails this test, naming the input being parsed, instead
of killing the whole pytest run.
"""
import os
import signal
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT, child_env

GUARD_PAGE_SCRIPT = os.path.join(PROJECT_ROOT, "tests", "fuzz", "guard_page.py")
# A few seconds on a release build; a sanitizer build (.ci/run) is several times slower.
CHILD_TIMEOUT = 150


@pytest.mark.hang_timeout(CHILD_TIMEOUT + 30)
def test_parser_never_reads_past_its_input(tmp_path):
    current_input = tmp_path / "current-input"
    child = subprocess.run([sys.executable, GUARD_PAGE_SCRIPT, "--current-input", str(current_input)],
                           env=child_env(), cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=CHILD_TIMEOUT)
    if child.returncode < 0:
        parsing = current_input.read_text() if current_input.exists() else "(before the first input)"
        pytest.fail(f"the guard-page run was killed by {signal.Signals(-child.returncode).name} while "
                    f"parsing {parsing}\n{child.stderr[-4000:]}")
    assert child.returncode == 0, child.stderr[-4000:]
    assert child.stdout.startswith("guard page: "), child.stdout

"""The GIL claim, checked on the generated C: no function the threads run without the GIL touches
the Python C-API. Cython compiles pyext/_core.pyx afresh here; for every function declared
`noexcept nogil` in pyext/, the C body must not take the GIL (PyGILState_Ensure), report an
unraisable error, build a traceback, or touch a reference count. The one function allowed to take
the GIL is worker_run_python_batch, the boundary where Python handlers are called."""
import pathlib
import re
import subprocess
import sys

import pytest

PYEXT = pathlib.Path(__file__).resolve().parent.parent / "pyext"
PYTHON_API_MARKERS = re.compile(
    r"PyGILState_Ensure|__Pyx_WriteUnraisable|__Pyx_AddTraceback|Py_INCREF|Py_DECREF|__Pyx_INCREF|__Pyx_DECREF"
    r"|__Pyx_ErrOccurred|PyErr_Occurred|__Pyx_RaiseException")
GIL_BOUNDARY = {"worker_run_python_batch"}


def nogil_function_names():
    names = set()
    for source in PYEXT.glob("*.p*"):
        for match in re.finditer(r"^cdef [^\n]*?\b(\w+)\([^)]*\)[^\n:]*\bnogil\s*:", source.read_text(), re.M):
            names.add(match.group(1))
    return names


@pytest.fixture(scope="module")
def generated_c(tmp_path_factory):
    pytest.importorskip("Cython")
    out = tmp_path_factory.mktemp("cython") / "_core.c"
    subprocess.run([sys.executable, "-m", "cython", "-3", str(PYEXT / "_core.pyx"), "-o", str(out)],
                   check=True, capture_output=True, timeout=300)
    return out.read_text()


def function_bodies(c_source):
    for match in re.finditer(r"\nstatic [^\n;]*?__pyx_f_5_core_(\w+)\([^;{]*\) \{", c_source):
        end = c_source.find("\n}\n", match.start())
        yield match.group(1), c_source[match.start():end]


def test_the_threads_have_nogil_functions_to_check():
    names = nogil_function_names()
    assert {"worker_loop", "listener_loop", "serve_buffered_requests", "parse_head", "conn_flush"} <= names
    # WebSockets: reading frames, control frames (ping, pong, close), UTF-8, inflate and deflate,
    # the server's pings and the native handshake all run on the I/O workers without the GIL.
    assert {"ws_on_readable", "ws_read_frames", "ws_control_frame", "ws_unmask", "utf8_feed", "ws_inflate",
            "ws_deflate", "ws_on_timeout", "ws_accept_native", "ws_handshake_check", "ws_drain_outbox"} <= names


def test_no_nogil_function_touches_the_python_c_api(generated_c):
    nogil = nogil_function_names()
    offenders = {}
    for name, body in function_bodies(generated_c):
        if name in nogil and name not in GIL_BOUNDARY:
            hits = sorted(set(PYTHON_API_MARKERS.findall(body)))
            if hits:
                offenders[name] = hits
    assert offenders == {}


def test_only_the_python_batch_takes_the_gil(generated_c):
    takers = {name for name, body in function_bodies(generated_c) if "PyGILState_Ensure" in body}
    assert takers == GIL_BOUNDARY

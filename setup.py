"""Build the compiled core: pyext/_core.pyx (and the .pxi fragments it includes) -> fastcore._core.

FASTCORE_DEBUG=1 builds at -O0 -g without -DNDEBUG, with the per-server debug counters that the test
fixtures check (docs/ARCHITECTURE.md, "Counters, stats and the debug build"), for development.
FASTCORE_SANITIZE=1 builds that debug build under AddressSanitizer and UndefinedBehaviorSanitizer
(-O1, as the sanitizers recommend, so a run stays fast enough for CI). CPython itself is not built
with ASan, so the runtime must be preloaded: run Python through .ci/sanitized (README.md,
"Memory-safety checks").
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

sanitize = os.environ.get("FASTCORE_SANITIZE") == "1"
debug = os.environ.get("FASTCORE_DEBUG") == "1" or sanitize
# -fno-sanitize-recover: an undefined-behaviour report aborts, as an ASan report does, whatever
# UBSAN_OPTIONS says, so no report can scroll by in a passing run.
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]

if sanitize:
    extra_compile_args, extra_link_args = ["-O1", "-g"] + SANITIZER_FLAGS, SANITIZER_FLAGS
elif debug:
    extra_compile_args, extra_link_args = ["-O0", "-g"], []
else:
    extra_compile_args, extra_link_args = ["-O2", "-DNDEBUG"], []

extension = Extension(
    "fastcore._core",
    sources=["pyext/_core.pyx"],
    extra_compile_args=extra_compile_args + ["-Wno-unused-function"],
    extra_link_args=extra_link_args,
    # The debug build counts, per server, live allocations, descriptors, epoll registrations and
    # illegal state machine events (Core.debug_counters, fastcore._core.debug_counters).
    define_macros=[("FASTCORE_DEBUG", "1")] if debug else [],
)

setup(
    ext_modules=cythonize(
        [extension],
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
        annotate=False,
    ),
)

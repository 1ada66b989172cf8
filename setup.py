"""Build the compiled core: pyext/_core.pyx (and the .pxi fragments it includes) -> fastcore._core.

FASTCORE_DEBUG=1 builds at -O0 -g without -DNDEBUG, with the per-server debug counters that the test
fixtures check (docs/ARCHITECTURE.md, "Counters, stats and the debug build"), for development.
FASTCORE_SANITIZE=1 (or =address) builds that debug build under AddressSanitizer and
UndefinedBehaviorSanitizer, FASTCORE_SANITIZE=thread under ThreadSanitizer (the two cannot share a
process); both at -O1, as the sanitizers recommend, so a run stays fast enough for CI. CPython itself
is not built with them, so the runtime must be preloaded: run Python through .ci/sanitized or
.ci/tsan (README.md, "Memory-safety checks").
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

SANITIZER_FLAGS = {
    # -fno-sanitize-recover: an undefined-behaviour report aborts, as an ASan report does, whatever
    # UBSAN_OPTIONS says, so no report can scroll by in a passing run.
    "address": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"],
    # Data races between the core's threads (docs/THREAD_SAFETY.md); .ci/tsan fails on any report.
    "thread": ["-fsanitize=thread", "-fno-omit-frame-pointer"],
}
sanitizer = {"": None, "0": None, "1": "address"}.get(os.environ.get("FASTCORE_SANITIZE", ""),
                                                      os.environ.get("FASTCORE_SANITIZE"))
if sanitizer is not None and sanitizer not in SANITIZER_FLAGS:
    raise SystemExit(f"FASTCORE_SANITIZE={sanitizer!r}: expected 1 (= address), address or thread")
debug = os.environ.get("FASTCORE_DEBUG") == "1" or sanitizer is not None

if sanitizer is not None:
    flags = SANITIZER_FLAGS[sanitizer]
    extra_compile_args, extra_link_args = ["-O1", "-g"] + flags, flags
elif debug:
    extra_compile_args, extra_link_args = ["-O0", "-g"], []
else:
    extra_compile_args, extra_link_args = ["-O2", "-DNDEBUG"], []

extension = Extension(
    "fastcore._core",
    sources=["pyext/_core.pyx"],
    extra_compile_args=extra_compile_args + ["-Wno-unused-function"],
    extra_link_args=extra_link_args,
    libraries=["z"],                  # zlib: WebSocket permessage-deflate (websocket_deflate.pxi)
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
        # Sanitizer reports (and gdb) then name pyext/*.pxi lines instead of the generated C.
        emit_linenums=sanitizer is not None,
    ),
)

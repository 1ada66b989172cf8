"""Build the compiled core: pyext/_core.pyx (and the .pxi fragments it includes) -> fastcore._core.

FASTCORE_DEBUG=1 builds without -O2 and with C asserts, for development.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("FASTCORE_DEBUG") == "1"
extra_compile_args = ["-O0", "-g"] if debug else ["-O2", "-DNDEBUG"]

extension = Extension(
    "fastcore._core",
    sources=["pyext/_core.pyx"],
    extra_compile_args=extra_compile_args + ["-Wno-unused-function"],
    # The debug build counts live allocations (fastcore._core.debug_counters) and keeps C asserts.
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

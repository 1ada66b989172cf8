"""How the compiled module was built: optimized, and the debug counters only in a debug build."""
import os
import re
import shutil
import subprocess

import pytest

from fastcore import _core


def compile_flags():
    """The flags gcc recorded in the module's debug info (DW_AT_producer), when it kept them."""
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed")
    dump = subprocess.run(["readelf", "--debug-dump=info", _core.__file__], capture_output=True,
                          text=True, timeout=120).stdout
    producer = re.search(r"DW_AT_producer\s*:.*?: (GNU C.*)", dump)
    if producer is None:
        pytest.skip("the module carries no DW_AT_producer (stripped or built without -g)")
    return producer.group(1).split()


@pytest.mark.skipif(_core.debug_counters() is not None, reason="a debug build is -O0 on purpose")
def test_the_module_is_built_with_optimization():
    optimization = [flag for flag in compile_flags() if re.fullmatch(r"-O\d|-Os|-Ofast", flag)]
    assert optimization and optimization[-1] in ("-O2", "-O3", "-Ofast")   # the last one wins


@pytest.mark.skipif(not os.environ.get("FASTCORE_TEST_INSTALLED"), reason="checks the installed wheel")
def test_the_installed_wheel_is_a_release_build():
    assert _core.debug_counters() is None

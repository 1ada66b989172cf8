"""Coverage-guided fuzzing of the compiled WebSocket receive path (not part of CI: minutes to hours).

    # a build whose C is instrumented for libFuzzer's coverage (clang; atheris from PyPI):
    CC=clang LDSHARED="clang -shared" CFLAGS="-fsanitize=fuzzer-no-link -g" python setup.py build_ext --inplace
    python bench/fuzz_websocket.py CORPUS_DIR -max_total_time=600

The input's first byte picks the options (permessage-deflate, context takeover, the piece size the
stream is fed in, a small or large ws_max_size); the rest is the byte stream a client sends. The
harness is fastcore._core.ws_receive_for_test (the worker's frame reader, without a socket), so
libFuzzer steers by the C code's own branches. A crash or an abort is a finding; to check the
inputs found for over-reads and leaks, replay the corpus under the sanitizer build:

    FASTCORE_SANITIZE=1 python setup.py build_ext --inplace --force
    .ci/sanitized python bench/fuzz_websocket.py --replay CORPUS_DIR
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZES = (1, 2, 3, 7, 64, 4096)
_core = None


def one_input(data):
    if not data:
        return
    options, stream = data[0], bytes(data[1:])
    _core.ws_receive_for_test(stream, (SIZES[options % len(SIZES)],), 256 if options & 0x40 else 1 << 16,
                              bool(options & 0x80), bool(options & 0x20), 9 + (options >> 3) % 7)


def replay(directory):
    names = sorted(os.listdir(directory))
    for name in names:
        with open(os.path.join(directory, name), "rb") as source:
            one_input(source.read())
    print(f"replayed {len(names)} inputs from {directory}")


def load_core():
    global _core
    from fastcore import _core


if __name__ == "__main__":
    if sys.argv[1:2] == ["--replay"]:
        load_core()
        replay(sys.argv[2])
    else:
        import ctypes
        import glob

        import atheris
        # The build's coverage hooks are defined by atheris's libFuzzer runtime: load it with its
        # symbols global before the extension (atheris itself loads it later, privately).
        runtime = glob.glob(os.path.join(os.path.dirname(atheris.__file__), "core_with_libfuzzer*.so"))[0]
        ctypes.CDLL(runtime, mode=ctypes.RTLD_GLOBAL)
        load_core()
        atheris.Setup(sys.argv, one_input, internal_libfuzzer=True)
        atheris.Fuzz()

#!/usr/bin/env python3
"""atheris (libFuzzer) target for fastcore's request parser. Not collected by pytest (no test_
prefix). Invariant (tests/fuzz/invariants.py):

    parse_request returns a request, needs more bytes, or an error status (one of 400, 413, 414,
    417, 431, 501, 505); it never crashes, never reads past the input.

Usage (from the project root; see tests/fuzz/README.md):

    pip install atheris
    mkdir -p /tmp/fastcore-corpus
    python tests/fuzz/fuzz_parser.py /tmp/fastcore-corpus -max_total_time=60 -artifact_prefix=/tmp/fastcore-

An empty corpus directory given as the first argument is seeded with a few valid requests.
A failing input is written to <artifact_prefix>crash-<sha1>; replay it with
    python tests/fuzz/fuzz_parser.py /tmp/fastcore-crash-<sha1>

Input layout: if the first byte is below 0x20, the next four bytes pick small limits
(max_request_line, max_head_size, max_header_count, max_body_size) and the rest is the request;
otherwise the whole input is the request under the default limits.

Coverage note: the parser is a compiled Cython extension built without libFuzzer
instrumentation, so atheris only sees coverage of the Python side; the search is close to
seed-driven random mutation. An instrumented build (CFLAGS="-fsanitize=fuzzer-no-link,address")
makes it coverage-guided; see the README.
"""
import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

with atheris.instrument_imports():
    import invariants  # noqa: E402

SEEDS = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /search?q=a%20b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    b"GET http://h:8080/p?q HTTP/1.1\r\nHost: h:8080\r\nExpect: 100-continue\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=\"q\\\"x\"\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: t\r\n\r\n",
    b"\x05\x10\x40\x03\x08GET / HTTP/1.1\r\nHost: h\r\nA: b\r\nC: d\r\nContent-Length: 9\r\n\r\n123456789",
]


def limits_and_request(buffer):
    if len(buffer) >= 5 and buffer[0] < 0x20:
        limits = {
            "max_request_line": buffer[1],
            "max_head_size": buffer[2] * 4,
            "max_header_count": buffer[3] % 16,
            "max_body_size": buffer[4],
        }
        return limits, buffer[5:]
    return {}, buffer


def TestOneInput(buffer):
    limits, data = limits_and_request(bytes(buffer))
    invariants.check(data, limits, prefixes=(len(data) // 2, len(data) - 1))


def main():
    positional = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if positional and os.path.isdir(positional[0]) and not os.listdir(positional[0]):
        for index, seed in enumerate(SEEDS):
            with open(os.path.join(positional[0], f"seed-{index}"), "wb") as handle:
                handle.write(seed)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

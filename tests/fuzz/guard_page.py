#!/usr/bin/env python3
"""fastcore's request parser over input that ends right before an unreadable page.

fastcore._core.parse_request_at_guard_page (pyext/testing.pxi) copies the input so that its last
byte is the last readable byte before a PROT_NONE page, as picohttpparser's test.c does: a read of
one byte past the input is a SIGSEGV. (parse_request's bytearray has a NUL after its data, so a
one-byte over-read is invisible to the other parser tests.) tests/test_parser_guard_page.py runs
this script in a child process, so a crash fails that test with the input that caused it instead
of killing the pytest run. By hand, from the project root:

    python tests/fuzz/guard_page.py [--current-input FILE] [--examples N]

For every input, under the default limits and under small ones (so that 413, 414 and 431 are
reached by short inputs), the parser runs over: the input whole; the input right after a PROT_NONE
page (a read before the input); the input arriving one byte at a time and seven bytes at a time,
moved before every call to end at the guard page again (the scanner and the chunked decoder
resume from their saved state, as in the workers); and every prefix of the input, whole (every
truncation). Each verdict must equal parse_request's for the same bytes, except that input
arriving in pieces may meet a different error first (a size limit before a bad byte further on).

The inputs: the fixed requests of tests/test_parser_differential.py and tests/test_parser_fuzz.py,
every byte value after a request line and inside a field value, and a derandomized hypothesis draw
(the same on every run) of valid requests, mutated requests and HTTP-shaped byte soup.

`--current-input FILE`: before each input, its repr is written to FILE, so whoever sees this
process crash can say on which input.

Not a test module (no test_ prefix): pytest does not collect it.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path[:0] = [os.path.dirname(TESTS), TESTS, HERE]

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fastcore._core import parse_request, parse_request_at_guard_page  # noqa: E402
from http_strategies import mutated_requests, valid_requests  # noqa: E402

SMALL_LIMITS = dict(max_request_line=24, max_head_size=96, max_header_count=3, max_body_size=16)
LIMIT_SETS = ({}, SMALL_LIMITS)
ARRIVALS = ({}, {"at_page_start": True}, {"step": 1}, {"step": 7})
# Inputs longer than this have their prefixes checked around every CR and LF and at a stride, not
# at every length: every prefix of a 33 kB head would cost seconds and find nothing new.
EVERY_PREFIX_UP_TO = 2048


def fixed_inputs():
    """The hand-written requests of the other parser tests, and every byte in the places where
    the parser branches on it."""
    import test_parser_differential as differential
    import test_parser_fuzz as fuzz
    inputs = list(differential.SPLIT_REQUESTS)
    inputs += differential.EXPECTED_DIFFERENCE_EXAMPLES.values()
    inputs += [param.values[0] for param in differential.FIXED_BUG_EXAMPLES]
    inputs.append(fuzz.LONG_CHUNK_LINE)
    chunked = differential.CHUNKED
    inputs += [
        b"", b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"GET", b"GET ", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999999999999999\r\n\r\n",
        chunked + b"fffffffffffffff\r\n", chunked + b"ffffffffffffffff\r\n", chunked + b"5\r\nhello",
        chunked + b"5\r\nhello\r", chunked + b"5\r\nhelloXY", chunked + b"0\r\nX: y\r\n", chunked + b"0\r\n\r",
        chunked + b'1;a="\\', chunked + b'1;a="x', chunked + b"1;a=", chunked + b"1 ;", chunked + b"1;",
        b"GET /" + b"a" * 8185 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 100 + b"\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 33000 + b"\r\n\r\n",
    ]
    for byte in range(256):
        inputs.append(bytes([byte]))
        inputs.append(b"GET / HTTP/1.1\r\n" + bytes([byte]))
        inputs.append(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + bytes([byte]) + b"\r\n\r\n")
        inputs.append(chunked + b"1" + bytes([byte]))
    return inputs


def prefix_lengths(data):
    if len(data) <= EVERY_PREFIX_UP_TO:
        return range(len(data))
    lengths = set(range(0, len(data), 61)) | set(range(len(data) - 8, len(data)))
    for i, byte in enumerate(data):
        if byte in (10, 13):
            lengths.update(range(max(0, i - 1), min(len(data), i + 3)))
    return sorted(lengths)


def summary(result):
    """The part of a verdict both functions report: kind, and status or where the request ends."""
    kind, value = result
    if kind == "ok":
        return kind, (value["head_length"], value["request_length"], value["body"])
    return result


class Checker:
    def __init__(self, current_input_path=None):
        self.current = os.open(current_input_path, os.O_WRONLY | os.O_CREAT, 0o644) if current_input_path else None
        self.inputs = self.parses = 0

    def note(self, data, limits):
        if self.current is not None:
            os.ftruncate(self.current, 0)
            os.pwrite(self.current, f"{data!r} under limits {limits or 'default'}".encode(), 0)

    def check(self, data):
        self.inputs += 1
        for limits in LIMIT_SETS:
            self.note(data, limits)
            expected = summary(parse_request(data, **limits))
            for arrival in ARRIVALS:
                got = summary(parse_request_at_guard_page(data, **arrival, **limits))
                if arrival.get("step") and expected[0] == "error" == got[0]:
                    continue        # which error comes first may depend on arrival: a limit, then a bad byte
                assert got == expected, (data, limits, arrival, got, expected)
            for k in prefix_lengths(data):
                prefix = data[:k]
                got = summary(parse_request_at_guard_page(prefix, **limits))
                assert got == summary(parse_request(prefix, **limits)), (prefix, limits, got)
            self.parses += len(ARRIVALS) + len(prefix_lengths(data))


def run_generated(checker, examples):
    from test_parser_fuzz import http_soup
    inputs = st.one_of(valid_requests(max_body=48).map(lambda generated: generated.data),
                       mutated_requests(max_body=48).map(lambda mutated: mutated.data),
                       http_soup)

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs)
    def generated(data):
        checker.check(data)

    generated()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--current-input", help="file that holds the input being parsed")
    parser.add_argument("--examples", type=int, default=200, help="hypothesis-generated inputs (default 200)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    checker = Checker(args.current_input)
    for data in fixed_inputs():
        checker.check(data)
    run_generated(checker, args.examples)
    print(f"guard page: {checker.inputs} inputs, {checker.parses} parses at the guard page, "
          f"{time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()

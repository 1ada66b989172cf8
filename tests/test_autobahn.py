"""The Autobahn|Testsuite cases (RFC 6455 conformance, permessage-deflate) against the echo ASGI app,
on both engines, through kosoku (the Autobahn fuzzing client's cases in a Rust runner).

Which cases:
  * in CI (the default), CI_CASES: every case of 1.* to 7.* (framing, pings, reserved bits, opcodes,
    fragmentation, UTF-8, closing), and a sample of 9.* (large messages), 10.*, 12.* and 13.*
    (permessage-deflate, each offer), chosen to stay within about a minute for both engines together
    on the 2-core CI machine (measured against uvicorn: see CI_CASES);
  * with FASTCORE_AUTOBAHN=full, FULL_CASES: 1-7, 9, 10, 12 and 13 whole, the issue's bar (the
    bench/soak job; 9.* sends messages of up to 16 MiB, so this takes minutes).

What passes: every case's verdict (behavior, and behavior_close) is OK, except where the Autobahn
report itself allows a weaker verdict:
  * NON-STRICT for 3.2-3.4, 4.1.3-4.1.5, 4.2.3-4.2.5 and 5.15: a valid message followed by a bad
    frame in the same write; the server may fail the connection before its echo of the valid message
    left (reading the whole write at once), and RFC 6455 requires only the failing;
  * NON-STRICT for 6.4.1-6.4.4: invalid UTF-8 found at the end of a frame rather than at the byte
    (the RFC says "as soon as", the report calls frame granularity non-strict);
  * INFORMATIONAL for 7.1.6 and 7.13.*, whose verdicts are informational only (behaviour the RFC
    leaves open: a large message queued before a close, close codes 5000 and above).
kosoku's own `passed` accepts NON-STRICT and INFORMATIONAL anywhere; this test is stricter, and prints
every case it refuses with what Autobahn said about it.

The same runner checks any server by hand (it is how the suite was validated before the engines
existed):  python tests/test_autobahn.py ws://127.0.0.1:8000/ [full] [--concurrency N]
"""
import asyncio
import fnmatch
import os
import sys
import time

import pytest

from fastcore import _core
from websocket_support import echo_app, skip_unless_websockets

ASGI_LIFESPAN = "off"

# On this machine this subset ran in 12 s against uvicorn --ws websockets and 9 s against granian
# (whose 12.*/13.* end at once: no permessage-deflate); the full run took 11 min against uvicorn. So
# both engines stay within the minute even at uvicorn's speed. 1.* to 7.*: whole (0.3 s,
# except 6.4.*: about 6 s of the cases' own waits, kept because they are the fail-fast UTF-8 checks).
# 9.*: the 64 KiB and 256 KiB sizes of 9.1/9.2, the first of 9.5 to 9.8 (the 1-16 MiB sizes, and
# 9.3/9.4's 4 MiB in 64-byte fragments, are for the full run). 12.* and 13.*: one case of each
# group (each group is one permessage-deflate offer, the case number a message size), rotating the
# size, about 0.2 to 0.8 s each.
CI_CASES = [
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*",
    "9.1.1", "9.1.2", "9.2.1", "9.2.2", "9.5.1", "9.6.1", "9.7.1", "9.8.1",
    "10.1.1",
    "12.1.1", "12.2.2", "12.3.3", "12.4.4", "12.5.5",
    "13.1.1", "13.2.2", "13.3.3", "13.4.4", "13.5.5", "13.6.1", "13.7.5",
]
FULL_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*"]

# Weaker verdicts the Autobahn report accepts for these cases (see the top comment).
NON_STRICT_ALLOWED = ["3.2", "3.3", "3.4", "4.1.3", "4.1.4", "4.1.5", "4.2.3", "4.2.4", "4.2.5", "5.15",
                      "6.4.1", "6.4.2", "6.4.3", "6.4.4"]
INFORMATIONAL_ALLOWED = ["7.1.6", "7.13.*"]

# 9.* sends up to 16 MiB in one message and 12.*/13.* compress up to 256 KiB ones: ws_max_size must
# let them through (the default is 16 MiB: 16 MiB plus headroom for a frame-size check at the edge).
WS_MAX_SIZE = 32 * 1024 * 1024
FULL = os.environ.get("FASTCORE_AUTOBAHN", "").lower() == "full"


def selected_cases():
    return FULL_CASES if FULL else CI_CASES


def _matches(case_id, patterns):
    return any(fnmatch.fnmatchcase(case_id, pattern) for pattern in patterns)


def acceptable(result):
    """None when the case's verdicts pass, else why not (one line)."""
    case_id = result.case_id
    allowed = {"OK"}
    if _matches(case_id, NON_STRICT_ALLOWED):
        allowed.add("NON-STRICT")
    if _matches(case_id, INFORMATIONAL_ALLOWED):
        allowed.add("INFORMATIONAL")
    behavior, close = result.behavior.value, result.behavior_close.value
    if behavior in allowed and close in allowed:
        return None
    return (f"{case_id}: behavior {behavior} ({result.result}); close {close} ({result.result_close}); "
            f"close codes sent {result.local_close_code} / received {result.remote_close_code}; "
            f"{result.description.strip()[:160]}")


def run_cases(url, cases, concurrency=1):
    """Run the cases against `url`: (results, seconds). kosoku raises FailureError when a case does
    not pass by its own rules; the results it carries are judged here like the others."""
    import kosoku
    started = time.monotonic()
    try:
        results = asyncio.run(kosoku.run_fuzzingclient(url, cases, None, concurrency))
    except kosoku.FailureError as error:
        results = error.results
    return list(results), time.monotonic() - started


def summary(results, seconds):
    counts = {}
    for result in results:
        key = f"{result.behavior.value}/{result.behavior_close.value}"
        counts[key] = counts.get(key, 0) + 1
    return f"{len(results)} cases in {seconds:.1f} s: " + ", ".join(f"{n} {key}" for key, n in sorted(counts.items()))


def unmatched(cases, results):
    """The case patterns no result answers: a case that did not run at all."""
    return [pattern for pattern in cases if not any(fnmatch.fnmatchcase(r.case_id, pattern) for r in results)]


# CI runs the suite four times (in place, the installed wheel, the debug build, the debug build with
# handler threads). The cases run in the first only (about 20 s): the wheel is the same code, an
# ASGI server has no handler threads, and the debug build's leak counters are checked on the same
# protocol errors and closes by tests/test_websocket.py, in a fraction of the time (CI is near its
# 25-minute budget).
REPEATED_RUN = bool(os.environ.get("FASTCORE_TEST_INSTALLED") or os.environ.get("FASTCORE_TEST_HANDLER_THREADS")
                    or _core.debug_counters() is not None)


@pytest.mark.hang_timeout(1800 if FULL else 120)
def test_autobahn_cases(asgi_server, engine):
    pytest.importorskip("kosoku")
    skip_unless_websockets(engine)
    if REPEATED_RUN and not FULL:
        pytest.skip("the Autobahn cases run in CI's first stage only (see REPEATED_RUN)")
    srv = asgi_server(echo_app, ws_max_size=WS_MAX_SIZE, ws_per_message_deflate=True)
    cases = selected_cases()
    results, seconds = run_cases(f"ws://127.0.0.1:{srv.port}/", cases)
    print(f"Autobahn {'full' if FULL else 'CI subset'} on {engine}: {summary(results, seconds)}")
    refused = [line for line in map(acceptable, results) if line]
    assert not refused, f"{len(refused)} of {len(results)} Autobahn cases failed:\n" + "\n".join(refused)
    assert not unmatched(cases, results), f"no result for {unmatched(cases, results)}"


def main(argv):
    """python tests/test_autobahn.py URL [full] [--concurrency N]: the same cases and verdicts
    against a server you started (exit status 1 when a case fails)."""
    url = argv[0]
    cases = FULL_CASES if "full" in argv[1:] else CI_CASES
    concurrency = int(argv[argv.index("--concurrency") + 1]) if "--concurrency" in argv else 1
    results, seconds = run_cases(url, cases, concurrency)
    print(summary(results, seconds))
    refused = [line for line in map(acceptable, results) if line]
    for line in refused:
        print("FAILED", line)
    slowest = sorted(results, key=lambda result: -result.duration)[:5]
    print("slowest:", ", ".join(f"{r.case_id} {r.duration} ms" for r in slowest))
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The compiled connection state machine (pyext/protocol.pxi), driven without sockets.

fastcore._core.ProtocolHarness holds one worker and one connection whose fd is an eventfd, and
reports events through conn_transition(), the function the workers call. For every phase and every
event: a legal event leads where the table says, with the epoll interest the kernel really has
(/proc/self/fdinfo) and the timer the phase implies; an illegal one changes nothing. Then the close
policy and the keep-alive decision. The behaviour these add up to is tested over real sockets
everywhere else; tests/test_protocol_tables.py compares this table with the pure engine's.
"""
import collections
import os

import pytest

from fastcore import _core

PHASES = _core.PHASE_NAMES
EVENTS = _core.EVENT_NAMES
TABLE = _core.protocol_table()

# What each phase waits on (protocol.pxi's phase table): epoll interest, timer, and whether
# re-entering the phase starts its timer again. None: left as it was (FLUSHING lasts one loop turn).
INTEREST = {"IDLE": "IN", "HEAD": "IN", "BODY": "IN", "HANDLER": "IN", "STREAMING": "IN",
            "SENDING": "OUT", "LINGERING": "IN", "WEBSOCKET": "IN", "WS_PAUSED": None}
TIMER = {"IDLE": "IDLE", "HEAD": "HEADER", "BODY": "BODY", "HANDLER": "NONE", "STREAMING": "NONE",
         "SENDING": "WRITE", "LINGERING": "LINGER", "CLOSED": "NONE", "WS_PAUSED": "NONE"}
REARMED_ON_ENTRY = {"IDLE", "BODY", "LINGERING"}


def path_to(phase):
    """The shortest list of legal events leading from NEW to `phase` (breadth-first over the table)."""
    paths = {"NEW": []}
    queue = collections.deque(["NEW"])
    while queue:
        current = queue.popleft()
        for event in EVENTS:
            target = TABLE[current, event]
            if target is not None and target not in paths:
                paths[target] = paths[current] + [event]
                queue.append(target)
    return paths[phase]


def harness_in(phase):
    harness = _core.ProtocolHarness()
    for event in path_to(phase):
        assert harness.fire(event), (phase, event)
    assert harness.phase == phase
    return harness


def kernel_interest(harness):
    """What the kernel has registered for the harness's fd: "IN", "OUT" or None."""
    with open(f"/proc/self/fdinfo/{harness.epoll_fd}") as info:
        for line in info:
            fields = line.split()
            if fields[:1] == ["tfd:"] and int(fields[1]) == harness.fd:
                events = int(fields[3], 16)
                return "OUT" if events & 0x004 else "IN" if events & 0x001 else "?"
    return None


def test_every_phase_is_reachable_and_only_closed_is_final():
    for phase in PHASES:
        path_to(phase)                                  # KeyError if unreachable
    for phase in PHASES:
        exits = {TABLE[phase, event] for event in EVENTS} - {None}
        assert bool(exits) == (phase != "CLOSED"), phase
        if phase != "CLOSED":
            assert TABLE[phase, "CLOSE"] == "CLOSED", phase


@pytest.mark.parametrize("phase", PHASES)
def test_every_event_in_every_phase(phase):
    for event in EVENTS:
        harness = harness_in(phase)
        before = (harness.phase, harness.interest, harness.timer, harness.deadline_ms)
        target = TABLE[phase, event]
        assert harness.fire(event) == (target is not None), (phase, event)
        if target is None:
            assert (harness.phase, harness.interest, harness.timer, harness.deadline_ms) == before, (phase, event)
            continue
        assert harness.phase == target, (phase, event)
        expected_interest = INTEREST.get(target, before[1])
        assert harness.interest == expected_interest, (phase, event)
        if target != "CLOSED":
            assert kernel_interest(harness) == expected_interest, (phase, event)
        assert harness.timer == TIMER.get(target, before[2]), (phase, event)


def test_illegal_events_are_rejected():
    """A sample of events that would be bugs: the table must refuse them."""
    for phase, event in [("NEW", "ANSWERED"), ("IDLE", "OUTPUT_DRAINED"), ("HANDLER", "HEAD_BYTES"),
                         ("HANDLER", "TO_HANDLER"), ("STREAMING", "OUTPUT_BLOCKED"),
                         ("LINGERING", "ANSWERED"), ("CLOSED", "CLOSE"), ("SENDING", "LINGER"),
                         ("HEAD", "WAIT_REQUEST"), ("HEAD", "ACCEPTED")]:
        assert TABLE[phase, event] is None, (phase, event)
        harness = harness_in(phase)
        assert not harness.fire(event)
        assert harness.phase == phase


def test_the_keep_alive_turn_makes_no_epoll_change():
    """IDLE -> HANDLER -> FLUSHING -> IDLE keeps EPOLLIN throughout: the common path of a
    keep-alive request to Python costs no epoll_ctl."""
    harness = harness_in("IDLE")
    for event in ("TO_HANDLER", "ANSWERED", "WAIT_REQUEST"):
        assert harness.fire(event)
        assert harness.interest == "IN" == kernel_interest(harness)


def test_with_handler_threads_the_keep_alive_turn_makes_no_epoll_change_either():
    """Python beside the I/O (handler threads, ASGI): the connection keeps its registration while
    it is away, so the common turn costs no epoll_ctl there either."""
    harness = _core.ProtocolHarness(python_off_workers=True)
    for event in path_to("IDLE"):
        assert harness.fire(event)
    assert harness.interest == "IN" == kernel_interest(harness)
    for event in ("TO_HANDLER", "ANSWERED", "WAIT_REQUEST"):
        assert harness.fire(event)
        assert harness.interest == "IN" == kernel_interest(harness)


def test_an_event_while_away_takes_the_connection_out_until_it_comes_back():
    """Level-triggered, a client's bytes or FIN would wake the worker at every epoll_wait while a
    handler thread has the connection: the first such event takes it out of the set, and the
    phase after the answer puts it back."""
    harness = _core.ProtocolHarness(python_off_workers=True)
    for event in path_to("IDLE"):
        assert harness.fire(event)
    assert harness.fire("TO_HANDLER")
    harness.hand_away()
    harness.event_while_away()
    assert harness.interest is None is kernel_interest(harness)
    harness.event_while_away()                          # a second event (it cannot come) changes nothing
    assert harness.interest is None is kernel_interest(harness)
    assert harness.fire("ANSWERED")                     # the handler thread's answer
    assert harness.interest is None is kernel_interest(harness)
    harness.hand_away(False)
    assert harness.fire("WAIT_REQUEST")
    assert harness.interest == "IN" == kernel_interest(harness)


def test_with_handler_threads_an_out_registration_leaves_when_python_takes_the_connection():
    """A streamed response's part went out through SENDING (OUT): handed back to Python for the
    next part, it leaves the set at once; kept, the writable socket would wake the worker."""
    harness = _core.ProtocolHarness(python_off_workers=True)
    for event in path_to("IDLE") + ["TO_HANDLER", "ANSWERED", "OUTPUT_BLOCKED", "OUTPUT_DRAINED"]:
        assert harness.fire(event), event
    assert (harness.phase, harness.interest) == ("FLUSHING", "OUT") and kernel_interest(harness) == "OUT"
    assert harness.fire("STREAM_MORE")
    assert harness.interest is None is kernel_interest(harness)


def adopted():
    harness = _core.ProtocolHarness()
    harness.adopt()
    assert (harness.phase, harness.timer) == ("HEAD", "HEADER")
    assert harness.interest is None is kernel_interest(harness)
    return harness


def test_an_adopted_connection_answered_and_closed_at_once_never_enters_epoll():
    """Adoption reads at once, before any epoll_ctl: a request that was there is answered and the
    connection closed without an EPOLL_CTL_ADD (nor the DEL of its close), through Python or not."""
    for path in (("ANSWERED", "CLOSE"), ("TO_HANDLER", "ANSWERED", "CLOSE")):
        harness = adopted()
        for event in path:
            assert harness.fire(event), path
            assert harness.interest is None is kernel_interest(harness), (path, event)


@pytest.mark.parametrize("path, interest", [
    (("HEAD_BYTES",), "IN"),                            # part of a head came with the connect
    (("BODY_BYTES",), "IN"),
    (("ANSWERED", "WAIT_REQUEST"), "IN"),               # answered, kept alive
    (("TO_HANDLER", "ANSWERED", "WAIT_REQUEST"), "IN"),
    (("ANSWERED", "OUTPUT_BLOCKED"), "OUT"),            # the answer did not all go out
    (("ANSWERED", "LINGER"), "IN"),
])
def test_an_adopted_connection_enters_epoll_when_it_must_wait(path, interest):
    harness = adopted()
    for event in path:
        assert harness.fire(event), path
    assert harness.interest == interest == kernel_interest(harness)


def test_an_adopted_connection_whose_first_read_found_nothing_is_watched():
    harness = adopted()
    deadline = harness.deadline_ms
    assert harness.watch()
    assert harness.interest == "IN" == kernel_interest(harness)
    assert (harness.phase, harness.deadline_ms) == ("HEAD", deadline)
    assert harness.watch()                              # a second call changes nothing
    assert harness.interest == "IN" == kernel_interest(harness)


def test_timers_follow_the_phase():
    harness = harness_in("HEAD")                        # adopted: the header timer runs
    first_deadline = harness.deadline_ms
    harness.advance(100)
    assert harness.fire("HEAD_BYTES")                   # trickling bytes do not extend it
    assert harness.deadline_ms == first_deadline
    assert harness.fire("BODY_BYTES")                   # head parsed: the body timer, from now
    body_deadline = harness.deadline_ms
    harness.advance(100)
    assert harness.fire("BODY_BYTES")                   # every body read starts it again
    assert harness.deadline_ms == body_deadline + 100
    assert harness.fire("TO_HANDLER")                   # the handler's time is not the client's
    assert harness.timer == "NONE" and harness.deadline_ms is None
    assert harness.fire("ANSWERED")
    assert harness.fire("OUTPUT_BLOCKED")
    write_deadline = harness.deadline_ms
    harness.advance(100)
    assert harness.fire("OUTPUT_BLOCKED")               # no progress: the deadline stands
    assert harness.deadline_ms == write_deadline
    assert harness.fire("OUTPUT_BLOCKED", progressed=True)      # progress: it starts again
    assert harness.deadline_ms == write_deadline + 100
    assert harness.fire("OUTPUT_DRAINED")
    assert harness.timer == "WRITE"                     # FLUSHING leaves it: one loop turn only
    assert harness.fire("WAIT_REQUEST")
    assert harness.timer == "IDLE"


@pytest.mark.parametrize("phase", sorted(REARMED_ON_ENTRY - {"LINGERING"}))
def test_phases_that_rearm_on_entry(phase):
    harness = harness_in(phase)
    deadline = harness.deadline_ms
    harness.advance(50)
    event = {"IDLE": "WAIT_REQUEST", "BODY": "BODY_BYTES"}[phase]
    if phase == "IDLE":
        assert harness.fire("ANSWERED")
    assert harness.fire(event)
    assert harness.deadline_ms == deadline + 50


def test_close_policy_only_escalates():
    harness = harness_in("IDLE")
    assert harness.close_policy == "NEVER" and harness.serves_more_requests
    harness.close_after("LINGERING")
    assert harness.close_policy == "LINGERING" and not harness.keep_alive
    harness.close_after("AFTER_RESPONSE")
    assert harness.close_policy == "LINGERING"
    harness.close_after("NEVER")
    assert harness.close_policy == "LINGERING" and not harness.serves_more_requests


@pytest.mark.parametrize("version_minor, close, keep_alive, stopping, expected", [
    (1, False, False, False, True),                     # HTTP/1.1 persists by default
    (1, True, False, False, False),                     # ... unless Connection: close
    (0, False, False, False, False),                    # HTTP/1.0 closes by default
    (0, False, True, False, True),                      # ... unless Connection: keep-alive
    (0, True, True, False, False),                      # close wins
    (1, False, False, True, False),                     # a stopping server answers, then closes
])
def test_keep_alive_decision(version_minor, close, keep_alive, stopping, expected):
    harness = harness_in("HEAD")
    harness.start_request(version_minor, connection_close=close, connection_keep_alive=keep_alive,
                          stopping=stopping)
    assert harness.keep_alive == expected
    assert harness.close_policy == "NEVER"              # the body must still be read
    harness.complete_request()
    assert harness.close_policy == ("NEVER" if expected else "AFTER_RESPONSE")


def test_the_harness_leaves_the_debug_counters_as_it_found_them():
    """The harness takes back the count of an event it fired illegally on purpose, and of its
    epoll registration when it goes, so the fixtures' checks (no illegal event, no registration
    left) stay meaningful for the tests that follow."""
    before = _core.debug_counters()
    harness = harness_in("CLOSED")
    assert not harness.fire("ANSWERED")
    assert os.path.exists(f"/proc/self/fdinfo/{harness.epoll_fd}")
    del harness
    assert _core.debug_counters() == before

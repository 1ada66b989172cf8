"""The two engines' connection state machines cannot drift apart: pyext/protocol.pxi (the compiled
engine) and fastcore/pure/protocol.py (the pure one) each write out the transition table, and the
pure module does not import the compiled one. This file compares, mechanically:

  1. the compiled table as C holds it (fastcore._core.protocol_table(), read back from the array
     conn_transition() indexes) with the pure table, cell by cell, for every (phase, event);
  2. both with the table in protocol.pxi's header comment (and in protocol.py's docstring), parsed
     from its "event  from  to" rows, so the text a reader trusts is the table that runs; and the
     pure per-phase rules (epoll interest, timer) with the header's phase table;
  3. what a transition does beyond the phase: every event, in every (phase, interest, timer) state
     reachable from a new connection, is fired at the compiled engine's own conn_transition()
     (fastcore._core.ProtocolHarness: a worker and a connection whose fd is an eventfd) and at
     fastcore.pure.protocol.transition() (a real pure Conn on a real epoll set and timers.Timers),
     and the resulting phase, epoll interest (also as the kernel has it registered), timer kind
     and deadline must be the same; the pure engine must call epoll only when the interest changes;
  4. the close-policy decisions (close_after, start_request, request_complete), the same way;
  5. an illegal event in a running pure server is counted by its Core.debug_counters(), so the
     fixtures' stop check (tests/conftest.py) fails on it, as it does for the compiled engine.
"""
import ast
import itertools
import os
import re
import select
import socket
import types

import pytest

import fastcore
import fastcore.pure
from conftest import PROJECT_ROOT, ResponseReader, assert_counters_clean, connect, stop_servers, wait_until
from fastcore import _core
from fastcore.pure import protocol, timers
from fastcore.pure.connection import Conn

PROTOCOL_PXI = os.path.join(PROJECT_ROOT, "pyext", "protocol.pxi")
PROTOCOL_PY = protocol.__file__

PHASES = protocol.PHASE_NAMES
EVENTS = protocol.EVENT_NAMES
# An upgraded WebSocket stays in its compiled worker, which reads its frames (pyext/websocket.pxi);
# the pure engine hands it to the event loop instead (fastcore/pure/asgi_websocket.py), as it
# hands a request to a handler thread, so these are the compiled engine's alone. Every other
# cell of the two tables must agree.
COMPILED_ONLY_PHASES = ("WEBSOCKET", "WS_PAUSED")
COMPILED_ONLY_EVENTS = ("WEBSOCKET", "WS_QUEUE_FULL")
COMPILED_PHASES = PHASES + COMPILED_ONLY_PHASES
COMPILED_EVENTS = EVENTS + COMPILED_ONLY_EVENTS
MASK_NAMES = {select.EPOLLIN: "IN", select.EPOLLOUT: "OUT"}
TIMER_NAMES = {kind: name for name, kind in protocol.TIMER_KINDS.items()}


def pure_table():
    """The pure engine's table as transition() reads it: {(phase, event): next phase or None}."""
    table = {}
    for phase_index, phase in enumerate(PHASES):
        for event_index, event in enumerate(EVENTS):
            target = protocol.next_phase(phase_index, event_index)
            table[phase, event] = None if target is None else PHASES[target]
    return table


def differing_cells(left, right):
    return {cell: (left.get(cell), right.get(cell)) for cell in set(left) | set(right)
            if left.get(cell) != right.get(cell)}


def shared_cells(table):
    """The cells both engines have (see COMPILED_ONLY_PHASES)."""
    return {cell: target for cell, target in table.items() if cell[0] in PHASES and cell[1] in EVENTS}


# -- the tables as written in the files' headers -----------------------------------------------------

def pxi_header(path):
    """The comment block that opens a .pxi file, without its '#'."""
    lines = []
    with open(path, encoding="utf-8") as source:
        for line in source:
            if not line.startswith("#"):
                break
            lines.append(line.rstrip("\n")[1:])
    return lines


def docstring_header(path):
    with open(path, encoding="utf-8") as source:
        return ast.get_docstring(ast.parse(source.read()), clean=False).splitlines()


HEADER_SOURCES = {"pyext/protocol.pxi": PROTOCOL_PXI, "fastcore/pure/protocol.py": PROTOCOL_PY}


def header_lines(source):
    """The header of `source` (a key of HEADER_SOURCES), which carries the tables. pyext/ is beside
    tests/ in every CI stage; where it is not (tests run from a copy), its header is skipped."""
    path = HEADER_SOURCES[source]
    if not os.path.exists(path):
        pytest.skip(f"{source} is not beside tests/ here")
    return pxi_header(path) if path.endswith(".pxi") else docstring_header(path)


def table_rows(lines, header_pattern, where):
    """The rows of the table whose header line matches `header_pattern`: every line after it up to
    the first blank one."""
    for index, line in enumerate(lines):
        if re.fullmatch(header_pattern, line):
            rows = []
            for row in lines[index + 1:]:
                if not row.strip():
                    break
                rows.append(row)
            return line, rows
    raise AssertionError(f"{where}: no table header matching {header_pattern!r}")


def phase_list(text, where, phases=PHASES):
    """Phase names as a "from" cell spells them: "A, B, C" or "every phase but X"."""
    every_but = re.fullmatch(r"every phase but (.+)", text)
    names = [name.strip() for name in (every_but.group(1) if every_but else text).split(",") if name.strip()]
    unknown = [name for name in names if name not in phases]
    assert not unknown, f"{where}: unknown phase(s) {unknown} in {text!r}"
    return [phase for phase in phases if phase not in names] if every_but else names


def source_names(source):
    """The phases and events the file `source` names: the compiled engine's or the pure one's."""
    return (COMPILED_PHASES, COMPILED_EVENTS) if source.endswith(".pxi") else (PHASES, EVENTS)


def parse_transitions(lines, where):
    """The "event  from  to  what happened" table: {(phase, event): next phase or None}, with the
    events in the order the table lists them. Columns are cut where the header line puts them; a
    line with an empty event cell continues the row above (its "from" cell, never its "to")."""
    header, rows = table_rows(lines, r"\s*event\s+from\s+to\s+what happened\s*", where)
    event_at, from_at, to_at, what_at = (header.index("event"), header.index("from"),
                                         header.index(" to ") + 1, header.index("what happened"))
    parsed = []
    for row in rows:
        event, sources, target = (row[event_at:from_at].strip(), row[from_at:to_at].strip(),
                                  row[to_at:what_at].strip())
        if event:
            parsed.append([event, sources, target])
        else:
            assert parsed and not target, f"{where}: a continuation line with a target: {row!r}"
            parsed[-1][1] += " " + sources
    phases, events = source_names(where)
    table = {(phase, event): None for phase in phases for event in events}
    for event, sources, target in parsed:
        assert event in events, f"{where}: unknown event {event!r}"
        assert target in phases, f"{where}: unknown target {target!r} of {event}"
        for phase in phase_list(sources, where, phases):
            table[phase, event] = target
    return [event for event, _, _ in parsed], table


def parse_phase_rules(lines, where):
    """The "phase  interest  timer  waiting for" table: {phase: (interest, timer, re-armed)} as the
    text says them: interest "IN", "OUT", "kept" or "-"; timer a TIMER_KINDS name, "kept" or "-";
    re-armed True ("re-armed"), False ("armed once", "re-armed on progress": only by the
    `progressed` flag) or None (not said). Cells are separated by two spaces or more."""
    header, rows = table_rows(lines, r"\s*phase\s+interest\s+timer\s+waiting for\s*", where)
    indent = len(header) - len(header.lstrip())
    rules = {}
    for row in rows:
        if len(row) - len(row.lstrip()) != indent:
            continue                                    # the "waiting for" text goes on
        phase, interest, timer, _ = re.split(r"\s{2,}", row.strip(), maxsplit=3)
        interest = re.sub(r"\s*\(\d\)$", "", interest)
        timer = re.sub(r"\s*\(\d\)$", "", timer)
        kind, _, how = (part.strip() for part in timer.partition(","))
        kind = {"none": "NONE"}.get(kind, kind)
        assert interest in ("IN", "OUT", "kept", "-"), f"{where}: {phase}: interest {interest!r}"
        assert kind in protocol.TIMER_KINDS or kind in ("kept", "-"), f"{where}: {phase}: timer {timer!r}"
        rearmed = {"": None, "re-armed": True, "armed once": False, "re-armed on progress": False}[how]
        rules[phase] = (interest, kind, rearmed)
    return rules


# -- 1 and 2: the tables -------------------------------------------------------------------------------

def test_both_engines_name_the_same_phases_and_events():
    assert _core.PHASE_NAMES == COMPILED_PHASES
    assert _core.EVENT_NAMES == COMPILED_EVENTS


def test_compiled_table_equals_pure_table_cell_by_cell():
    compiled = _core.protocol_table()
    assert set(compiled) == {(phase, event) for phase in COMPILED_PHASES for event in COMPILED_EVENTS}
    differences = differing_cells(shared_cells(compiled), pure_table())
    assert not differences, f"(phase, event): (compiled, pure) where the tables differ: {differences}"


@pytest.mark.parametrize("source", HEADER_SOURCES)
def test_header_table_is_the_table_that_runs(source):
    events, written = parse_transitions(header_lines(source), source)
    assert tuple(events) == source_names(source)[1], f"{source} lists the events {events}"
    differences = differing_cells(written, _core.protocol_table() if source.endswith(".pxi")
                                  else shared_cells(_core.protocol_table()))
    assert not differences, f"(phase, event): ({source}, compiled C table) where they differ: {differences}"
    differences = differing_cells(shared_cells(written), pure_table())
    assert not differences, f"(phase, event): ({source}, pure table) where they differ: {differences}"


@pytest.mark.parametrize("source", HEADER_SOURCES)
def test_header_phase_table_is_the_pure_phase_rules(source):
    """What the header says of each phase's interest and timer is what protocol.PHASE_RULES holds
    (and section 3 below shows the compiled engine does the same). A "-" phase (NEW, CLOSED) gets
    nothing from the state machine: no interest of its own (adoption registers, close()
    deregisters), no timer; NEW is never entered, so its timer is not looked at."""
    written = parse_phase_rules(header_lines(source), source)
    assert tuple(written) == source_names(source)[0], f"{source} lists the phases {tuple(written)}"
    entered = {target for _, _, target in protocol.TRANSITIONS}
    for phase, interest, timer, rearmed in protocol.PHASE_RULES:
        said_interest, said_timer, said_rearmed = written[phase]
        assert interest == {"kept": None, "-": None}.get(said_interest, said_interest), (phase, said_interest)
        if said_timer == "-":
            assert timer == "NONE" or phase not in entered, (phase, said_timer)
        else:
            assert timer == (None if said_timer == "kept" else said_timer), (phase, said_timer)
        if said_rearmed is not None:
            assert rearmed == said_rearmed, (phase, said_rearmed)


def test_pure_tables_are_built_from_the_written_data():
    """TRANSITIONS and PHASE_RULES (what the header tests read) are what transition() indexes."""
    assert [phase for phase, _, _, _ in protocol.PHASE_RULES] == list(PHASES)
    for event, sources, target in protocol.TRANSITIONS:
        for source in sources:
            assert pure_table()[source, event] == target
    assert sum(target is not None for target in pure_table().values()) == \
        sum(len(sources) for _, sources, _ in protocol.TRANSITIONS)


# -- 3: what a transition does, compiled and pure side by side ----------------------------------------

STEP_MS = 250                   # the clock moves this much before every event (exact in binary)


class RecordingEpoll:
    """A select.epoll that remembers the calls the state machine makes on it."""

    def __init__(self):
        self.epoll = select.epoll()
        self.calls = []

    def register(self, fd, mask):
        self.calls.append(("register", mask))
        self.epoll.register(fd, mask)

    def modify(self, fd, mask):
        self.calls.append(("modify", mask))
        self.epoll.modify(fd, mask)

    def fileno(self):
        return self.epoll.fileno()


def kernel_interest(epoll_fd, fd):
    """What the kernel has registered for `fd` in the epoll set: "IN", "OUT" or None."""
    with open(f"/proc/self/fdinfo/{epoll_fd}") as info:
        for line in info:
            fields = line.split()
            if fields and fields[0] == "tfd:" and int(fields[1]) == fd:
                return MASK_NAMES.get(int(fields[3], 16) & (select.EPOLLIN | select.EPOLLOUT))
    return None


class PureHarness:
    """ProtocolHarness's twin for the pure engine: a real Conn (on one end of a socketpair) whose
    worker has what transition() and the decisions use: a real epoll set (recorded), timers.Timers
    with the durations ProtocolHarness gives (kind * 1 s), a clock, a stop flag and a counter."""

    def __init__(self):
        self.sockets = socket.socketpair()
        self.worker = types.SimpleNamespace(
            limits=fastcore.ServerConfig(), epoll=RecordingEpoll(), timers=timers.Timers(1, 2, 3, 4),
            now=1.0, stop_requested=False, illegal_transitions=0, python_queue=[], handler_threads=0,
            python_elsewhere=False, asgi=None)
        self.worker.timers.durations = tuple(float(kind) for kind in range(len(protocol.TIMER_KINDS)))
        self.conn = Conn(self.worker, self.sockets[0], None)

    def close(self):
        self.worker.timers.unlink(self.conn)
        self.worker.epoll.epoll.close()
        for end in self.sockets:
            end.close()

    def fire(self, event, progressed=False):
        result = protocol.transition(self.conn, EVENTS.index(event), progressed)
        assert result in (protocol.LEGAL, protocol.ILLEGAL)
        return result == protocol.LEGAL

    def advance(self, milliseconds):
        self.worker.now += milliseconds / 1000

    @property
    def phase(self):
        return PHASES[self.conn.phase]

    @property
    def interest(self):
        return MASK_NAMES.get(self.conn.interest)

    @property
    def timer(self):
        return TIMER_NAMES[self.conn.timer_kind]

    @property
    def deadline_ms(self):
        kind = self.conn.timer_kind
        return None if kind == timers.NONE else round(self.worker.timers.lists[kind][self.conn] * 1000)

    @property
    def epoll_fd(self):
        return self.worker.epoll.fileno()

    @property
    def fd(self):
        return self.conn.fd


def observe(harness):
    """(phase, interest, timer, deadline) of a harness's connection; its interest is also checked
    against what the kernel has registered."""
    assert kernel_interest(harness.epoll_fd, harness.fd) == harness.interest
    return harness.phase, harness.interest, harness.timer, harness.deadline_ms


def run_both(path):
    """Fire `path` ((event, progressed) pairs) at a fresh connection of each engine; after every
    event both must be in the same state, and the pure engine must have called epoll exactly when
    the interest changed and counted exactly the illegal events. Returns the observed states."""
    compiled, pure = _core.ProtocolHarness(), PureHarness()
    try:
        states = [observe(compiled)]
        assert observe(pure) == states[0], "a new connection differs"
        illegal = 0
        for step, (event, progressed) in enumerate(path):
            compiled.advance(STEP_MS)
            pure.advance(STEP_MS)
            interest_before = pure.conn.interest
            calls_before = len(pure.worker.epoll.calls)
            compiled_result = (compiled.fire(event, progressed), observe(compiled))
            pure_result = (pure.fire(event, progressed), observe(pure))
            assert pure_result == compiled_result, \
                f"after {path[:step + 1]}: pure {pure_result}, compiled {compiled_result}"
            calls = pure.worker.epoll.calls[calls_before:]
            if pure.conn.interest != interest_before:
                assert calls == [("modify" if interest_before else "register", pure.conn.interest)], path
            else:
                assert calls == [], f"an epoll call that changed nothing after {path[:step + 1]}: {calls}"
            illegal += not compiled_result[0]
            states.append(compiled_result[1])
        assert pure.worker.illegal_transitions == illegal
        return states
    finally:
        pure.close()


def test_every_event_in_every_reachable_state_does_the_same_in_both_engines():
    """Breadth-first over the (phase, interest, timer) states a connection can reach from NEW, with
    one path to each; from each, every event with and without `progressed`."""
    paths = {run_both(())[0][:3]: ()}
    frontier = [()]
    while frontier:
        following = []
        for path in frontier:
            for event, progressed in itertools.product(EVENTS, (False, True)):
                extended = path + ((event, progressed),)
                state = run_both(extended)[-1]
                key = state[:3]
                if key not in paths:
                    paths[key] = extended
                    following.append(extended)
        frontier = following
    reached = {phase for phase, _, _ in paths}
    assert reached == set(PHASES), f"phases never reached: {set(PHASES) - reached}"
    # FLUSHING keeps what the phase before it had: reached from a reading phase and from SENDING.
    assert {(interest, timer) for phase, interest, timer in paths if phase == "FLUSHING"} >= {("IN", "IDLE"),
                                                                                            ("OUT", "WRITE")}


# -- 4: the close-policy decisions --------------------------------------------------------------------

POLICY_OPERATIONS = ([("close_after", policy) for policy in protocol.CLOSE_POLICY_NAMES]
                     + [("start_request",) + facts for facts in itertools.product((0, 1), repeat=4)]
                     + [("complete_request",)])


def apply_to_pure(harness, operation):
    conn = harness.conn
    if operation[0] == "close_after":
        protocol.close_after(conn, protocol.CLOSE_POLICY_NAMES.index(operation[1]))
    elif operation[0] == "start_request":
        version_minor, connection_close, connection_keep_alive, stopping = operation[1:]
        conn.parser.message = types.SimpleNamespace(version_minor=version_minor,
                                                    connection_close=bool(connection_close),
                                                    connection_keep_alive=bool(connection_keep_alive))
        harness.worker.stop_requested = bool(stopping)
        protocol.start_request(conn)
    else:
        protocol.request_complete(conn)
    return (protocol.CLOSE_POLICY_NAMES[conn.close_policy], bool(conn.keep_alive),
            protocol.serves_more_requests(conn))


def apply_to_compiled(harness, operation):
    if operation[0] == "close_after":
        harness.close_after(operation[1])
    elif operation[0] == "start_request":
        version_minor, connection_close, connection_keep_alive, stopping = operation[1:]
        harness.start_request(version_minor, connection_close, connection_keep_alive, stopping)
    else:
        harness.complete_request()
    return harness.close_policy, harness.keep_alive, harness.serves_more_requests


def test_close_policy_decisions_are_the_same_in_both_engines():
    """Every sequence of three decisions (escalate to a policy; a head with given facts parsed, the
    server stopping or not; the request complete): the same policy and keep-alive after each."""
    for operations in itertools.product(POLICY_OPERATIONS, repeat=3):
        compiled, pure = _core.ProtocolHarness(), PureHarness()
        try:
            for step, operation in enumerate(operations):
                assert apply_to_pure(pure, operation) == apply_to_compiled(compiled, operation), \
                    operations[:step + 1]
        finally:
            pure.close()


# -- 5: an illegal event in a running pure server fails the fixtures' stop check ----------------------

def test_an_illegal_event_in_a_running_pure_server_fails_the_stop_check(monkeypatch):
    """The pure worker counts an event its connection's phase does not allow, Core.debug_counters()
    reports it, and stop_servers (what the `server` fixtures run at teardown) fails naming it. The
    illegal event is made on purpose: waiting for a request is reported whatever is buffered, and a
    partial head leaves the connection in IDLE, where WAIT_REQUEST is not allowed."""
    monkeypatch.setattr(protocol, "await_input",
                        lambda conn: protocol.transition(conn, protocol.WAIT_REQUEST))
    srv = fastcore.pure.Server(lambda request: b"hello", host="127.0.0.1", port=0, threads=1)
    srv.start()
    core = srv._core
    started = [srv]
    try:
        with connect(srv.port) as client:
            client.sendall(b"GET / HTTP/1.1\r\n")
            assert wait_until(lambda: core.debug_counters()["illegal_transitions"] == 1, 5)
            client.sendall(b"Host: x\r\n\r\n")          # still served: the illegal event changed nothing
            response = ResponseReader(client).read_response()
            assert (response.status, response.body) == (200, b"hello")
    finally:
        with pytest.raises(AssertionError, match="illegal_transitions"):
            stop_servers(started)
    assert core.debug_counters() == {"illegal_transitions": 1}
    with pytest.raises(AssertionError, match=r"'illegal_transitions': 1"):
        assert_counters_clean(core.debug_counters(), "this test's server")

"""fastcore.pure.timers: per-worker timeout lists (header read, body read, keep-alive idle, write,
lingering close).

Theory of operation (as pyext/timers.pxi). A connection is on at most one list, the one for what it
is waiting on. All entries of a list share one duration, so a connection re-armed now has the latest
deadline and goes to the tail: each list stays sorted by deadline with O(1) arm and cancel. The
lists are OrderedDicts (a linked list inside, so the head is found in O(1) however many entries come
and go). The worker sleeps in epoll until the earliest head deadline, then expire() yields every
connection whose deadline has passed. A duration of 0 disables a kind. The linger duration is
not configurable (LINGER_TIMEOUT, as the compiled core's LINGER_TIMEOUT_MS). One exception to
"sorted": a new connection's header deadline counts from its accept (arm_from), bounded as
explained there. At the end: the body's minimum rate, a per-connection deadline checked where the
body is read.
"""
from collections import OrderedDict

NONE, HEADER, BODY, IDLE, WRITE, LINGER = range(6)
KINDS = (HEADER, BODY, IDLE, WRITE, LINGER)

# A lingering close (connection.py) discards what the client still sends for at most this long
# (nginx's lingering_timeout is 5 s): long enough for an upload in flight to stop, short enough
# that a client which never sends FIN cannot hold a connection.
LINGER_TIMEOUT = 2.0


class Timers:
    __slots__ = ("lists", "durations")

    def __init__(self, header_timeout, body_timeout, keepalive_timeout, write_timeout):
        self.lists = [None] + [OrderedDict() for _ in KINDS]
        self.durations = (0.0, float(header_timeout), float(body_timeout), float(keepalive_timeout),
                          float(write_timeout), LINGER_TIMEOUT)

    def unlink(self, conn):
        if conn.timer_kind != NONE:
            del self.lists[conn.timer_kind][conn]
            conn.timer_kind = NONE

    def arm(self, conn, kind, now):
        """Put `conn` on the `kind` list with a fresh deadline (NONE: on no list)."""
        if conn.timer_kind != NONE:
            del self.lists[conn.timer_kind][conn]
            conn.timer_kind = NONE
        if kind == NONE:
            return
        duration = self.durations[kind]
        if duration <= 0:
            return                                      # this kind of timeout is disabled
        conn.timer_kind = kind
        self.lists[kind][conn] = now + duration

    def arm_from(self, conn, kind, start, now):
        """arm(), with the deadline counted from `start` (no later than now): a new connection's
        head is due header_timeout after its accept, not after its adoption. Appended at the tail
        all the same, behind entries armed while it waited in the queue: it then fires late by at
        most that wait, never later than now + duration (timers.pxi: timer_arm_from says why not
        in order)."""
        self.arm(conn, kind, now)
        if conn.timer_kind == kind and start < now:
            self.lists[kind][conn] = start + self.durations[kind]

    def wait(self, now):
        """Seconds until the earliest deadline (0 if one has passed), or -1 when no timer runs."""
        earliest = None
        for kind in KINDS:
            entries = self.lists[kind]
            if entries:
                deadline = entries[next(iter(entries))]
                if earliest is None or deadline < earliest:
                    earliest = deadline
        if earliest is None:
            return -1
        return max(0.0, earliest - now)

    def expire(self, now):
        """Yield (kind, conn) for every connection whose deadline has passed, taking it off its list."""
        for kind in KINDS:
            entries = self.lists[kind]
            while entries:
                conn = next(iter(entries))
                if entries[conn] > now:
                    break
                del entries[conn]
                conn.timer_kind = NONE
                yield kind, conn


# The body's minimum data rate (body_min_rate bytes/s after body_min_rate_grace; timers.pxi has the
# theory): a body of `received` bytes so far is too slow from start + grace + received / rate on. It
# is checked where the body is read: by the worker after each read of a body it buffers
# (connection.py), and by a BodyReader, which waits at most until then (request.py).

def body_rate_start(conn, now, already):
    """A body starts (its head is parsed) at `now`, with `already` of its bytes received."""
    conn.body_started = now
    conn.body_bytes_base = conn.bytes_in - already


def body_rate_deadline(conn):
    """From when the body received so far is below the minimum rate; None when no rate is enforced."""
    worker = conn.worker
    rate = worker.body_min_rate
    if rate <= 0:
        return None
    return conn.body_started + worker.body_min_rate_grace + (conn.bytes_in - conn.body_bytes_base) / rate

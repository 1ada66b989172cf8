"""Hung handlers (`timeout`, gunicorn's --timeout): a handler call that runs longer than `timeout`
seconds has its thread's Python stack logged once, on "fastcore.error", and is counted
(server.stats()["handlers_over_timeout"]); with processes > 1 the supervisor's child then
recycles itself (fastcore.supervisor).

Theory of operation. Nothing is added to the request path: no wrapper around the handler, so the
compiled WSGI path stays as it is and a server without `timeout` runs no code of this module. One
watchdog thread per server looks, every timeout/4 s (at most 1 s apart), at the Python stacks of
the threads that run handlers (sys._current_frames()). A thread's handler frame is the frame called
from one of the engine's handler callers: the code that calls the handler (the compiled engine's
threads enter C from threading.Thread.run or _HandlerThreads.run and call the handler from there;
the pure engine calls it from Conn.answer_with_handler). A thread with no such frame is not
in a handler. The same frame object seen again is the same call still running (a live frame
object is kept while its call runs and a new call gets a new one; holding it here keeps a finished
one from being mistaken for a new call), so a call's age is known to within one look: it is
reported once it has been seen for more than `timeout` seconds.

Not seen: an ASGI app (its requests run as tasks on an event loop, not as handler calls) and a
handler stuck in C code that never releases the GIL (nothing in Python runs then).
"""
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger("fastcore.error")

LONGEST_LOOK_INTERVAL = 1.0
SHORTEST_LOOK_INTERVAL = 0.02


class HandlerWatchdog:
    """Watches the threads `threads()` returns for handler calls older than `timeout` seconds.
    `callers`: code objects of the functions that call handlers. `on_timeout()`, if set, runs (on
    the watchdog thread) after each report."""

    def __init__(self, timeout, threads, callers, name, on_timeout=None):
        self.timeout = float(timeout)
        self.threads = threads
        self.callers = frozenset(callers)
        self.on_timeout = on_timeout
        self.count = 0                                  # handler calls reported
        self.interval = min(max(self.timeout / 4, SHORTEST_LOOK_INTERVAL), LONGEST_LOOK_INTERVAL)
        self._calls = {}                                # thread ident -> [frame, first seen, reported]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._calls.clear()

    def _run(self):
        while not self._stopping.wait(self.interval):
            try:
                self.look(time.monotonic())
            except Exception:                           # never let the watchdog die silently
                log.exception("the handler watchdog failed")

    def _handler_frame(self, frame):
        """The outermost frame of the handler call running on a thread whose innermost frame is
        `frame`, or None when that thread is not in a handler."""
        called = None
        while frame is not None:
            if frame.f_code in self.callers:
                return called
            called = frame
            frame = frame.f_back
        return None

    def look(self, now):
        frames = sys._current_frames()
        calls = {}
        for thread in self.threads():
            ident = thread.ident
            innermost = frames.get(ident)
            handler = self._handler_frame(innermost) if innermost is not None else None
            if handler is None:
                continue
            seen = self._calls.get(ident)
            if seen is None or seen[0] is not handler:
                seen = [handler, now, False]
            calls[ident] = seen
            if not seen[2] and now - seen[1] > self.timeout:
                seen[2] = True
                self.count += 1
                self._report(thread, innermost, now - seen[1])
        self._calls = calls
        del frames

    def _report(self, thread, innermost, age):
        stack = "".join(traceback.format_stack(innermost))
        log.error("a handler has run for %.1f s, more than timeout (%g s), on thread %s; its stack, "
                  "most recent call last:\n%s", age, self.timeout, thread.name, stack.rstrip("\n"))
        if self.on_timeout is not None:
            self.on_timeout()

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

An ASGI app's requests are tasks on one event loop, not handler calls: what hangs there is the
loop itself, blocked by an app that calls something synchronous (time.sleep, a blocking client)
from async code, which stalls every request of the process. LoopWatchdog watches that: every look
it asks the loop to run a heartbeat (call_soon_threadsafe) unless one is still pending; a heartbeat
pending for more than `timeout` seconds means the loop has not run a callback for that long, and
the loop thread's stack (what blocks it) is logged once per episode and counted the same way.

Not seen: a handler stuck in C code that never releases the GIL (nothing in Python runs then).
"""
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger("fastcore.error")

LONGEST_LOOK_INTERVAL = 1.0
SHORTEST_LOOK_INTERVAL = 0.02


class _Watchdog:
    """A thread that calls look(now) every timeout/4 s (at most 1 s apart) until stop(); `count`
    is what it reported, `on_timeout()` (if set) runs on it after each report."""

    def __init__(self, timeout, name, on_timeout=None):
        self.timeout = float(timeout)
        self.on_timeout = on_timeout
        self.count = 0
        self.interval = min(max(self.timeout / 4, SHORTEST_LOOK_INTERVAL), LONGEST_LOOK_INTERVAL)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self):
        while not self._stopping.wait(self.interval):
            try:
                self.look(time.monotonic())
            except Exception:                           # never let the watchdog die silently
                log.exception("the %s failed", type(self).__name__)

    def look(self, now):
        raise NotImplementedError

    def _reported(self, thread, innermost, what):
        """Log `what` with the stack of `thread` (innermost frame `innermost`), count it."""
        self.count += 1
        stack = "".join(traceback.format_stack(innermost)) if innermost is not None else "(no Python frame)\n"
        log.error("%s, more than timeout (%g s), on thread %s; its stack, most recent call last:\n%s",
                  what, self.timeout, thread.name, stack.rstrip("\n"))
        if self.on_timeout is not None:
            self.on_timeout()


class HandlerWatchdog(_Watchdog):
    """Watches the threads `threads()` returns for handler calls older than `timeout` seconds.
    `callers`: code objects of the functions that call handlers."""

    def __init__(self, timeout, threads, callers, name, on_timeout=None):
        super().__init__(timeout, name, on_timeout)
        self.threads = threads
        self.callers = frozenset(callers)
        self._calls = {}                                # thread ident -> [frame, first seen, reported]

    def stop(self):
        super().stop()
        self._calls.clear()

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
                self._reported(thread, innermost, f"a handler has run for {now - seen[1]:.1f} s")
        self._calls = calls
        del frames


class LoopWatchdog(_Watchdog):
    """Watches an ASGI server's event loop (run by `thread`) for a callback, the app's code, that
    keeps it from running anything else for more than `timeout` seconds."""

    def __init__(self, timeout, loop, thread, name, on_timeout=None):
        super().__init__(timeout, name, on_timeout)
        self.loop = loop
        self.thread = thread
        self._asked = None                              # when the pending heartbeat was asked for
        self._episode_reported = False

    def _heartbeat(self):
        self._asked = None                              # (on the loop: it runs callbacks again)
        self._episode_reported = False

    def look(self, now):
        asked = self._asked
        if asked is None:
            self._asked = now
            try:
                self.loop.call_soon_threadsafe(self._heartbeat)
            except RuntimeError:                        # the loop is closed: the server is stopping
                self._asked = None
            return
        if not self._episode_reported and now - asked > self.timeout:
            self._episode_reported = True
            innermost = sys._current_frames().get(self.thread.ident)
            self._reported(self.thread, innermost,
                           f"the ASGI event loop has run no callback for {now - asked:.1f} s (the app blocks it)")

"""Several processes: a parent that forks and supervises children which each run the threaded Server.

    fastcore myapp:app --processes 4 --max-requests 10000 --max-requests-jitter 1000
    fastcore.Server(handler, port=8000, processes=4).serve_forever()

Theory of operation. The parent (this process) never serves. It binds the listening socket once
(fastcore.sockets.open_listening_socket: TCP, unix socket, inherited fd or systemd activation),
then forks the children before any server thread exists in it; each child adopts the inherited
socket through the `fd=` option and runs the ordinary threaded Server.serve_forever. With
`reuse_port=True` (TCP only) the parent instead binds without listening, which only reserves the
port (and resolves port 0), and each child opens its own SO_REUSEPORT socket on that port, so the
kernel spreads connections over the children.

The app is imported in the parent (the command line loads it before serve_forever), so a broken
app fails once, in the parent, with one message; children share its memory copy-on-write. A
restart therefore runs the same code in a fresh process: SIGHUP is not a code reload.

Supervision, on the "fastcore.supervisor" logger:
- a child that dies is replaced; after a death within 1 s of its start the replacement waits
  0.1 s, 0.2 s, 0.4 s, ... (at most 5 s); after 5 such deaths in a row the parent stops the others
  and raises SupervisorError (the command line exits 1);
- SIGTERM / SIGINT: SIGTERM to every child, which stops gracefully (in-flight requests finish
  within shutdown_timeout); a second signal is forwarded too and forces the children's stop.
  The parent returns once all have exited (SIGKILL for any left shutdown_timeout + 10 s later);
- SIGHUP: rolling restart: start a new child, wait until it accepts, then gracefully stop one old
  child and wait for its exit; one at a time, so capacity never drops below `processes`;
- max_requests: in each child a thread polls server.stats()["requests"] once a second; past
  max_requests + random(0..max_requests_jitter) it stops the server gracefully and the child
  exits 0; the parent replaces it (not counted as a failure).
- timeout: a child whose handler has run longer than `timeout` seconds logs that handler's stack
  (fastcore.watchdog) and recycles itself the same way; the hung request is cut at the stop's
  deadline (shutdown_timeout), the others finish.

Each child has a process index 0..processes-1, kept by its replacement (a rolling restart's new
child takes the index of the one it replaces). The children publish their stats() into memory
the parent shared before forking (fastcore.process_stats), one slot per index, so any child
reports every process (Server.process_stats(), the metrics route); the parent retires a dead
child's slot so that counters carry over to its replacement and never go backwards.

Children run in their own process group (a terminal's Ctrl-C reaches only the parent, which
forwards it once) and get SIGTERM if the parent dies (PR_SET_PDEATHSIG).
"""
import ctypes
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback

from . import process_stats, sockets
from .errors import ServerStateError, SupervisorError

log = logging.getLogger("fastcore.supervisor")

FAST_FAILURE_SECONDS = 1.0        # a child that dies sooner than this after its start "failed at start"
MAX_FAST_FAILURES = 5             # in a row: give up
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
READY_TIMEOUT = 60.0              # a rolling restart waits this long for a new child to accept
MAX_REQUESTS_POLL = 1.0

_PR_SET_PDEATHSIG = 1


class _Child:
    __slots__ = ("pid", "index", "subslot", "started", "ready_fd", "ready", "retiring")

    def __init__(self, pid, index, subslot, ready_fd):
        self.pid = pid
        self.index = index                # the process index (metrics label), kept by a replacement
        self.subslot = subslot            # its slot of that index in the shared stats (or None)
        self.started = time.monotonic()
        self.ready_fd = ready_fd
        self.ready = False
        self.retiring = False


def _describe_status(status):
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"killed by {name}"
    return f"exit status {os.WEXITSTATUS(status)}"


class Supervisor:
    """Forks `server.config.processes` children that each run `server` (not started in this
    process) on a socket bound here, and supervises them; run() blocks until they are stopped.

    child_setup: called in each child right after the fork (e.g. to set up logging threads);
    it may return a callable, called when the child's server has stopped.
    """

    def __init__(self, server, on_ready=None, child_setup=None):
        self.server = server
        self.config = server.config
        self.processes = self.config.processes
        self.on_ready = on_ready
        self.child_setup = child_setup
        self._socket = None               # the shared listening socket, or the port reservation
        self._reuse_port = False
        self._children = {}               # pid -> _Child
        self._stop_signals = 0
        self._forwarded_signals = 0
        self._reload_requested = False
        self._rolling = []                # pids still to replace in a rolling restart
        self._rolling_step = None         # (new child pid, old child pid, phase)
        self._fast_failures = 0
        self._last_failure = ""
        self._spawn_after = 0.0
        self._announced = False
        self._shared_stats = None         # every child's counters (fastcore.process_stats)
        self._generation = 0              # children started so far

    # -- what on_ready sees ------------------------------------------------------------------------

    @property
    def url(self):
        return sockets.describe(self._socket) if self._socket is not None else None

    @property
    def host(self):
        return self.config.host

    @property
    def port(self):
        if self._socket is None or self._socket.family == socket.AF_UNIX:
            return 0 if self._socket is not None else self.config.port
        return self._socket.getsockname()[1]

    @property
    def pids(self):
        return sorted(self._children)

    # -- the parent ------------------------------------------------------------------------------

    def run(self):
        if threading.current_thread() is not threading.main_thread():
            raise ServerStateError("processes > 1: serve_forever must run on the main thread "
                                   "(the supervisor handles signals and forks)")
        if threading.active_count() > 1:
            log.warning("forking children while other threads run in this process "
                        "(%s); start them after serve_forever, or in the app lazily",
                        ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread()))
        previous = {}

        def on_stop(signum, frame):
            self._stop_signals += 1

        def on_hangup(signum, frame):
            self._reload_requested = True

        previous[signal.SIGINT] = signal.signal(signal.SIGINT, on_stop)
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_stop)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
        try:
            self._open_socket()
            self._shared_stats = process_stats.SharedStats(self.processes, self.config.threads)
            self._loop()
        finally:
            self._kill_all()
            if self._shared_stats is not None:
                self._shared_stats.close()
                self._shared_stats = None
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._socket is not None:
                if self._reuse_port:
                    self._socket.close()
                else:
                    sockets.close_listening_socket(self._socket)
                self._socket = None

    def _open_socket(self):
        config = self.config
        activated = os.environ.get("LISTEN_PID") == str(os.getpid())
        self._reuse_port = bool(config.reuse_port and not config.uds and config.fd < 0 and not activated)
        if not self._reuse_port:
            self._socket = sockets.open_listening_socket(config)
            return
        host = config.host
        if host in ("::", "") and socket.has_dualstack_ipv6():
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            host = "::"
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, config.port))      # bound, never listening: reserves the port only
        except BaseException:
            sock.close()
            raise
        self._socket = sock

    def _loop(self):
        while True:
            self._reap()
            if self._stop_signals:
                self._stop_children()
                return
            if self._fast_failures >= MAX_FAST_FAILURES:
                raise SupervisorError(
                    f"the worker processes keep failing at start: {self._fast_failures} in a row "
                    f"ended within {FAST_FAILURE_SECONDS:g} s of starting (last: {self._last_failure})")
            self._check_ready()
            if not self._announced and len(self._children) >= self.processes \
                    and all(child.ready for child in self._children.values()):
                self._announced = True
                log.info("%d worker processes serving on %s: %s", len(self._children),
                         self.url, ", ".join(map(str, self.pids)))
                if self.on_ready is not None:
                    self.on_ready(self)
            self._roll()
            serving = [child for child in self._children.values() if not child.retiring]
            wanted = self.processes + (1 if self._rolling_step is not None and self._rolling_step[2] == "new" else 0)
            if len(serving) < wanted and time.monotonic() >= self._spawn_after:
                rolling_new = self._rolling_step is not None and self._rolling_step[0] is None
                replaced = self._children.get(self._rolling_step[1]) if rolling_new else None
                pid = self._spawn(replaced.index if replaced is not None else self._free_index())
                if rolling_new:
                    self._rolling_step = (pid, self._rolling_step[1], "new")
            time.sleep(0.02)

    def _free_index(self):
        """The process index for a new child: the lowest one no serving child has."""
        taken = {child.index for child in self._children.values() if not child.retiring}
        free = [index for index in range(self.processes) if index not in taken]
        if free:
            return free[0]
        counts = [sum(child.index == index for child in self._children.values()) for index in range(self.processes)]
        return counts.index(min(counts))

    def _spawn(self, index):
        held = {child.subslot for child in self._children.values() if child.index == index}
        subslot = next((slot for slot in range(process_stats.SUBSLOTS) if slot not in held), None)
        if subslot is None:                         # not expected: the stats leave this child out
            log.warning("no free stats slot for process index %d; its counters are not shared", index)
        self._generation += 1
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:                                # the child: never returns
            os.close(read_fd)
            self._child_main(write_fd, index, subslot)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._children[pid] = _Child(pid, index, subslot, read_fd)
        log.info("started worker process %d (index %d)", pid, index)
        return pid

    def _check_ready(self):
        for child in self._children.values():
            if child.ready or child.ready_fd is None:
                continue
            try:
                data = os.read(child.ready_fd, 1)
            except BlockingIOError:
                continue
            if data:
                child.ready = True
            os.close(child.ready_fd)
            child.ready_fd = None

    def _reap(self):
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is None:
                continue
            if child.ready_fd is not None:
                os.close(child.ready_fd)
            if child.subslot is not None:           # its counters carry over to its replacement
                self._shared_stats.retire(child.index, child.subslot)
            lived = time.monotonic() - child.started
            how = _describe_status(status)
            if self._rolling_step is not None and pid in self._rolling_step[:2]:
                if pid == self._rolling_step[1] and self._rolling_step[2] == "old":
                    self._rolling_step = None       # the old one is gone: next step
                elif pid == self._rolling_step[0]:
                    self._rolling_step = (None, self._rolling_step[1], "new")   # retry the step
            if child.retiring or self._stop_signals:
                log.info("worker process %d stopped (%s)", pid, how)
                continue
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                log.info("worker process %d exited (%s, e.g. max_requests); replacing it", pid, how)
                continue
            self._last_failure = f"worker process {pid}: {how}"
            if lived < FAST_FAILURE_SECONDS:
                self._fast_failures += 1
                delay = min(BACKOFF_FIRST * 2 ** (self._fast_failures - 1), BACKOFF_MAX)
            else:
                self._fast_failures = 0
                delay = 0.0
            self._spawn_after = time.monotonic() + delay
            log.warning("worker process %d died (%s) after %.1f s; replacing it%s", pid, how, lived,
                        f" in {delay:.1f} s" if delay else "")

    def _roll(self):
        if self._reload_requested:
            self._reload_requested = False
            self._rolling = [pid for pid, child in self._children.items() if not child.retiring]
            log.info("SIGHUP: restarting %d worker processes one at a time", len(self._rolling))
        if self._rolling_step is None:
            while self._rolling and self._rolling[0] not in self._children:
                self._rolling.pop(0)
            if not self._rolling:
                return
            self._rolling_step = (None, self._rolling.pop(0), "new")    # the loop spawns the new one
            return
        new_pid, old_pid, phase = self._rolling_step
        if phase != "new" or new_pid is None:
            return
        new_child = self._children.get(new_pid)
        old_child = self._children.get(old_pid)
        if new_child is None:
            return
        if old_child is None:                        # the old one died meanwhile
            self._rolling_step = None
            return
        if new_child.ready or time.monotonic() - new_child.started > READY_TIMEOUT:
            old_child.retiring = True
            self._rolling_step = (new_pid, old_pid, "old")
            self._signal(old_pid, signal.SIGTERM)

    def _signal(self, pid, signum):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _stop_children(self):
        log.info("stopping %d worker processes", len(self._children))
        deadline = time.monotonic() + self.config.shutdown_timeout + 10.0
        while self._children:
            while self._forwarded_signals < self._stop_signals:
                self._forwarded_signals += 1
                for pid in list(self._children):
                    self._signal(pid, signal.SIGTERM)
            if time.monotonic() > deadline:
                log.warning("worker processes %s did not stop in time; killing them",
                            ", ".join(map(str, self._children)))
                self._kill_all()
                return
            self._reap()
            time.sleep(0.02)

    def _kill_all(self):
        for pid in list(self._children):
            self._signal(pid, signal.SIGKILL)
        for pid, child in list(self._children.items()):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            if child.ready_fd is not None:
                os.close(child.ready_fd)
            del self._children[pid]

    # -- a child ---------------------------------------------------------------------------------

    def _child_main(self, ready_fd, index, subslot):
        status = 1
        try:
            status = self._child_serve(ready_fd, index, subslot)
        except BaseException as error:
            if not isinstance(error, (KeyboardInterrupt, SystemExit)):
                log.error("worker process %d failed: %s: %s", os.getpid(), type(error).__name__, error)
                if log.isEnabledFor(logging.DEBUG):
                    traceback.print_exc()
            elif isinstance(error, SystemExit) and isinstance(error.code, int):
                status = error.code
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)

    def _child_serve(self, ready_fd, index, subslot):
        parent = os.getppid()
        for child in self._children.values():          # the parent's ends of the siblings' pipes
            if child.ready_fd is not None:
                os.close(child.ready_fd)
        self._children = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            os.setpgid(0, 0)                         # Ctrl-C in a terminal reaches the parent only
        except OSError:
            pass
        _die_with_parent()
        if os.getppid() != parent:                   # the parent is already gone
            return 0
        if self._reuse_port:
            port = self._socket.getsockname()[1]
            self._socket.close()
            self._socket = None
            config = self.config.replace(processes=1, max_requests=0, port=port, reuse_port=True)
        else:
            fd = self._socket.detach()               # the server adopts it (fd=): one owner
            self._socket = None
            config = self.config.replace(processes=1, max_requests=0, fd=fd)
        # The child's own config serves one process, which ServerConfig refuses with max_requests
        # (nothing would replace it); recycling is the supervisor's, with the parent's values.
        max_requests, jitter = self.config.max_requests, self.config.max_requests_jitter
        server = self.server
        server.config = config
        if config.timeout > 0:
            server._on_handler_timeout = lambda: _recycle_hung(server)
        cleanup = self.child_setup() if self.child_setup is not None else None
        shared = process_stats.ChildStats(self._shared_stats, index, subslot, self._generation, server.stats)
        server._process_stats = shared

        def ready(started):
            shared.start()                           # published before the parent hears "ready"
            try:
                os.write(ready_fd, b"R")
                os.close(ready_fd)
            except OSError:
                pass
            if max_requests > 0:
                limit = max_requests + random.randint(0, jitter)
                threading.Thread(target=_recycle_after, args=(started, limit),
                                 name="fastcore-max-requests", daemon=True).start()

        try:
            server.serve_forever(on_ready=ready)
        finally:
            shared.close(server._stats_at_stop)     # what it served up to its stop, for good
            if cleanup is not None:
                cleanup()
        return 0


def _recycle_after(server, limit):
    """In a child: stop the server gracefully once it has served `limit` requests."""
    while server.running:
        time.sleep(MAX_REQUESTS_POLL)
        stats = server.stats()
        if stats and stats.get("requests", 0) >= limit:
            log.info("worker process %d served %d requests (max_requests); recycling it",
                     os.getpid(), stats["requests"])
            server.stop()
            return


def _recycle_hung(server):
    """In a child, from the hung-handler watchdog (fastcore.watchdog), which has logged the
    handler's stack: stop the server gracefully (on another thread: the stop joins the watchdog)
    and let the child exit, so the parent replaces it. The other requests in flight finish within
    shutdown_timeout; the hung one is cut at that deadline."""
    if getattr(server, "_recycling", False):
        return
    server._recycling = True
    log.warning("worker process %d has a handler running past timeout (%g s); recycling it",
                os.getpid(), server.config.timeout)
    threading.Thread(target=server.stop, name="fastcore-timeout-recycle", daemon=True).start()


def _die_with_parent():
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


__all__ = ["Supervisor", "SupervisorError"]

"""`fastcore --reload`: restart the serving process when the sources change (development only).

Theory of operation. The process the user started becomes a watcher that never imports the app:
it opens the listening socket once (so the address, a port 0 pick included, stays the same across
restarts and no client is refused in between), then runs the server as a child process,
`python -m fastcore` with the same arguments, handing it the socket (its fd, through FASTCORE_FD;
FASTCORE_RELOAD_CHILD tells the child it is one). It watches the reload directories for files
whose names match the include globs (*.py, plus --reload-include's); when one is created,
changed or removed, it stops the child as a signal would (SIGTERM: a graceful stop) and starts a
fresh one, which imports the changed code. A child that exits by itself (an import error, a crash)
is started again at the next change; the watcher stops on SIGINT or SIGTERM, stopping the child.

Watching: watchfiles (the optional extra fastcore-server[reload]) when it can be imported, which
waits on inotify; else stat polling (every 0.25 s: the modification time and size of each matching
file). Refused with processes > 1: a supervisor of its own would restart under the watcher.
"""
import fnmatch
import os
import signal
import subprocess
import sys
import threading

from . import sockets

CHILD_MARKER = "FASTCORE_RELOAD_CHILD"
DEFAULT_INCLUDES = ("*.py",)
POLL_INTERVAL = 0.25
_SKIPPED_DIRECTORIES = {"__pycache__", ".git", ".hg", ".svn", ".tox", ".venv", "node_modules"}


def is_reload_child(environ=None):
    return (os.environ if environ is None else environ).get(CHILD_MARKER) == "1"


class StatWatcher:
    """Stat polling: changed() is True when a matching file under `directories` was created,
    modified (mtime or size) or removed since the last call."""

    def __init__(self, directories, includes):
        self.directories = list(directories)
        self.includes = tuple(includes)
        self._seen = self._snapshot()

    def _matches(self, name):
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.includes)

    def _snapshot(self):
        seen = {}
        for directory in self.directories:
            for root, subdirectories, files in os.walk(directory):
                subdirectories[:] = [name for name in subdirectories if name not in _SKIPPED_DIRECTORIES]
                for name in files:
                    if self._matches(name):
                        path = os.path.join(root, name)
                        try:
                            status = os.stat(path)
                        except OSError:
                            continue
                        seen[path] = (status.st_mtime_ns, status.st_size)
        return seen

    def changed(self):
        now = self._snapshot()
        if now != self._seen:
            self._seen = now
            return True
        return False

    def wait(self, stop):
        """Block until a change (True) or until `stop` (a threading.Event) is set (False)."""
        while not stop.wait(POLL_INTERVAL):
            if self.changed():
                return True
        return False


class WatchfilesWatcher:
    """The same through watchfiles (inotify): wait() returns at the first batch of changes to a
    matching file."""

    def __init__(self, directories, includes, watchfiles):
        self.directories = list(directories)
        self.includes = tuple(includes)
        self._watchfiles = watchfiles

    def _matches(self, change, path):
        name = os.path.basename(path)
        if any(part in _SKIPPED_DIRECTORIES for part in path.split(os.sep)):
            return False
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.includes)

    def wait(self, stop):
        for _ in self._watchfiles.watch(*self.directories, watch_filter=self._matches, stop_event=stop,
                                        debounce=200, step=50):
            return True
        return False


def make_watcher(directories, includes):
    try:
        import watchfiles
    except ImportError:
        return StatWatcher(directories, includes)
    return WatchfilesWatcher(directories, includes, watchfiles)


def serve_with_reload(argv, config, directories, includes, log):
    """The watcher: returns the exit status (0 after SIGINT/SIGTERM)."""
    listening = sockets.open_listening_socket(config)
    listening.set_inheritable(True)
    fd = listening.fileno()
    environ = dict(os.environ, **{CHILD_MARKER: "1", "FASTCORE_FD": str(fd)})
    command = [sys.executable, "-m", "fastcore", *argv]
    stop = threading.Event()
    previous = {}

    def request_stop(signum, frame):
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, request_stop)
    watcher = make_watcher(directories, includes)
    log(f"watching {', '.join(directories)} for changes to {', '.join(includes)} "
        f"({type(watcher).__name__.removesuffix('Watcher').lower()})")
    child = None
    try:
        while not stop.is_set():
            # Its own process group: a Ctrl-C reaches the watcher only, which stops the child
            # once (a second signal would make the child close its connections at once).
            child = subprocess.Popen(command, env=environ, pass_fds=(fd,), process_group=0)
            if not watcher.wait(stop):
                break
            log("change detected: restarting")
            _stop_child(child, config.shutdown_timeout + 5)
            child = None
    finally:
        if child is not None:
            _stop_child(child, config.shutdown_timeout + 5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sockets.close_listening_socket(listening)
    return 0


def _stop_child(child, timeout):
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            child.kill()
    child.wait()

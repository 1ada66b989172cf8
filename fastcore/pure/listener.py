"""fastcore.pure.listener: the listener thread: accept, hand over to the queue, wake a worker.

Theory of operation (as pyext/listener.pxi). Its select.epoll set holds the listening socket and a
wake-up descriptor (for stop). On readiness it accepts until EAGAIN. Each new socket (made
non-blocking, TCP_NODELAY) goes on the bounded queue.Queue and one worker is woken through its own
wake-up descriptor, preferring one that is idle in epoll, so a worker busy in a slow handler does not
collect new connections. A full queue, or `max_connections` already open, means a canned 503 (best
effort, never blocking) and a close. When the process is out of file descriptors the listening socket
is taken out of the epoll set for 100 ms instead of spinning.

Counters: only this thread writes its own (accepted, rejected_*, opened, accept_*); each worker
counts the connections it closed, so open_connections = opened - closed needs no lock. Descriptor
exhaustion is counted here and logged by the Server (one line per episode, as listener.pxi): each
pause adds to accept_pauses, and the first pause since an accept succeeded starts an episode
(accept_exhaustions, with its errno).
"""
import errno
import queue
import select
import socket
import time

from .response import DateCache
from .wakeup import Wakeup

ACCEPT_PAUSE = 0.1          # seconds without accepting after running out of descriptors
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_REFUSE_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


class Listener:
    def __init__(self, core, listening):
        self.core = core
        self.listening = listening
        self.listen_fd = listening.fileno()
        self.queue = core.queue
        self.workers = core.workers
        self.max_connections = core.max_connections
        self.date = DateCache()                 # for the canned 503s
        self.stop_requested = False
        self.next_worker = 0                    # round-robin start
        self.accepted = 0
        self.rejected_queue_full = 0
        self.rejected_connection_limit = 0
        self.opened = 0                         # connections handed to workers
        self.accept_pauses = 0                  # pauses for lack of descriptors or memory
        self.accept_exhaustions = 0             # episodes of them (a pause after a successful accept)
        self.accept_exhaustion_errno = 0        # the errno of the latest pause
        self.accept_exhausted = False           # in an episode
        self.wakeup = Wakeup()
        try:
            self.epoll = select.epoll()
        except BaseException:
            self.wakeup.close()
            raise
        self.epoll.register(self.listen_fd, select.EPOLLIN)
        self.epoll.register(self.wakeup.fileno(), select.EPOLLIN)

    def request_stop(self):
        """From another thread: leave run() at its next turn."""
        self.stop_requested = True
        self.wakeup.wake()

    def run(self):
        timeout = -1
        while not self.stop_requested:
            events = self.epoll.poll(timeout)
            if not events and timeout >= 0:
                self.set_accepting(True)            # the pause after descriptor exhaustion is over
                timeout = -1
                continue
            for fd, _ in events:
                if fd == self.listen_fd and self.accept_ready_connections() < 0:
                    self.set_accepting(False)
                    timeout = ACCEPT_PAUSE

    def set_accepting(self, accepting):
        self.epoll.modify(self.listen_fd, select.EPOLLIN if accepting else 0)

    def accept_ready_connections(self):
        """Accept until EAGAIN. Returns 0, or -1 when out of descriptors or memory (pause accepting)."""
        while True:
            try:
                sock, peer = self.listening.accept()
            except BlockingIOError:
                return 0
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    self.count_accept_pause(error.errno)
                    return -1
                return 0                                # the socket is being closed
            self.accept_exhausted = False               # an accept succeeded: the episode is over
            self.accepted += 1
            if self.max_connections and self.core.open_connections() >= self.max_connections:
                self.rejected_connection_limit += 1
                self.refuse(sock)
                continue
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            self.opened += 1
            try:
                self.queue.put_nowait((sock, peer, time.monotonic()))     # its head is due header_timeout after this
            except queue.Full:
                self.opened -= 1
                self.rejected_queue_full += 1
                self.refuse(sock)
                continue
            self.choose_worker().wakeup.wake()

    def count_accept_pause(self, error):
        self.accept_pauses += 1
        self.accept_exhaustion_errno = error
        if not self.accept_exhausted:
            self.accept_exhausted = True
            self.accept_exhaustions += 1

    def refuse(self, sock):
        """Best effort, never blocking: a short 503, then close."""
        try:
            sock.send(self.core.formats.canned_503(self.date.refresh()), _REFUSE_FLAGS)
        except OSError:
            pass
        sock.close()

    def choose_worker(self):
        workers = self.workers
        count = len(workers)
        start = self.next_worker
        for offset in range(count):
            index = (start + offset) % count
            if workers[index].idle:
                self.next_worker = (index + 1) % count
                return workers[index]
        self.next_worker = (start + 1) % count
        return workers[start]

    def close(self):
        self.epoll.close()
        self.wakeup.close()

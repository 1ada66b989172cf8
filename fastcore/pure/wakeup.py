"""fastcore.pure.wakeup: a counting wake-up descriptor for an epoll set (eventfd, else a pipe).

Theory of operation. wake() adds one; take() returns how many wake-ups arrived since the last take()
and resets the count. With an eventfd (Linux, Python 3.10+) the count is the eventfd counter; the
pipe fallback writes one byte per wake-up and counts the bytes read. The descriptor is readable
while the count is not zero, so it sits in an epoll set like any socket.
"""
import os


class Wakeup:
    __slots__ = ("read_fd", "write_fd", "_eventfd")

    def __init__(self):
        self._eventfd = hasattr(os, "eventfd")
        if self._eventfd:
            self.read_fd = self.write_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self.read_fd, self.write_fd = os.pipe()      # close-on-exec by default (PEP 446)
            os.set_blocking(self.read_fd, False)
            os.set_blocking(self.write_fd, False)

    def fileno(self):
        return self.read_fd

    def wake(self):
        try:
            if self._eventfd:
                os.eventfd_write(self.write_fd, 1)
            else:
                os.write(self.write_fd, b"\0")
        except BlockingIOError:
            pass                                        # a full pipe: the reader has wake-ups pending anyway

    def take(self):
        try:
            if self._eventfd:
                return os.eventfd_read(self.read_fd)
            return len(os.read(self.read_fd, 65536))
        except BlockingIOError:
            return 0

    def close(self):
        os.close(self.read_fd)
        if self.write_fd != self.read_fd:
            os.close(self.write_fd)

# listener.pxi: the listener thread: accept, hand over to the queue, wake a worker.
#
# Its epoll set holds the listening socket and a wake-up eventfd (for stop). On readiness it
# accept4()s until EAGAIN. Each new socket goes on the bounded queue, on the account of one worker
# (preferring one that is idle in epoll_wait, so a worker busy in a slow handler does not collect
# new connections), which is woken through its eventfd only if it sleeps: one write per sleeping
# worker per accept batch, none for a worker that is awake and will look at the queue before it
# sleeps (queue.pxi). A full queue, or `max_connections` already open, means a canned 503 and a
# close. When the process is out of file descriptors the listening socket is taken out of the epoll set for 100 ms instead of spinning.
#
# Descriptor exhaustion is counted, never logged here: this thread holds no GIL and takes none. Each
# pause adds to `accept_pauses`; the first pause after an accept that succeeded (or the first ever)
# starts an episode and adds to `accept_exhaustions`, with the errno kept in
# `accept_exhaustion_errno`. Python reads them through Core.stats(), and Server logs one line per
# new episode, rate-limited (fastcore/server.py: report_accept_exhaustion).

cdef enum:
    ACCEPT_PAUSE_MS = 100


cdef Worker* choose_worker(ServerState* server) noexcept nogil:
    cdef int i, index
    cdef int start = server.next_worker
    for i in range(server.worker_count):
        index = (start + i) % server.worker_count
        if fc_atomic_load(&server.workers[index].idle):
            server.next_worker = (index + 1) % server.worker_count
            return &server.workers[index]
    server.next_worker = (start + 1) % server.worker_count
    return &server.workers[start]


cdef void set_nodelay(ServerState* server, int fd) noexcept nogil:
    """TCP_NODELAY on an accepted socket (responses leave in one write; Nagle would only hold back
    the pieces of a streamed body). Core sets it on the listening socket, and Linux copies it to
    accepted sockets, which saves a setsockopt per connection; the first accepted socket shows
    whether that holds here."""
    cdef int one = 1, value = 0
    cdef socklen_t length = sizeof(value)
    if server.nodelay == NODELAY_UNKNOWN:
        if getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &length) != 0:
            server.nodelay = NODELAY_NOT_TCP
            return
        server.nodelay = NODELAY_INHERITED if value else NODELAY_PER_ACCEPT
        if value:
            return
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))


cdef void count_accept_pause(ServerState* server, int error) noexcept nogil:
    """Count a pause of accepting for lack of descriptors or memory; a pause with no successful
    accept since the last one belongs to the same episode."""
    fc_atomic_add64(&server.accept_pauses, 1)
    fc_atomic_store(&server.accept_exhaustion_errno, error)
    if not server.accept_exhausted:
        server.accept_exhausted = True
        fc_atomic_add64(&server.accept_exhaustions, 1)


cdef void credit_worker(ServerState* server) noexcept nogil:
    """A connection was queued: put it on a worker's account, and wake that worker if it sleeps.
    Taking its idle flag (1 -> 0) makes this the one write until it has slept again. The fence
    pairs with the one in worker_loop: either it sees our push before it sleeps, or we see it
    idle here."""
    cdef uint64_t wakeup = 1
    cdef Worker* worker = choose_worker(server)
    fc_atomic_add64(&worker.owed, 1)
    fc_full_fence()
    if fc_atomic_take(&worker.idle):
        write(worker.wake_fd, &wakeup, sizeof(wakeup))


cdef int accept_ready_connections(ServerState* server) noexcept nogil:
    """Accept until EAGAIN. Returns 0, or -1 when out of descriptors or memory (pause accepting)."""
    cdef int fd
    cdef AcceptedConn accepted
    cdef socklen_t address_length
    while True:
        address_length = sizeof(PeerAddress)
        memset(&accepted.peer, 0, sizeof(PeerAddress))
        fd = accept4(server.listen_fd, &accepted.peer.any, &address_length, SOCK_NONBLOCK | SOCK_CLOEXEC)
        if fd < 0:
            if errno == EINTR or errno == ECONNABORTED:
                continue
            if errno == EMFILE or errno == ENFILE or errno == ENOBUFS or errno == ENOMEM:
                count_accept_pause(server, errno)
                return -1
            return 0                                    # EAGAIN, or the socket is being closed
        server.accept_exhausted = False                 # an accept succeeded: the episode is over
        fc_atomic_add64(&server.accepted, 1)
        if server.max_connections and fc_atomic_load64(&server.open_connections) >= server.max_connections:
            fc_atomic_add64(&server.rejected_connection_limit, 1)
            send_canned_503(server, fd)
            close(fd)
            continue
        if server.nodelay != NODELAY_INHERITED and server.nodelay != NODELAY_NOT_TCP:
            set_nodelay(server, fd)
        fc_atomic_add64(&server.open_connections, 1)
        accepted.fd = fd
        accepted.accepted_ms = fc_now_ms()              # its head's deadline counts from here (conn_adopt)
        if queue_push(&server.queue, &accepted) != 0:
            fc_atomic_add64(&server.open_connections, -1)
            fc_atomic_add64(&server.rejected_queue_full, 1)
            send_canned_503(server, fd)
            close(fd)
            continue
        credit_worker(server)


cdef void listener_set_accepting(ServerState* server, bint accepting) noexcept nogil:
    cdef epoll_event event
    event.events = EPOLLIN if accepting else 0
    event.data.fd = server.listen_fd
    epoll_ctl(server.listener_epoll_fd, EPOLL_CTL_MOD, server.listen_fd, &event)


cdef void listener_loop(ServerState* server) noexcept nogil:
    cdef epoll_event events[2]
    cdef int ready, i
    cdef int timeout = -1
    while not fc_atomic_load(&server.listener_stop):
        ready = epoll_wait(server.listener_epoll_fd, events, 2, timeout)
        if ready < 0:
            continue                                    # EINTR
        if ready == 0 and timeout >= 0:
            listener_set_accepting(server, True)        # the pause after fd exhaustion is over
            timeout = -1
            continue
        for i in range(ready):
            if events[i].data.fd == server.listen_fd:
                if accept_ready_connections(server) < 0:
                    listener_set_accepting(server, False)
                    timeout = ACCEPT_PAUSE_MS

# queue.pxi: the bounded hand-off of accepted sockets from the listener thread to the workers.
#
# A ring of fds under one mutex. The listener pushes, adds 1 to one worker's `owed` count and, only
# if that worker sleeps in epoll_wait (its idle flag, which the listener takes), writes its eventfd
# (listener.pxi: credit_worker). A woken worker takes as many fds as it is owed, all at once (fewer
# when the ring holds fewer: stop_workers(), the bridge and the ASGI loop also write the eventfd,
# with no fd behind it). A worker takes from the shared ring whichever fds are first, so it may take
# one owed to another worker: that one then finds fewer, but no fd is ever left without a worker
# that will look. A worker that is awake is not woken: before it sleeps it marks itself idle, then
# takes whatever is left in the ring (worker.pxi); a fence on each side makes sure that either it
# sees the push or the listener sees it idle. That also covers a connection owed to a worker stuck
# in a long handler: whichever worker goes to sleep first takes it. A full queue means the workers
# are not keeping up: the listener refuses the connection instead of growing.

cdef int queue_init(ConnQueue* queue, size_t capacity) noexcept nogil:
    queue.fds = <AcceptedConn*>malloc(capacity * sizeof(AcceptedConn))
    if queue.fds == NULL:
        return -1
    queue.capacity = capacity
    queue.head = 0
    queue.count = 0
    pthread_mutex_init(&queue.lock, NULL)
    return 0


cdef void queue_destroy(ConnQueue* queue) noexcept nogil:
    """Close whatever is still queued (accepted but never served) and free the ring."""
    cdef AcceptedConn leftover
    if queue.fds == NULL:
        return
    while queue_take(queue, &leftover, 1):
        close(leftover.fd)
    pthread_mutex_destroy(&queue.lock)
    free(queue.fds)
    queue.fds = NULL


cdef int queue_push(ConnQueue* queue, const AcceptedConn* accepted) noexcept nogil:
    """Returns 0, or -1 when the queue already holds `capacity` connections."""
    cdef int result = -1
    pthread_mutex_lock(&queue.lock)
    if queue.count < queue.capacity:
        queue.fds[(queue.head + queue.count) % queue.capacity] = accepted[0]
        fc_relaxed_store_size(&queue.count, queue.count + 1)   # queue_maybe_nonempty reads it unlocked
        result = 0
    pthread_mutex_unlock(&queue.lock)
    return result


cdef inline bint queue_maybe_nonempty(ConnQueue* queue) noexcept nogil:
    """Without the lock: whether a take is worth trying (a push may be under way; the take decides)."""
    return fc_relaxed_load_size(&queue.count) != 0


cdef size_t queue_take(ConnQueue* queue, AcceptedConn* out, size_t wanted) noexcept nogil:
    cdef size_t taken = 0
    pthread_mutex_lock(&queue.lock)
    while taken < wanted and queue.count > 0:
        out[taken] = queue.fds[queue.head]
        queue.head = (queue.head + 1) % queue.capacity
        fc_relaxed_store_size(&queue.count, queue.count - 1)
        taken += 1
    pthread_mutex_unlock(&queue.lock)
    return taken

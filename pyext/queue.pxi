# queue.pxi: the bounded hand-off of accepted sockets from the listener thread to the workers.
#
# A ring of fds under one mutex. The listener pushes and then adds 1 to one worker's eventfd; a
# woken worker takes up to as many fds as its eventfd counted (stop_workers() also writes to the
# eventfd, with no fd behind it). Every push adds one wake-up somewhere, and a worker takes from
# the shared ring whichever fds are first, so it may take one that woke another worker: that one
# then finds fewer, but no fd is ever left without a wake-up still owed to it. A wake-up may be owed
# by a worker stuck in a long handler, though: so a worker about to sleep also takes what is left
# (worker.pxi). A full queue means the workers are not keeping up: the listener refuses the
# connection instead of growing.

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

# system.pxi: the C library and Linux interfaces the core uses, declared once, every block nogil.
#
# Cython ships declarations for libc and part of POSIX; epoll, eventfd, accept4, pthread mutexes and
# the socket calls are declared here. Small C helpers (atomics, clocks) are written inline in C
# because Cython has no atomic operations of its own.

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memchr, memcmp, memmove, memset, strlen
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.errno cimport errno, EAGAIN, EINTR, EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void* buf, size_t count)
    ssize_t write(int fd, const void* buf, size_t count)
    int close(int fd)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct tm:
        int tm_sec
        int tm_min
        int tm_hour
        int tm_mday
        int tm_mon
        int tm_year
        int tm_wday
    time_t time(time_t* t)
    tm* gmtime_r(const time_t* timep, tm* result)

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)

cdef extern from "<poll.h>" nogil:
    cdef struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLIN
        POLLOUT
    int poll(pollfd* fds, unsigned long nfds, int timeout)

cdef extern from "<sys/eventfd.h>" nogil:
    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC
    int eventfd(unsigned int initval, int flags)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    cdef struct sockaddr:
        sa_family_t sa_family
    enum:
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        MSG_NOSIGNAL
        MSG_DONTWAIT
        MSG_PEEK
        SOL_SOCKET
        SHUT_WR
    cdef struct iovec:
        void* iov_base
        size_t iov_len
    cdef struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t sendmsg(int sockfd, const msghdr* msg, int flags)
    int accept4(int sockfd, sockaddr* addr, socklen_t* addrlen, int flags)
    ssize_t recv(int sockfd, void* buf, size_t len, int flags)
    ssize_t send(int sockfd, const void* buf, size_t len, int flags)
    int setsockopt(int sockfd, int level, int optname, const void* optval, socklen_t optlen)
    int getsockopt(int sockfd, int level, int optname, void* optval, socklen_t* optlen)
    int shutdown(int sockfd, int how)

cdef extern from "<netinet/in.h>" nogil:
    enum:
        IPPROTO_TCP
        AF_INET
        AF_INET6
        INET6_ADDRSTRLEN
    cdef struct in_addr:
        uint32_t s_addr
    cdef struct in6_addr:
        pass
    cdef struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    cdef struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short ntohs(unsigned short value)
    unsigned short htons(unsigned short value)
    uint32_t htonl(uint32_t value)

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

cdef extern from "<sys/sendfile.h>" nogil:
    ssize_t sendfile(int out_fd, int in_fd, long* offset, size_t count)

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_mutexattr_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* mutex, const pthread_mutexattr_t* attr)
    int pthread_mutex_destroy(pthread_mutex_t* mutex)
    int pthread_mutex_lock(pthread_mutex_t* mutex)
    int pthread_mutex_unlock(pthread_mutex_t* mutex)
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_cond_init(pthread_cond_t* cond, const pthread_condattr_t* attr)
    int pthread_cond_destroy(pthread_cond_t* cond)
    int pthread_cond_wait(pthread_cond_t* cond, pthread_mutex_t* mutex)
    int pthread_cond_signal(pthread_cond_t* cond)
    int pthread_cond_broadcast(pthread_cond_t* cond)

cdef extern from *:
    """
    #include <time.h>
    /* Flags shared between threads (worker idle/stop flags, the stop deadline): acquire/release
       atomics, so a thread never acts on a stale flag and no lock is needed for them. */
    static inline int fc_atomic_load(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void fc_atomic_store(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline long long fc_atomic_load64(const long long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void fc_atomic_store64(long long *p, long long v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void fc_atomic_add64(long long *p, long long v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
    static inline long long fc_atomic_take64(long long *p) { return __atomic_exchange_n(p, 0, __ATOMIC_ACQ_REL); }
    static inline int fc_atomic_take(int *p) { return __atomic_exchange_n(p, 0, __ATOMIC_SEQ_CST); }
    static inline int fc_atomic_add_fetch(int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }
    /* Between a store and a load of two different variables that another thread writes and reads
       the other way round (a worker's idle flag and the queue's length): one of the two threads
       then sees the other's store. Acquire/release alone allow both to miss. */
    static inline void fc_full_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    /* A hint read outside the lock that guards the value (the queue's length): no torn read. Its
       writers, under the lock, store it with fc_relaxed_store_size, or the read is a data race. */
    static inline size_t fc_relaxed_load_size(const size_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void fc_relaxed_store_size(size_t *p, size_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    /* A counter with one writer (its worker) and readers elsewhere (stats): relaxed load and
       store, so no locked instruction on the hot path and no torn read. */
    static inline void fc_counter_add(long long *p, long long v) {
        __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
    }
    /* The same for a count of things (a worker's connection_count, which stats() reads with
       fc_relaxed_load_size). */
    static inline void fc_count_add(size_t *p, long long v) {
        __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + (size_t)v, __ATOMIC_RELAXED);
    }
    /* Debug builds (FASTCORE_DEBUG=1 at build time) count, per server (the counters live on its
       ServerState, as uvloop keeps its own on the loop) and for the whole process: live
       allocations of each kind, open descriptors and epoll registrations the core made, and state
       machine events that were illegal in their phase. The test fixtures check that the live counts
       of each stopped server are back to zero and that no illegal event happened, and name the
       server when not. Release builds compile the counting away. */
    enum { FC_LIVE_CONNECTIONS, FC_LIVE_BUFFERS, FC_LIVE_PYTHON_BODIES, FC_OPEN_FDS,
           FC_EPOLL_REGISTRATIONS, FC_ILLEGAL_TRANSITIONS, FC_LIVE_ASGI_CYCLES,
           FC_LIVE_WS_CHANNELS, FC_DEBUG_COUNTERS };
    #ifdef FASTCORE_DEBUG
    static long long fc_debug_totals[FC_DEBUG_COUNTERS];
    static inline void fc_debug_count(long long *counters, int counter, long long delta) {
        if (counters) __atomic_fetch_add(&counters[counter], delta, __ATOMIC_RELAXED);
        __atomic_fetch_add(&fc_debug_totals[counter], delta, __ATOMIC_RELAXED);
    }
    static inline long long fc_debug_counter(const long long *counters, int counter) {
        return __atomic_load_n(counters ? &counters[counter] : &fc_debug_totals[counter], __ATOMIC_RELAXED);
    }
    static const int fc_debug_build = 1;
    #else
    #define fc_debug_count(counters, counter, delta) ((void)0)
    static inline long long fc_debug_counter(const long long *counters, int counter) {
        (void)counters; (void)counter; return 0;
    }
    static const int fc_debug_build = 0;
    #endif
    /* Monotonic milliseconds, for deadlines. */
    /* pthread_cond_timedwait with a relative bound in milliseconds (its deadline is CLOCK_REALTIME). */
    static inline int fc_cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mutex, long ms) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec += 1; ts.tv_nsec -= 1000000000L; }
        return pthread_cond_timedwait(cond, mutex, &ts);
    }
    static inline long long fc_now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    }
    static inline long long fc_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    """
    int fc_atomic_load(const int* p) nogil
    void fc_atomic_store(int* p, int v) nogil
    long long fc_atomic_load64(const long long* p) nogil
    void fc_atomic_store64(long long* p, long long v) nogil
    void fc_atomic_add64(long long* p, long long v) nogil
    long long fc_atomic_take64(long long* p) nogil
    int fc_atomic_take(int* p) nogil
    int fc_atomic_add_fetch(int* p, int v) nogil
    void fc_full_fence() nogil
    size_t fc_relaxed_load_size(const size_t* p) nogil
    void fc_relaxed_store_size(size_t* p, size_t v) nogil
    void fc_counter_add(long long* p, long long v) nogil
    void fc_count_add(size_t* p, long long v) nogil
    long long fc_now_ms() nogil
    long long fc_now_us() nogil
    int fc_cond_wait_ms(pthread_cond_t* cond, pthread_mutex_t* mutex, long ms) nogil
    enum:
        FC_LIVE_CONNECTIONS
        FC_LIVE_BUFFERS
        FC_LIVE_PYTHON_BODIES
        FC_OPEN_FDS
        FC_EPOLL_REGISTRATIONS
        FC_ILLEGAL_TRANSITIONS
        FC_LIVE_ASGI_CYCLES
        FC_LIVE_WS_CHANNELS
        FC_DEBUG_COUNTERS
    void fc_debug_count(long long* counters, int counter, long long delta) nogil
    long long fc_debug_counter(const long long* counters, int counter) nogil
    const int fc_debug_build

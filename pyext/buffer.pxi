# buffer.pxi: growable byte buffers with reserve / consume (the h2o and py-pgproto shape).
#
# A Buffer holds bytes in data[start:end] inside an allocation of `capacity` bytes. Readers consume
# from the front (start moves); writers reserve room at the back and then advance `end`. Nobody keeps
# a pointer into `data` across a reserve, because reserve may move it: code keeps offsets instead.
# A released buffer owns no memory (data is NULL); connections release theirs when empty, so an
# idle keep-alive connection costs only its struct. Out of memory is an error code, never an
# abort, and leaves the buffer's content intact (possibly slid to the front of its block).
#
# A buffer may name a BufferBin: its worker's store of released blocks of one size. Reserve takes
# the first block from there instead of malloc, and release puts a block of that size back instead
# of free (the h2o recycle-bin shape). Without it every keep-alive request paid a malloc and a free
# for its input and its output, and glibc, which gives the free top of a thread's heap back to the
# kernel (madvise), turned that churn into page faults: about one per five requests under wrk -c64
# (perf stat), all gone with the bins. A block resting in a bin is poisoned in a sanitizer build, so
# AddressSanitizer still catches a use of a released buffer (README.md, "Memory-safety checks").

cdef enum:
    BUFFER_MIN_ALLOCATION = 4096
    BUFFER_BIN_SLOTS = 16             # blocks a bin keeps at most: a worker's bins hold <= 16 x (16 + 4) KiB

ctypedef struct BufferBin:            # owned by one worker thread: no lock
    size_t block_size                 # the one allocation size it hands out and takes back
    int count
    long long* debug_counters         # its server's (debug builds count live buffers per server)
    char* blocks[BUFFER_BIN_SLOTS]

cdef extern from *:
    """
    /* malloc never sees a block in a bin freed, so AddressSanitizer would take a use of a released
       buffer for a legal access. A sanitizer build (FASTCORE_SANITIZE=1) poisons the block while
       it rests in the bin; elsewhere these are no-ops. */
    #if defined(__SANITIZE_ADDRESS__)
    #include <sanitizer/asan_interface.h>
    #define fc_poison_block(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
    #define fc_unpoison_block(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
    #else
    #define fc_poison_block(p, n) ((void)(p), (void)(n))
    #define fc_unpoison_block(p, n) ((void)(p), (void)(n))
    #endif
    """
    void fc_poison_block(const void* block, size_t size) nogil
    void fc_unpoison_block(const void* block, size_t size) nogil

ctypedef struct Buffer:
    char* data
    size_t start
    size_t end
    size_t capacity
    BufferBin* bin                    # the owning worker's bin for this kind of buffer, or NULL


cdef inline size_t buffer_length(const Buffer* b) noexcept nogil:
    return b.end - b.start


cdef inline long long* buffer_debug_counters(const Buffer* b) noexcept nogil:
    return b.bin.debug_counters if b.bin != NULL else NULL


cdef int buffer_reserve(Buffer* b, size_t extra) noexcept nogil:
    """Make room for `extra` more bytes after `end`. Returns 0, or -1 when memory runs out."""
    cdef size_t used = b.end - b.start
    cdef size_t wanted
    cdef char* grown
    if b.capacity - b.end >= extra:
        return 0
    if b.start > 0 and b.capacity - used >= extra:
        # Enough room once the consumed prefix is dropped: slide the live bytes to the front.
        memmove(b.data, b.data + b.start, used)
        b.start = 0
        b.end = used
        return 0
    wanted = b.capacity * 2 if b.capacity else BUFFER_MIN_ALLOCATION
    while wanted < used + extra:
        wanted *= 2
    if b.data == NULL and b.bin != NULL and b.bin.count > 0 and wanted <= b.bin.block_size:
        b.bin.count -= 1
        b.data = b.bin.blocks[b.bin.count]
        b.capacity = b.bin.block_size
        fc_unpoison_block(b.data, b.capacity)
        fc_debug_count(buffer_debug_counters(b), FC_LIVE_BUFFERS, 1)
        return 0
    if b.start > 0:
        memmove(b.data, b.data + b.start, used)
        b.start = 0
        b.end = used
    grown = <char*>realloc(b.data, wanted)
    if grown == NULL:
        return -1
    if b.data == NULL:
        fc_debug_count(buffer_debug_counters(b), FC_LIVE_BUFFERS, 1)
    b.data = grown
    b.capacity = wanted
    return 0


cdef inline int buffer_append(Buffer* b, const char* bytes_, size_t n) noexcept nogil:
    if n == 0:
        return 0                      # (memcpy into a released buffer's NULL is undefined, even of 0 bytes)
    if buffer_reserve(b, n) != 0:
        return -1
    memcpy(b.data + b.end, bytes_, n)
    b.end += n
    return 0


cdef inline int buffer_append_decimal(Buffer* b, uint64_t value) noexcept nogil:
    cdef char digits[24]
    cdef int i = 24
    if value == 0:
        return buffer_append(b, "0", 1)
    while value:
        i -= 1
        digits[i] = <char>(48 + value % 10)
        value //= 10
    return buffer_append(b, digits + i, 24 - i)


cdef inline void buffer_consume(Buffer* b, size_t n) noexcept nogil:
    b.start += n
    if b.start >= b.end:
        b.start = 0
        b.end = 0


cdef inline void buffer_truncate(Buffer* b, size_t length) noexcept nogil:
    """Keep only the first `length` bytes of the content: drops what was appended after a
    buffer_length() taken earlier (a half-written response rolled back)."""
    if length < b.end - b.start:
        b.end = b.start + length


cdef inline void buffer_release(Buffer* b) noexcept nogil:
    """Give the memory back (to the bin, when it is a block of the bin's size and the bin has room);
    the buffer is empty afterwards."""
    if b.data != NULL:
        fc_debug_count(buffer_debug_counters(b), FC_LIVE_BUFFERS, -1)
        if b.bin != NULL and b.capacity == b.bin.block_size and b.bin.count < BUFFER_BIN_SLOTS:
            fc_poison_block(b.data, b.capacity)
            b.bin.blocks[b.bin.count] = b.data
            b.bin.count += 1
        else:
            free(b.data)
    b.data = NULL
    b.start = 0
    b.end = 0
    b.capacity = 0


cdef inline void buffer_release_if_empty(Buffer* b) noexcept nogil:
    if b.start == b.end and b.data != NULL:
        buffer_release(b)


cdef void buffer_bin_empty(BufferBin* bin) noexcept nogil:
    while bin.count > 0:
        bin.count -= 1
        fc_unpoison_block(bin.blocks[bin.count], bin.block_size)
        free(bin.blocks[bin.count])

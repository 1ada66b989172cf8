# buffer.pxi: growable byte buffers with reserve / consume (the h2o and py-pgproto shape).
#
# A Buffer holds bytes in data[start:end] inside an allocation of `capacity` bytes. Readers consume
# from the front (start moves); writers reserve room at the back and then advance `end`. Nobody keeps
# a pointer into `data` across a reserve, because reserve may move it: code keeps offsets instead.
# An empty buffer owns no memory (data is NULL), so an idle keep-alive connection costs only its
# struct. Out of memory is an error code, never an abort, and leaves the buffer as it was.

cdef enum:
    BUFFER_MIN_ALLOCATION = 4096

ctypedef struct Buffer:
    char* data
    size_t start
    size_t end
    size_t capacity


cdef inline size_t buffer_length(const Buffer* b) noexcept nogil:
    return b.end - b.start


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
    if b.start > 0:
        memmove(b.data, b.data + b.start, used)
        b.start = 0
        b.end = used
    grown = <char*>realloc(b.data, wanted)
    if grown == NULL:
        return -1
    if b.data == NULL:
        fc_debug_count(FC_LIVE_BUFFERS, 1)
    b.data = grown
    b.capacity = wanted
    return 0


cdef inline int buffer_append(Buffer* b, const char* bytes_, size_t n) noexcept nogil:
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


cdef inline void buffer_release(Buffer* b) noexcept nogil:
    """Give the memory back; the buffer is empty afterwards."""
    if b.data != NULL:
        fc_debug_count(FC_LIVE_BUFFERS, -1)
    free(b.data)
    b.data = NULL
    b.start = 0
    b.end = 0
    b.capacity = 0


cdef inline void buffer_release_if_empty(Buffer* b) noexcept nogil:
    if b.start == b.end and b.data != NULL:
        buffer_release(b)

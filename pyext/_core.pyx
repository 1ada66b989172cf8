# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""fastcore._core: the compiled hot path of fastcore.

Theory of operation (docs/ARCHITECTURE.md has the whole picture):

    main thread (Python)     creates the listening socket, builds a Core, starts the threads,
                             waits for the stop                                   (core.pxi)
    listener thread (C)      epoll on the listening socket; accept4; push the fd on the bounded
                             queue; wake one worker through its eventfd          (listener.pxi)
    queue                    ring of fds under one mutex                          (queue.pxi)
    worker threads (C)       own an epoll set each; per connection: read, answer in C, write,
                             keep-alive, pipelining, close      (worker.pxi, connection.pxi,
                             serve.pxi), as the connection's state machine decides (protocol.pxi)
    Python batch             once per worker loop turn, the GIL is taken to call the handler
                             for every request that needs it (capped)              (batch.pxi),
                             whose results are written into the output          (serializer.pxi)
    Python objects           Request, Response, FileWrapper, BodyReader (python.pxi), the WSGI
                             fast path (wsgi.pxi), how requests reach Python (dispatch.pxi)

The threads run with the GIL released: every function they call is `noexcept nogil`, except
worker_run_python_batch, which takes the GIL on purpose. The fragments are included in
dependency order; each opens with its own theory of operation.
"""

include "system.pxi"
include "buffer.pxi"
include "parser.pxi"
include "websocket_frames.pxi"
include "websocket_handshake.pxi"
include "websocket_deflate.pxi"
include "state.pxi"
include "queue.pxi"
include "timers.pxi"
include "response.pxi"
include "access.pxi"
include "protocol.pxi"
include "serve.pxi"
include "connection.pxi"
include "bridge.pxi"
include "websocket.pxi"
include "worker.pxi"
include "listener.pxi"
include "python.pxi"
include "wsgi.pxi"
include "dispatch.pxi"
include "serializer.pxi"
include "core.pxi"
include "batch.pxi"
include "asgi.pxi"
include "asgi_websocket.pxi"
include "websocket_native.pxi"
include "testing.pxi"

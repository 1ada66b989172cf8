# websocket_handshake.pxi: (being written; see /work/notes/WS_CONTRACT.md)

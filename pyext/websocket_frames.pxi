# websocket_frames.pxi: (being written; see /work/notes/WS_CONTRACT.md)

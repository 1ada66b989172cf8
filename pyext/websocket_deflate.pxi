# websocket_deflate.pxi: (being written; see /work/notes/WS_CONTRACT.md)

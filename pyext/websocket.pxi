# websocket.pxi: (being written)

# asgi_websocket.pxi: (being written)

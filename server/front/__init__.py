"""The front door: everything between an accepted socket and a WebSocket connection.

The listener accepts (with limits per client address), reads the request head (a fast path for
plain heads, h11 for the rest), answers plain HTTP (``Request``/``Response``, static files, the
router's HTTP routes) or checks the upgrade handshake and hands the stream to ``server.engine``.
"""

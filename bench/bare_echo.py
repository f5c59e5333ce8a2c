"""A bare trio-websocket echo server: corral's baseline in benchmarks and conformance tests.

Echoes every text and binary message at any path. Run: ``python bench/bare_echo.py --port 9001``.
"""

from __future__ import annotations

import argparse

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

# Autobahn's largest messages (cases 9.*) are 16 MiB; trio-websocket's default limit is 1 MiB.
MAX_MESSAGE_SIZE = 32 * 1024 * 1024


async def echo(request: WebSocketRequest) -> None:
    """Accept the connection and send every message back, text as text and binary as binary."""
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except ConnectionClosed:
        pass


async def serve(host: str, port: int) -> None:
    """Serve the echo handler on host:port until cancelled."""
    await serve_websocket(echo, host, port, ssl_context=None, max_message_size=MAX_MESSAGE_SIZE)


def main(argv: list[str] | None = None) -> None:
    """Parse ``--host``/``--port`` and run the server until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9001, help="port to bind (default 9001)")
    args = parser.parse_args(argv)
    try:
        trio.run(serve, args.host, args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

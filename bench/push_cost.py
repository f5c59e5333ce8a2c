"""The server's CPU per fan-out delivery, in one process: what ``fanout.py``'s deliveries/s
cannot resolve on a loaded machine.

A server runs in this process with N subscribers (plain sockets, upgraded by hand, never
answering), all in one group; each step publishes a burst of M messages, lets the held writes
go, then drains every client socket without waiting. The figure is the process's CPU time
(``time.process_time``: the scheduler's share for other processes does not count) per
delivery, clients' draining included: ``broadcast`` is ``server.broadcast`` (one frame
encoded once, pushed to every outbox), ``cowboy`` is ``actors.publish`` with each
subscriber's synchronous ``websocket_info`` returning the ``Text``.

Run: ``python bench/push_cost.py broadcast|cowboy [--tree CHECKOUT]``; ``ab.py`` runs it on
two checkouts alternately (on a checkout older than this script too).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path
from typing import Any

SUBSCRIBERS = 500
STEPS = 40
BURST = 20
_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def measure(variant: str) -> float:
    """CPU microseconds per delivery for ``variant`` (the server is imported by then)."""
    import trio
    import trio.testing

    import actors
    from server import App, Text, WebSocketHandler, broadcast, serving, websocket

    class Subscriber(WebSocketHandler[None]):
        def websocket_init(self, state: Any) -> tuple[None, Any]:
            actors.join("subscribers")
            return None, state

        def websocket_info(self, message: Any, state: Any) -> tuple[Text, Any]:
            return Text(message), state

    async def run() -> float:
        app = App([websocket("/", Subscriber())])
        async with serving(app, host="127.0.0.1", port=0) as served:
            clients = []
            for _ in range(SUBSCRIBERS):
                client = socket.create_connection(("127.0.0.1", served.port))
                client.sendall(_UPGRADE)
                clients.append(client)
            while len(served.node.local_members("subscribers")) < SUBSCRIBERS:
                await trio.sleep(0.01)
            await trio.testing.wait_all_tasks_blocked(0.01)
            for client in clients:
                client.setblocking(False)
                _drain(client)
            message = "x" * 60
            received = 0
            started = time.process_time()
            for _ in range(STEPS):
                for _ in range(BURST):
                    if variant == "broadcast":
                        broadcast("subscribers", message, node=served.node)
                    else:
                        served.node.publish("subscribers", message)
                await trio.testing.wait_all_tasks_blocked()
                for client in clients:
                    received += _drain(client)
            spent = time.process_time() - started
            for client in clients:
                client.close()
        expected = STEPS * BURST * SUBSCRIBERS * (2 + len(message))  # 2: a short frame's header
        if received != expected:
            raise SystemExit(f"push_cost: the clients got {received:,} bytes, not {expected:,}")
        return spent / (STEPS * BURST * SUBSCRIBERS) * 1e6

    return trio.run(run)


def _drain(client: socket.socket) -> int:
    """Read what ``client`` has without waiting; how many bytes."""
    got = 0
    try:
        while chunk := client.recv(1 << 20):
            got += len(chunk)
    except BlockingIOError:
        pass
    return got


def main(argv: list[str] | None = None) -> int:
    """Parse, measure, print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=("broadcast", "cowboy"))
    parser.add_argument("--tree", type=Path, help="the checkout whose server runs")
    args = parser.parse_args(argv)
    if args.tree is not None:
        sys.path.insert(0, str(args.tree))
    cost = measure(args.variant)
    print(f"{args.variant}: {cost:.3f} us of CPU per delivery ({SUBSCRIBERS} subscribers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A server with a topics route on Redis, in a process of its own, for tests that kill it:
``python -m tests.cluster.topic_node URL PREFIX``. It prints its port once it serves."""

from __future__ import annotations

import sys

import trio

from server import App, ServerOptions, serving, websocket
from server.topics import TopicsHandler


async def main(url: str, prefix: str) -> None:
    options = ServerOptions(redis_url=url, cluster_prefix=prefix)
    app = App([websocket("/topics", TopicsHandler())], options=options)
    async with serving(app, port=0) as running:
        print(running.port, flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])

"""A node in a process of its own, for tests that kill it: ``python -m tests.cluster.node_process
URL PREFIX NODE_ID``. It registers ``victim``, joins ``victims``, prints ``ready`` and waits."""

from __future__ import annotations

import sys

import trio

import actors
from actors.backend_redis import RedisBackend

from .conftest import HEARTBEAT, LEASE


async def main(url: str, prefix: str, node_id: str) -> None:
    backend = RedisBackend(url, prefix=prefix, node_id=node_id, heartbeat=HEARTBEAT, lease=LEASE)
    async with actors.open_node(backend=backend) as node, trio.open_nursery() as nursery:
        await backend.wait_connected()
        victim = node.spawn(nursery, _idle, name="victim")
        node.join("victims", victim)
        print("ready", flush=True)
        await trio.sleep_forever()


async def _idle(actor: actors.Actor) -> None:
    await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])

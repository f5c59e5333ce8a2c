"""A node with presences in a process of its own, for tests that kill it: ``python -m
tests.cluster.presence_process URL PREFIX NODE_ID COUNT``. It tracks COUNT actors under topic
``room`` as ``doomed0``... and one as ``ann`` (whom the test also tracks on its own node),
prints ``ready`` and waits."""

from __future__ import annotations

import sys

import trio

import actors
from actors import presence
from actors.backend_redis import RedisBackend

from .conftest import HEARTBEAT, LEASE
from .presence_kit import SETTINGS


async def main(url: str, prefix: str, node_id: str, count: str) -> None:
    backend = RedisBackend(url, prefix=prefix, node_id=node_id, heartbeat=HEARTBEAT, lease=LEASE)
    async with (
        actors.open_node(backend=backend) as node,
        presence.open_presence(SETTINGS, node=node) as tracker,
        trio.open_nursery() as nursery,
    ):
        await backend.wait_connected()
        for index in range(int(count)):
            tracker.track("room", f"doomed{index}", {"n": index}, node.spawn(nursery, _idle))
        tracker.track("room", "ann", {"tab": "doomed"}, node.spawn(nursery, _idle))
        print("ready", flush=True)
        await trio.sleep_forever()


async def _idle(actor: actors.Actor) -> None:
    await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:5])

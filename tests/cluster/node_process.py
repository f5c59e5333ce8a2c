"""A node in a process of its own, for tests that kill it: ``python -m tests.cluster.node_process
URL PREFIX NODE_ID``. It registers ``victim``, joins ``victims``, prints ``ready`` and waits."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

import actors
from actors.backend_redis import RedisBackend

from .conftest import HEARTBEAT, LEASE

ROOT = Path(__file__).resolve().parents[2]


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


@asynccontextmanager
async def node_in_process(module: str, *args: str) -> AsyncIterator[trio.Process]:
    """``python -m MODULE ARGS...`` (a node that prints ``ready`` once it is in the cluster),
    yielded once ready; killed and reaped on every path out."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(20):
            assert (await process.stdout.receive_some()).startswith(b"ready")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])

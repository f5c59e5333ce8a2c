"""A real Redis for every cluster test, and nodes on it with a key prefix of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio

import actors
from actors.backend_redis import RedisBackend

from .redis_kit import MACHINE_PORT, RedisServer, answers, unique_prefix

HEARTBEAT = 0.05
LEASE = 0.5


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis at 127.0.0.1:6379 if it answers, else a redis-server we start."""
    if answers(MACHINE_PORT):
        yield f"redis://127.0.0.1:{MACHINE_PORT}"
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill and restart."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def cluster_node(
    url: str, prefix: str, node_id: str, *, connected: bool = True
) -> AsyncIterator[actors.Node]:
    """A node on Redis with short heartbeats (a dead node is noticed within half a second);
    ``connected=False`` does not wait for Redis (which may be down)."""
    backend = RedisBackend(url, prefix=prefix, node_id=node_id, heartbeat=HEARTBEAT, lease=LEASE)
    async with actors.open_node(backend=backend) as node:
        if connected:
            await backend.wait_connected()
        yield node


@asynccontextmanager
async def two_nodes(
    url: str, prefix: str
) -> AsyncIterator[tuple[actors.Node, actors.Node, trio.Nursery]]:
    """Nodes ``a`` and ``b`` on one Redis, and a nursery for their actors (cancelled once
    the block is done)."""
    async with (
        cluster_node(url, prefix, "a") as a,
        cluster_node(url, prefix, "b") as b,
        trio.open_nursery() as nursery,
    ):
        yield a, b, nursery
        nursery.cancel_scope.cancel()


def backend_of(node: actors.Node) -> RedisBackend:
    assert isinstance(node.backend, RedisBackend)
    return node.backend

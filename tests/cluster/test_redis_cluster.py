"""The backend on a Redis Cluster (``redis+cluster://`` seeds): names, groups and messages
across nodes through sharded pub/sub, and a primary failing over during a steady stream.

Each test starts its own cluster of ``redis-server`` processes on free loopback ports in a
temporary directory (``redis_cluster_kit``) and removes it at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
import wsproto.events as ev

from actors.backend_redis import RedisBackend
from server import broadcast
from tests.actors.kit import Recorder, idle
from tests.server.corral_process import corral_serve
from tests.server.kit import raw_client

from .conftest import backend_of, cluster_node
from .redis_cluster_kit import RedisCluster
from .redis_kit import unique_prefix


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """3 primaries, no replicas: shared by this module's tests (each has its own prefix)."""
    cluster = RedisCluster(primaries=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def failing_cluster() -> Iterator[RedisCluster]:
    """3 primaries, each with a replica that takes over when it dies: this test's own."""
    cluster = RedisCluster(primaries=3, replicas=1, node_timeout_ms=500)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_a_cluster_url_gives_sharded_keys_and_channels(prefix: str) -> None:
    backend = RedisBackend("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", prefix=prefix)
    assert backend.broker.seeds == (("127.0.0.1", 7000), ("127.0.0.1", 7001))
    keys = backend.keys
    # Names, leases, memberships and events share one slot (the claim script needs them
    # together); each node's inbox hashes on its whole name, so messages spread over shards.
    assert keys.name("room").startswith(f"{{{prefix}}}:")
    assert keys.alive("a").startswith(f"{{{prefix}}}:")
    assert keys.events.startswith(f"{{{prefix}}}:")
    assert keys.inbox("a") == f"{prefix}:node:a"


async def test_names_groups_and_messages_cross_nodes_through_sharded_pub_sub(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    url = redis_cluster.url
    async with (
        cluster_node(url, prefix, "a") as a,
        cluster_node(url, prefix, "b") as b,
        trio.open_nursery() as nursery,
    ):
        far, group_member = Recorder(), Recorder()
        b.spawn(nursery, far, name="far")
        member = b.spawn(nursery, group_member)
        b.join("room", member)
        assert (await a.wait_for("far", timeout=5)).node == "b"
        await backend_of(a).wait_until(lambda: a.members("room") == [member])
        assert a.send("far", "hello")
        assert a.publish("room", "to the room") == 1
        assert await far.wait_for_count(1) == ["hello"]
        assert await group_member.wait_for_count(1) == ["to the room"]
        # The nodes listen on shard channels (SSUBSCRIBE), not on classic ones.
        inbox = backend_of(b).keys.inbox("b")
        primary = redis_cluster.primary_of(inbox)
        assert redis_cluster.cli(primary, "pubsub", "shardnumsub", inbox).split() == [inbox, "1"]
        assert redis_cluster.cli(primary, "pubsub", "numsub", inbox).split() == [inbox, "0"]
        nursery.cancel_scope.cancel()


async def test_a_name_race_on_the_cluster_has_one_winner(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    url = redis_cluster.url
    async with (
        cluster_node(url, prefix, "a") as a,
        cluster_node(url, prefix, "b") as b,
        trio.open_nursery() as nursery,
    ):
        first = a.spawn(nursery, idle, name="only")
        assert await a.wait_for("only", timeout=5) == first
        await backend_of(b).wait_until(lambda: b.whereis("only") == first)
        assert backend_of(a).cluster().rejected == 0
        nursery.cancel_scope.cancel()


async def test_frames_reach_connections_on_another_node(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    url = redis_cluster.url
    async with (
        cluster_node(url, prefix, "a") as a,
        cluster_node(url, prefix, "b") as b,
        trio.open_nursery() as nursery,
    ):
        member = Recorder()
        b.join("fan", b.spawn(nursery, member))
        await backend_of(a).wait_until(lambda: len(a.members("fan")) == 1)
        assert broadcast("fan", "frame", node=a) == 1  # a plain actor gets the message itself
        assert await member.wait_for_count(1) == ["frame"]
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_primary_failing_over_mid_stream_loses_nothing_silently(
    failing_cluster: RedisCluster, prefix: str
) -> None:
    url = failing_cluster.url
    async with (
        cluster_node(url, prefix, "a") as a,
        cluster_node(url, prefix, "b") as b,
        trio.open_nursery() as nursery,
    ):
        stream = Recorder()
        b.spawn(nursery, stream, name="stream")
        b.join("room", b.spawn(nursery, idle, name="in-room"))
        await a.wait_for("stream", timeout=5)
        await backend_of(a).wait_until(lambda: len(a.members("room")) == 1)

        sent = 0

        async def send_steadily(count: int) -> None:
            nonlocal sent
            for i in range(count):
                a.send("stream", i)  # a loss is counted in a.cluster().lost
                sent += 1
                await trio.sleep(0.002)

        # Kill the primary that carries the stream: b's inbox channel's shard.
        victim = failing_cluster.primary_of(backend_of(b).keys.inbox("b"))
        async with trio.open_nursery() as traffic:
            traffic.start_soon(send_steadily, 1500)
            await trio.sleep(0.5)
            failing_cluster.kill(victim)
        with trio.fail_after(30):
            await trio.to_thread.run_sync(failing_cluster.wait_ok)
            await backend_of(a).wait_until(lambda: a.cluster().connected)
            await backend_of(b).wait_until(lambda: b.cluster().connected)
            # What was not counted lost arrives; nothing is lost without being counted.
            await backend_of(b).wait_until(lambda: len(stream.messages) + a.cluster().lost >= sent)
        lost = a.cluster().lost
        assert sent == 1500
        assert len(stream.messages) + lost == sent, (len(stream.messages), lost)
        assert stream.messages == sorted(stream.messages)  # in order, gaps counted
        # Names and memberships survived the failover, and new ones work.
        assert a.whereis("stream") == b.whereis("stream") is not None
        assert [m.node for m in a.members("room")] == ["b"]
        later = Recorder()
        b.spawn(nursery, later, name="after-failover")
        await a.wait_for("after-failover", timeout=10)
        a.send("after-failover", "works")
        assert await later.wait_for_count(1) == ["works"]
        nursery.cancel_scope.cancel()


async def test_corral_serve_with_two_workers_on_a_redis_cluster_broadcasts_across_them(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    """The whole server on a Redis Cluster: workers meet through it and a broadcast reaches
    subscribers on both (bench/cluster_app.py's /sub and /pub)."""
    async with (
        corral_serve(
            tmp_path,
            "bench.cluster_app:app",
            "--workers",
            "2",
            "--redis",
            redis_cluster.url,
            "--cluster-prefix",
            unique_prefix(),
            listening=2,
        ) as corral,
        AsyncExitStack() as clients,
    ):
        subscribers = [
            await clients.enter_async_context(raw_client(corral.port, "/sub")) for _ in range(8)
        ]
        publisher = await clients.enter_async_context(raw_client(corral.port, "/pub"))
        with trio.fail_after(20):
            for subscriber in subscribers:
                assert await subscriber.message() == "joined"
            while True:
                await publisher.send(ev.TextMessage("members"))
                if await publisher.message() == "members 8":
                    break
                await trio.sleep(0.05)
            await publisher.send(ev.TextMessage("to everyone"))
            for subscriber in subscribers:
                assert await subscriber.message() == "to everyone"
        assert "Traceback" not in corral.log

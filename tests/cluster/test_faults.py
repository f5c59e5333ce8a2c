"""Redis going away and coming back: local delivery carries on, losses are counted, the
nodes reconnect, resubscribe and re-claim their names (a private redis-server per test)."""

from __future__ import annotations

import logging

import coredis
import pytest
import trio

import actors
from actors import backend_wire as wire
from server.ops.log_format import is_library_noise
from tests.actors.kit import Recorder, idle

from .conftest import backend_of, cluster_node
from .redis_kit import RedisServer


async def test_redis_restart_loses_only_cross_node_messages_and_the_nodes_come_back(
    private_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = private_redis.url
    async with (
        cluster_node(url, prefix, "a") as a,
        cluster_node(url, prefix, "b") as b,
        trio.open_nursery() as nursery,
    ):
        local, remote = Recorder(), Recorder()
        here = a.spawn(nursery, local)
        b.spawn(nursery, remote, name="far")
        a.spawn(nursery, idle, name="near")
        await a.wait_for("far", timeout=5)
        a.send("far", "before")
        assert await remote.wait_for_count(1) == ["before"]

        private_redis.stop()
        await backend_of(a).wait_until(lambda: not a.cluster().connected)
        assert a.send(here, "local still works")
        assert await local.wait_for_count(1) == ["local still works"]
        assert not a.send("far", "lost")  # the view still knows the name; the message is lost
        assert a.cluster().lost >= 1

        private_redis.start()
        await backend_of(a).wait_until(lambda: a.cluster().connected)
        await backend_of(b).wait_until(lambda: b.cluster().connected)
        assert a.cluster().reconnects >= 1
        resubscribed = a.cluster().last_resubscribe
        assert resubscribed is not None and resubscribed > 0
        # Both nodes re-claimed their names in the new (empty) Redis and hear each other.
        await backend_of(b).wait_until(lambda: b.whereis("near") is not None)
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        a.send("far", "after")
        assert await remote.wait_for_count(2) == ["before", "after"]
        nursery.cancel_scope.cancel()
    # The log corral serve writes: one line per node for the outage, none from coredis.
    assert any(record.name == "coredis" for record in caplog.records)  # it did chatter
    shown = [record for record in caplog.records if not is_library_noise(record)]
    assert not [record for record in shown if record.name.startswith("coredis")]
    outages = [record for record in shown if " unreachable (" in record.getMessage()]
    assert sorted(record.getMessage().split(":")[0] for record in outages) == ["node a", "node b"]


async def test_a_node_starts_while_redis_is_down_and_joins_when_it_comes_up(
    prefix: str,
) -> None:
    server = RedisServer()  # not started yet
    async with (
        cluster_node(server.url, prefix, "early", connected=False) as a,
        trio.open_nursery() as nursery,
    ):
        recorder = Recorder()
        address = a.spawn(nursery, recorder, name="early")
        assert a.send("early", "works alone")
        assert await recorder.wait_for_count(1) == ["works alone"]
        server.start()
        try:
            await backend_of(a).wait_until(lambda: a.cluster().connected)
            async with cluster_node(server.url, prefix, "late") as late:
                assert await late.wait_for("early", timeout=5) == address
        finally:
            nursery.cancel_scope.cancel()
            server.stop()


async def test_messages_for_a_node_that_is_not_listening_are_counted_lost(
    redis_url: str, prefix: str
) -> None:
    async with cluster_node(redis_url, prefix, "a") as a:
        # A node that heartbeats but whose subscription is gone (its own link to Redis broke).
        backend = backend_of(a)
        client = coredis.Redis.from_url(redis_url)
        async with client:
            await client.publish(f"{prefix}:events", wire.encode((wire.HEARTBEAT, "deaf")))
            await backend.wait_until(lambda: backend.is_alive("deaf"))
            for i in range(3):
                assert a.send(actors.Address("deaf", 1), i)  # queued: the loss is found later
            await backend.wait_until(lambda: a.cluster().lost == 3)
        assert a.cluster().sent == 0

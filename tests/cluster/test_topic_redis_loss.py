"""Redis restarted without its data under a topics server: its clients are told
``unrecoverable`` (a new epoch), never left with a silent gap."""

from __future__ import annotations

import trio

from actors import topics
from actors.topics import Lost, Post, Unrecoverable
from server import App, ServerOptions, serving, websocket
from server.topics import TopicsHandler
from server.topics.client import open_topic_client

from .redis_kit import RedisServer


async def test_clients_are_told_unrecoverable_when_redis_loses_its_data(
    private_redis: RedisServer, prefix: str
) -> None:
    options = ServerOptions(redis_url=private_redis.url, cluster_prefix=prefix)
    app = App([websocket("/topics", TopicsHandler())], options=options)
    async with serving(app, port=0) as running:
        engine = topics.engine(running.node)
        async with open_topic_client(running.url("/topics"), min_delay=0.01) as client:
            await client.subscribe("news")
            with trio.fail_after(10):
                while client.positions["news"] is None:
                    await trio.sleep(0.01)
            before = await engine.post("news", "before")
            with trio.fail_after(10):
                assert await client.receive() == Post("news", before, "before")
            private_redis.stop()
            private_redis.start()  # empty: nothing is kept on disk
            with trio.fail_after(10):
                lost = await client.receive()
            assert isinstance(lost, Unrecoverable) and lost.why is Lost.EPOCH
            assert lost.asked == before and lost.current.epoch != before.epoch
            after = await engine.post("news", "after")
            with trio.fail_after(10):
                assert await client.receive() == Post("news", after, "after")

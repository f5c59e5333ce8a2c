"""The Python topic client: it reconnects after a drop and resumes with no gap and no
duplicate, and says so when a restarted server cannot resume it."""

from __future__ import annotations

import socket

import trio

import actors
from actors import topics
from actors.topics import Lost, Post, Unrecoverable
from server import App, serving, websocket
from server.topics import TopicsHandler
from server.topics.client import TopicClient, open_topic_client

app = App([websocket("/topics", TopicsHandler())])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def next_post(client: TopicClient) -> Post:
    with trio.fail_after(10):
        event = await client.receive()
    assert isinstance(event, Post), event
    return event


async def test_the_client_resumes_after_its_connection_is_killed_mid_stream() -> None:
    async with serving(app, port=0) as running:
        node = running.node
        engine = topics.engine(node)
        async with open_topic_client(running.url("/topics"), min_delay=0.01) as client:
            await client.subscribe("seq")
            with trio.fail_after(10):
                while client.positions["seq"] is None:
                    await trio.sleep(0.01)
            received: list[int] = []
            for n in range(1, 301):
                await engine.post("seq", str(n))
                await trio.lowlevel.checkpoint()  # the client reads as posts flow
                if n in (100, 200):  # the server side of the connection dies, mid-stream
                    for info in node.actors():
                        if info.kind == "connection":
                            node.exit(info.address, actors.KILLED)
                if n in (150, 250):  # it is away for 50 posts each time
                    with trio.fail_after(10):
                        while client.connects < n // 100 + 1:
                            await trio.sleep(0.01)
            while len(received) < 300:
                received.append(int((await next_post(client)).data))
            assert received == list(range(1, 301))
            assert client.connects == 3


async def test_a_restarted_server_is_a_new_epoch_and_the_client_is_told() -> None:
    port = free_port()
    async with open_topic_client(f"ws://127.0.0.1:{port}/topics", min_delay=0.01) as client:
        await client.subscribe("news")
        async with serving(app, port=port) as running:
            engine = topics.engine(running.node)
            with trio.fail_after(10):
                while client.positions["news"] is None:
                    await trio.sleep(0.01)
            before = await engine.post("news", "before")
            assert (await next_post(client)).position == before
        async with serving(app, port=port) as running:
            after = await topics.engine(running.node).post("news", "after the restart")
            with trio.fail_after(10):
                lost = await client.receive()
            assert isinstance(lost, Unrecoverable) and lost.why is Lost.EPOCH
            assert lost.asked == before and lost.current.epoch != before.epoch
            assert (await next_post(client)).position == after

"""The chat on Redis keeps a room's history in the room's topic: when the room's server goes
away, the room that starts again on the other server has it, and a client resumes there."""

from __future__ import annotations

from examples.chat import protocol
from tests.examples.kit import connect, join, member

from .test_chat_cluster import chat_node, room_seen


async def test_the_history_outlives_the_rooms_server(redis_url: str, prefix: str) -> None:
    async with chat_node(redis_url, prefix) as second:
        async with chat_node(redis_url, prefix) as first, member(first, "lobby", "ann") as ann:
            for text in ("one", "two"):
                await ann.send(type="say", text=text)
            said = [await ann.receive_type("said") for _ in range(2)]
            last = said[-1]
            room = await room_seen(second, "lobby")
            assert first.node is not None and room.node == first.node.name
        # The first server drained: the room starts again on the second, from its topic.
        async with connect(second, "/ws/lobby") as bob:
            history = await join(bob, "bob")
            assert [message["text"] for message in history["messages"]] == ["one", "two"]
        async with connect(second, "/ws/lobby") as ann:
            after = {"epoch": last["epoch"], "offset": 1}
            await ann.send(type="subscribe", topic=protocol.topic_of("lobby"), **after)
            await ann.send(type="join", nick="ann")
            assert (await ann.receive_type("subscribed"))["offset"] == 1
            assert (await ann.receive_type("said"))["text"] == "two"

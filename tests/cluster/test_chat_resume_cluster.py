"""The chat resumed on two servers sharing Redis: positions are the room's topic's on Redis, so
a client that drops from one server and joins the other with its last position gets exactly
what was said meanwhile, once each, in order."""

from __future__ import annotations

from examples.chat.history import topic_of
from tests.examples.kit import connect, member
from tests.examples.test_chat_resume import position, resume, says

from .test_chat_cluster import chat_node


async def test_a_client_resumes_on_the_other_server_with_nothing_missed_or_twice(
    redis_url: str, prefix: str
) -> None:
    async with chat_node(redis_url, prefix) as first, chat_node(redis_url, prefix) as second:
        async with member(first, "lobby", "ann") as ann:
            async with member(second, "lobby", "bob") as bob:
                await ann.send(type="say", text="before")
                last = (await says(bob, 1))[0]
                assert last["topic"] == topic_of("lobby")
            for n in range(20):
                await ann.send(type="say", text=f"away {n}", id=n)
            await says(ann, 21)
            async with connect(first, "/ws/lobby") as bob:
                answer = await resume(bob, "bob", position(last))
                assert answer["type"] == "subscribed"
                missed = await says(bob, 20)
                assert [frame["text"] for frame in missed] == [f"away {n}" for n in range(20)]
                offsets = [frame["offset"] for frame in missed]
                assert offsets == list(range(last["offset"] + 1, last["offset"] + 21))
                await ann.send(type="say", text="live")
                assert [frame["text"] for frame in await says(bob, 1)] == ["live"]
                rest = await bob.drain(0.3)
                assert not [frame for frame in rest if frame["type"] == "said"], rest


async def test_an_epoch_redis_does_not_know_is_told_unrecoverable(
    redis_url: str, prefix: str
) -> None:
    async with chat_node(redis_url, prefix) as node, member(node, "lobby", "ann") as ann:
        await ann.send(type="say", text="kept")
        await says(ann, 1)
        async with connect(node, "/ws/lobby") as bob:
            answer = await resume(bob, "bob", {"epoch": "from-before", "offset": 3})
            assert answer["type"] == "unrecoverable" and answer["why"] == "epoch"
            assert [frame["text"] for frame in await says(bob, 1)] == ["kept"]

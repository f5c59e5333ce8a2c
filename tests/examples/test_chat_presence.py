"""The chat's member list from presence, and says the room confirms, over real sockets."""

from __future__ import annotations

from examples.chat import make_app
from server.tokens import TokenAuth
from tests.examples.kit import Client, connect, join, member
from tests.server.kit import client, running_clean

SECRET = "chat secret, 32 bytes or more...."
auth = TokenAuth(SECRET)


async def test_a_user_with_two_connections_is_one_member_and_closing_one_is_not_a_leave() -> None:
    token = auth.issue("ann", expires_in=60, topics=["room:lobby"])
    bob_token = auth.issue("bob", expires_in=60, topics=["room:lobby"])
    async with running_clean(make_app(secret=SECRET)) as server:
        url = server.url("/ws/lobby")
        async with client(url, subprotocols=["chat", f"bearer.{bob_token}"]) as ws:
            bob = Client(ws)
            await join(bob, "bob")
            async with client(url, subprotocols=["chat", f"bearer.{token}"]) as first:
                await join(Client(first), "ann")
                assert await bob.receive() == {"type": "joined", "nick": "ann"}
                async with client(url, subprotocols=["chat", f"bearer.{token}"]) as second:
                    tab = Client(second)
                    await tab.send(type="join", nick="ann")
                    assert (await tab.receive())["type"] == "history"
                    members = await tab.receive()
                    assert sorted(members["nicks"]) == ["ann", "bob"]  # ann once
                    await bob.send(type="say", text="hi ann")
                    assert (await tab.receive())["text"] == "hi ann"
                assert (await bob.receive())["text"] == "hi ann"
                await bob.nothing_more(0.5)  # ann's second tab closed: ann is still here
            assert await bob.receive() == {"type": "left", "nick": "ann"}


async def test_without_a_token_a_taken_nick_is_still_refused() -> None:
    async with running_clean(make_app()) as server, member(server, "lobby", "ann"):
        async with connect(server, "/ws/lobby") as other:
            await other.send(type="join", nick="ann")
            assert (await other.receive())["reason"].startswith("nick taken")


async def test_a_say_with_an_id_is_confirmed_once_the_room_has_it() -> None:
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as ann:
        await ann.send(type="say", text="hello", id=41)
        assert (await ann.receive())["text"] == "hello"
        assert await ann.receive() == {"type": "sent", "id": 41}
        await ann.send(type="say", text="bad id", id="x")
        assert (await ann.receive())["reason"].startswith("bad id")


async def test_a_say_with_an_id_before_joining_is_refused_with_its_id() -> None:
    async with running_clean(make_app()) as server, connect(server, "/ws/lobby") as ann:
        await ann.send(type="say", text="too early", id=3)
        error = await ann.receive()
        assert error["id"] == 3 and error["reason"].startswith("join first")

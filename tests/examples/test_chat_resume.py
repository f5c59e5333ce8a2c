"""The chat resumed over real WebSockets: a client that drops and joins again with the position
of the last message it showed gets exactly what was said meanwhile, in order, once each; a
position that cannot be honoured gets the plain ``unrecoverable`` answer and what is still kept."""

from __future__ import annotations

from typing import Any

from examples.chat import make_app
from tests.examples.kit import Client, connect, join, member
from tests.server.kit import running_clean


def position(frame: dict[str, Any]) -> dict[str, Any]:
    """The position a ``said`` or ``history`` frame carries, as a join sends it back."""
    assert frame["topic"] == "room:lobby", frame
    return {"epoch": frame["epoch"], "offset": frame["offset"]}


async def says(client: Client, count: int) -> list[dict[str, Any]]:
    """The next ``count`` said frames ``client`` gets (``joined``, ``left``, ``sent`` skipped)."""
    frames = []
    while len(frames) < count:
        frame = await client.receive()
        if frame["type"] == "said":
            frames.append(frame)
        else:
            assert frame["type"] in ("members", "joined", "left", "sent"), frame
    return frames


async def resume(client: Client, nick: str, after: dict[str, Any]) -> dict[str, Any]:
    """Join as ``nick`` from ``after``; return the answer (``subscribed`` or ``unrecoverable``)."""
    await client.send(type="join", nick=nick, **after)
    while (answer := await client.receive())["type"] not in ("subscribed", "unrecoverable"):
        assert answer["type"] in ("members", "joined", "left"), answer  # no history
    assert answer["topic"] == "room:lobby"
    return answer


async def test_a_client_that_drops_and_resumes_gets_exactly_what_was_said_meanwhile() -> None:
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as ann:
        async with member(server, "lobby", "bob") as bob:
            for n in range(5):
                await ann.send(type="say", text=f"before {n}")
            last = (await says(bob, 5))[-1]
        await says(ann, 5)
        for n in range(30):
            await ann.send(type="say", text=f"away {n}", id=n)
        await says(ann, 30)  # all said and kept before bob comes back
        async with connect(server, "/ws/lobby") as bob:
            answer = await resume(bob, "bob", position(last))
            assert answer == {"type": "subscribed", "topic": "room:lobby", **position(last)}
            missed = await says(bob, 30)
            assert [frame["text"] for frame in missed] == [f"away {n}" for n in range(30)]
            offsets = [frame["offset"] for frame in missed]
            assert offsets == list(range(last["offset"] + 1, last["offset"] + 31))
            await ann.send(type="say", text="live")
            live = await says(bob, 1)
            assert live[0]["text"] == "live" and live[0]["offset"] == offsets[-1] + 1
            rest = await bob.drain(0.2)
            assert not [frame for frame in rest if frame["type"] == "said"], rest


async def test_a_client_that_resumes_from_its_history_gets_what_followed_it() -> None:
    """Nothing shown yet but the (empty) history: its position is where to resume from."""
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as ann:
        async with connect(server, "/ws/lobby") as bob:
            history = await join(bob, "bob")
        for n in range(3):
            await ann.send(type="say", text=f"while away {n}")
        await says(ann, 3)
        async with connect(server, "/ws/lobby") as bob:
            await resume(bob, "bob", position(history))
            texts = [frame["text"] for frame in await says(bob, 3)]
            assert texts == [f"while away {n}" for n in range(3)]


async def test_an_unknown_epoch_is_told_unrecoverable_with_what_is_still_kept() -> None:
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as ann:
        await ann.send(type="say", text="kept")
        said = (await says(ann, 1))[0]
        async with connect(server, "/ws/lobby") as bob:
            answer = await resume(bob, "bob", {"epoch": "another", "offset": 7})
            assert answer["why"] == "epoch"
            assert answer["asked"] == {"epoch": "another", "offset": 7}
            assert answer["current"] == position(said)
            assert (answer["epoch"], answer["offset"]) == (said["epoch"], 0)
            assert [frame["text"] for frame in await says(bob, 1)] == ["kept"]


async def test_a_trimmed_position_is_told_unrecoverable_and_gets_the_last_fifty() -> None:
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as ann:
        await ann.send(type="say", text="first")
        first = (await says(ann, 1))[0]
        for n in range(60):
            await ann.send(type="say", text=f"then {n}")
        await says(ann, 60)
        async with connect(server, "/ws/lobby") as bob:
            answer = await resume(bob, "bob", position(first))
            assert answer["why"] == "trimmed"
            texts = [frame["text"] for frame in await says(bob, 50)]
            assert texts == [f"then {n}" for n in range(10, 60)]


async def test_a_position_from_the_future_is_told_unrecoverable() -> None:
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as ann:
        await ann.send(type="say", text="only")
        said = (await says(ann, 1))[0]
        async with connect(server, "/ws/lobby") as bob:
            ahead = {**position(said), "offset": said["offset"] + 5}
            answer = await resume(bob, "bob", ahead)
            assert answer["why"] == "future"
            assert [frame["text"] for frame in await says(bob, 1)] == ["only"]


async def test_a_join_with_half_a_position_is_refused() -> None:
    async with running_clean(make_app()) as server, connect(server, "/ws/lobby") as bob:
        await bob.send(type="join", nick="bob", epoch="e")
        assert (await bob.receive())["reason"].startswith("bad position")
        await bob.send(type="join", nick="bob", epoch="e", offset=-1)
        assert (await bob.receive())["reason"].startswith("bad position")

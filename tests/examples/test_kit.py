"""The example kit's own promises: ``drain`` and ``nothing_more`` wait until all is quiet, so
they see every frame the server sends, and no real-time window decides what they see."""

from __future__ import annotations

import pytest

from examples.chat import make_app
from tests.examples.kit import member
from tests.server.kit import running_clean


async def test_nothing_more_fails_on_a_frame_the_server_has_sent() -> None:
    async with running_clean(make_app()) as served, member(served, "lobby", "ann") as ann:
        async with member(served, "lobby", "bob"):  # ann is told: joined
            with pytest.raises(AssertionError, match="unexpected frames"):
                await ann.nothing_more()


async def test_drain_takes_what_comes_and_stops_when_all_is_quiet() -> None:
    async with running_clean(make_app()) as served, member(served, "lobby", "ann") as ann:
        async with member(served, "lobby", "bob") as bob:
            await bob.send(type="say", text="hi")
            assert [frame["type"] for frame in await ann.drain()] == ["joined", "said"]
        # A leave comes with the next presence diff, a timer away: not "quiet" for drain.
        assert await ann.receive() == {"type": "left", "nick": "bob"}
        await ann.nothing_more()

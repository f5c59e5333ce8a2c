"""Floods from many connections: the chat's message rate per peer address and per room, over real
sockets from several 127.x addresses. The room's readers get what the limits let through, and
are never closed for it (the per-connection throttle alone let 100 connections, or reconnects,
flood a room until its readers were closed with 1013)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import trio
import trio.testing
from trio_websocket import ConnectionClosed

from examples.chat import ChatLimits, make_app
from tests.examples.kit import Client, connect_over, join
from tests.server.kit import WAIT, Served, running_clean

SLOW_READER = 2048
"""The reader's SO_RCVBUF: with the room unlimited, the flood closed it with 1013."""
SAYS = 50
"""Says each flooding connection sends at once: within its own burst (100), so only the limits
per address and per room can hold the flood back."""


async def flood(server: Served, source: str, nick: str) -> None:
    """One connection from ``source`` joins as ``nick``, says ``SAYS`` things at once, closes
    (reading what it is sent meanwhile: the room's frames, and ``error``s for dropped says)."""
    async with connect_over(server, "/ws/lobby", source=source) as (flooder, stream):
        await join(flooder, nick)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_until_closed, flooder)
            with contextlib.suppress(ConnectionClosed):
                for number in range(SAYS):
                    await flooder.send(type="say", text=f"{nick} {number}")
            await trio.aclose_forcefully(stream)


async def read_until_closed(client: Client) -> None:
    """Take every frame the server sends ``client`` until its connection is closed."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await client.ws.get_message()


async def heard_until_own(reader: Client, text: str) -> int:
    """Say ``text``; how many ``said`` from others reach ``reader`` before its own comes back
    (failing if the reader is closed on the way)."""
    await reader.send(type="say", text=text)
    heard = 0
    with trio.fail_after(WAIT):
        while (frame := await reader.receive()).get("text") != text:
            heard += frame["type"] == "said"
    return heard


async def flood_lobby(waves: Sequence[Sequence[str]]) -> tuple[int, float]:
    """Run each wave of flooders (one per source address listed) at once, waves one after the
    other; how many of their says a reader of the room heard, and the virtual time it took.
    The reader reads nothing until the flood is over, through a small receive buffer: the
    server's outbox for it must hold what the room passed on (over 256 frames: closed, 1013)."""
    async with (
        running_clean(make_app()) as server,
        connect_over(server, "/ws/lobby", receive_buffer=SLOW_READER) as (reader, _),
    ):
        await join(reader, "reader")
        start = trio.current_time()
        for wave, sources in enumerate(waves):
            async with trio.open_nursery() as nursery:
                for number, source in enumerate(sources):
                    nursery.start_soon(flood, server, source, f"f{wave}-{number}")
        elapsed = trio.current_time() - start
        heard = sum(frame["type"] == "said" for frame in await reader.drain())
        await trio.sleep(10)  # every bucket full again: the reader's own say goes through
        return heard + await heard_until_own(reader, "still here"), elapsed


async def test_twenty_connections_from_one_address_share_its_rate(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits()
    heard, elapsed = await flood_lobby([["127.0.0.2"] * 20])  # 1,000 says at once
    assert 0 < heard <= limits.peer_message_burst + limits.peer_message_rate * elapsed


async def test_reconnecting_for_a_fresh_burst_gains_nothing(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits()
    heard, elapsed = await flood_lobby([["127.0.0.2"]] * 10)  # 10 connections one after another
    assert 0 < heard <= limits.peer_message_burst + limits.peer_message_rate * elapsed


async def test_many_addresses_together_are_held_to_the_room_rate(
    virtual_clock: trio.testing.MockClock,
) -> None:
    limits = ChatLimits()
    sources = [f"127.0.0.{host}" for host in range(2, 22)]  # 20 addresses, 50 says each
    heard, elapsed = await flood_lobby([sources])
    assert 0 < heard <= limits.room_message_burst + limits.room_message_rate * elapsed

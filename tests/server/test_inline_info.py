"""A synchronous ``websocket_info`` may run inside the sender's task (no wake-up of the
connection's own), but it must keep Erlang's ``!``: what the callback raises ends the receiver
and never the sender, a message sent from inside it is queued (calls never nest), and the
receiver's mailbox is never left unread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import wsproto.events as ev

import actors
from server import App, Frame, Text, websocket

from .kit import RawClient, Recorded, Terminations, raw_client, running_clean, until_quiet

BYSTANDERS = 20
CHAIN = 200
"""Connections that forward one message along: past the ~120 nested calls that overflowed
Python's stack when each forward ran inline inside the previous one."""


class Echo(Recorded):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        return frame, state


class ExitsOnInfo(Recorded):
    """Registers as ``victim``; on any message, stops its own actor (a BaseException)."""

    def websocket_init(self, state: Any) -> tuple[Text, Any]:
        actors.register("victim")
        return Text("ready"), state

    def websocket_info(self, message: Any, state: Any) -> tuple[Any, Any]:
        actors.current_actor().exit(actors.NORMAL)


async def relay(actor: actors.Actor) -> None:
    """An app child that passes ``(destination, message)`` on: the sender under test."""
    async for destination, message in actor:
        actor.send(destination, message)


async def test_a_callback_that_stops_its_actor_inline_ends_its_connection_not_the_sender() -> None:
    log = Terminations()
    app = App(
        [websocket("/echo", Echo(log)), websocket("/victim", ExitsOnInfo(log))],
        children=[actors.ChildSpec("relay", relay, name="relay")],
    )
    async with running_clean(app) as served, raw_client(served.port, "/victim") as victim:
        assert await victim.message() == "ready"
        relay_address = served.node.whereis("relay")
        async with _clients(served.port, "/echo", BYSTANDERS) as bystanders:
            await until_quiet()  # every connection waits for its client, ready to run inline
            served.node.send("relay", ("victim", "bye"))
            await until_quiet()
            assert served.node.whereis("relay") == relay_address  # the sender lives on
            await victim.eof()  # the victim ended (and was not left deaf to its mailbox)
            for number, bystander in enumerate(bystanders):
                await bystander.send(ev.TextMessage(f"still {number}"))
                assert await bystander.message() == f"still {number}"
            assert len(log.calls) == 1  # the victim's: no bystander was closed


class Forwards(Recorded):
    """Each connection forwards ``(rest, hops)`` to the next in ``rest``; the last says so."""

    def __init__(self, log: Terminations) -> None:
        super().__init__(log)
        self.addresses: list[actors.Address] = []

    def websocket_init(self, state: Any) -> tuple[Text, Any]:
        self.addresses.append(actors.self_address())
        return Text("ready"), state

    def websocket_info(self, message: Any, state: Any) -> tuple[Any, Any]:
        rest, hops = message
        if rest:
            actors.send(rest[0], (rest[1:], hops + 1))
            return None, state
        return Text(f"reached after {hops} hops"), state


async def test_connections_forwarding_inline_never_nest_and_lose_nothing() -> None:
    log = Terminations()
    handler = Forwards(log)
    async with running_clean(App([websocket("/", handler)])) as served:
        async with _clients(served.port, "/", CHAIN, greeted=True) as clients:
            await until_quiet()
            first, *rest = handler.addresses
            served.node.send(first, (rest, 0))
            await until_quiet()
            assert log.calls == []  # nobody crashed (a RecursionError was a 1011)
            assert await clients[-1].message() == f"reached after {CHAIN - 1} hops"


@asynccontextmanager
async def _clients(
    port: int, path: str, count: int, *, greeted: bool = False
) -> AsyncIterator[list[RawClient]]:
    """``count`` raw clients on ``path``, one after the other, each through its handshake
    (``greeted``: and its handler's "ready", so that they are in the handlers' order)."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            client = await stack.enter_async_context(raw_client(port, path))
            if greeted:
                assert await client.message() == "ready"
            clients.append(client)
        yield clients

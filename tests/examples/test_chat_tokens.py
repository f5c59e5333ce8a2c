"""The chat with a secret: a signed token sets the nick and the rooms, over real sockets."""

from __future__ import annotations

import pytest
from trio_websocket import ConnectionRejected

from examples.chat import make_app
from server.tokens import TokenAuth
from tests.examples.kit import Client, join
from tests.server.kit import client, running_clean

SECRET = "chat secret, 32 bytes or more...."
auth = TokenAuth(SECRET)


async def test_without_a_valid_token_for_the_room_the_upgrade_is_refused() -> None:
    other_room = auth.issue("ann", expires_in=60, topics=["room:dev"])
    forged = TokenAuth("another secret, 32 bytes or more").issue("ann", expires_in=60)
    async with running_clean(make_app(secret=SECRET)) as server:
        url = server.url("/ws/lobby")
        for headers, status in (([], 401), ([forged], 401), ([other_room], 403)):
            with pytest.raises(ConnectionRejected) as rejected:
                async with client(url, subprotocols=[f"bearer.{t}" for t in headers]):
                    pass
            assert rejected.value.status_code == status


async def test_the_token_sets_the_nick_and_no_other_may_be_picked() -> None:
    token = auth.issue("ann", expires_in=60, topics=["room:lobby"])
    async with running_clean(make_app(secret=SECRET)) as server:
        url = server.url("/ws/lobby")
        async with client(url, subprotocols=["chat", f"bearer.{token}"]) as ws:
            assert ws.subprotocol == "chat"
            ann = Client(ws)
            await ann.send(type="join", nick="bob")
            refused = await ann.receive()
            assert refused == {
                "type": "error",
                "reason": "your token makes you 'ann': join with that nick",
            }
            await join(ann, "ann")

"""The FastAPI-beside-the-chat example over real sockets: a REST POST reaches the chat's
WebSocket members, and each side reads the other's state."""

from __future__ import annotations

import json

from examples.fastapi_chat import api, make_combined_app
from tests.examples.kit import member
from tests.server.http_client import HttpClient
from tests.server.kit import running_clean


async def test_a_rest_post_is_said_in_the_room_and_counted_by_corral() -> None:
    api.state.posts = 0
    async with running_clean(make_combined_app()) as served:
        async with member(served, "lobby", "ann") as ann, member(served, "lobby", "bob") as bob:
            await ann.receive_type("joined")  # bob's
            client = await HttpClient.open(served.port)
            info = await client.request("GET", "/api/rooms/lobby")
            assert info.json() == {"room": "lobby", "connected": 2}
            body = json.dumps({"nick": "api", "text": "deploy at noon"}).encode()
            posted = await client.request(
                "POST",
                "/api/rooms/lobby/messages",
                body=body,
                headers=[("Content-Type", "application/json")],
            )
            assert (posted.status, posted.json()) == (202, {"delivered": 2})
            for listener in (ann, bob):
                said = await listener.receive_type("said")
                assert (said["nick"], said["text"]) == ("api", "deploy at noon")
            page = await client.request("GET", "/chat/")  # corral's, on the kept connection
            assert page.status == 200 and b"<html" in page.body
            await client.aclose()  # (corral's own routes close the connection after them)
            client = await HttpClient.open(served.port)
            health = await client.request("GET", "/healthz")
            assert health.body == b"ok: 1 messages posted through the API\n"
            await client.aclose()


async def test_a_bad_post_is_refused_by_fastapi() -> None:
    async with running_clean(make_combined_app()) as served:
        client = await HttpClient.open(served.port)
        empty = json.dumps({"nick": "api", "text": " "}).encode()
        refused = await client.request(
            "POST", "/api/rooms/lobby/messages", body=empty,
            headers=[("Content-Type", "application/json")],
        )  # fmt: skip
        assert refused.status == 422
        await client.aclose()

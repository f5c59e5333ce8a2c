"""Topics in the handler model: frames straight to the client, posts in websocket_info, and
resume across connections, driven in process on virtual time and over real sockets."""

from __future__ import annotations

import json
from typing import Any

import trio

from actors import topics
from actors.topics import LocalTopics, Position, Post, Retention, Subscribed
from server import App, Text, Upgrade, WebSocketHandler, serving, websocket
from server.front.http import Request
from server.testing import drive, open_client
from server.topics import CLIENT_SCRIPT, TopicsHandler, client_script, script, wire
from tests.server.kit import get, http_exchange

app = App([websocket("/topics", TopicsHandler()), client_script()])


def subscribe(topic: str, after: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "subscribe", "topic": topic, **(after or {})}


async def test_a_second_driver_resumes_where_the_first_left_off(autojump_clock: Any) -> None:
    async with drive(app, "/topics") as first:
        await first.send_json(subscribe("news"))
        subscribed = await first.receive_json()
        assert subscribed == {
            "type": "subscribed",
            "topic": "news",
            "epoch": subscribed["epoch"],
            "offset": 0,
        }
        await topics.post("news", "one")
        seen = await first.receive_json()
        assert seen == {
            "type": "post",
            "topic": "news",
            "epoch": subscribed["epoch"],
            "offset": 1,
            "data": "one",
        }
        await first.disconnect()
        await trio.sleep(30)  # virtual: the client is away for half a minute
        for data in ("two", "three"):
            await topics.post("news", data)
        async with drive(app, "/topics") as second:
            await second.send_json(subscribe("news", {"epoch": seen["epoch"], "offset": 1}))
            assert (await second.receive_json())["type"] == "subscribed"
            await topics.post("news", "four")
            got = [await second.receive_json() for _ in range(3)]
            assert [(m["offset"], m["data"]) for m in got] == [
                (2, "two"),
                (3, "three"),
                (4, "four"),
            ]


async def test_a_position_from_another_epoch_is_unrecoverable_on_the_wire(
    autojump_clock: Any,
) -> None:
    async with drive(app, "/topics") as client:
        await topics.post("news", "kept")
        await client.send_json(subscribe("news", {"epoch": "before-a-restart", "offset": 7}))
        answer = await client.receive_json()
        assert answer["type"] == "unrecoverable" and answer["why"] == "epoch"
        assert answer["asked"] == {"epoch": "before-a-restart", "offset": 7}
        assert answer["offset"] == 0 and answer["current"]["offset"] == 1
        assert (await client.receive_json())["data"] == "kept"


async def test_bad_requests_get_an_error_frame(autojump_clock: Any) -> None:
    async with drive(app, "/topics") as client:
        for bad in (
            "nope",
            json.dumps({"type": "subscribe"}),
            json.dumps(subscribe("t", {"epoch": "e", "offset": -1})),
        ):
            await client.send_text(bad)
            assert (await client.receive_json())["type"] == "error"


async def test_allow_decides_who_follows_what(autojump_clock: Any) -> None:
    def only_public(request: Request, topic: str) -> bool:
        return topic.startswith("public:")

    guarded = App([websocket("/topics", TopicsHandler(only_public))])
    async with drive(guarded, "/topics") as client:
        await client.send_json(subscribe("secret"))
        assert (await client.receive_json())["type"] == "error"
        await client.send_json(subscribe("public:news"))
        assert (await client.receive_json())["type"] == "subscribed"


class PositionsHandler(WebSocketHandler[list[Position]]):
    """Subscribes in websocket_init (resuming from the query) and echoes posts with positions."""

    def init(self, request: Request) -> Upgrade[list[Position]]:
        return Upgrade([])

    def websocket_init(self, state: list[Position]) -> Any:
        topics.subscribe("news")
        return None, state

    def websocket_info(self, message: object, state: list[Position]) -> Any:
        if isinstance(message, Subscribed):
            return Text(f"from {message.position.offset}"), state
        if isinstance(message, Post):
            state.append(message.position)
            return Text(f"{message.position.offset}:{message.data!s}"), state
        return None, state


async def test_posts_arrive_in_websocket_info_with_their_positions(autojump_clock: Any) -> None:
    async with drive(PositionsHandler()) as conn:
        assert await conn.receive() == Text("from 0")
        first = await topics.post("news", "a")
        await conn.assert_push("1:a")
        assert conn.state == [first]


def test_the_wire_format_round_trips_a_position() -> None:
    request = wire.parse(json.dumps(subscribe("t", {"epoch": "e", "offset": 3})))
    assert request == wire.Subscribe("t", Position("e", 3))
    assert wire.parse(json.dumps({"type": "unsubscribe", "topic": "t"})) == wire.Unsubscribe("t")
    frame = json.loads(wire.encode(Post("t", Position("e", 4), b"\x00")))
    assert frame == {
        "type": "post",
        "topic": "t",
        "epoch": "e",
        "offset": 4,
        "data": "AA==",
        "base64": True,
    }


async def test_a_client_that_drops_while_1000_are_posted_resumes_with_all_in_order() -> None:
    """Over real sockets: a sequence checker sees 1..1000, each once, across the drop."""
    async with serving(app, port=0) as running:
        engine = topics.engine(running.node)
        async with open_client(running.url("/topics")) as client:
            await client.send_json(subscribe("seq"))
            start = await client.receive_json()
            await engine.post("seq", "1")
            last = await client.receive_json()
            assert last["offset"] == 1
        for n in range(2, 1001):
            await engine.post("seq", str(n))
        checker = SequenceChecker(last=1)
        async with open_client(running.url("/topics")) as client:
            await client.send_json(subscribe("seq", {"epoch": last["epoch"], "offset": 1}))
            assert (await client.receive_json())["type"] == "subscribed"
            while checker.last < 1000:
                message = await client.receive_json()
                assert message["epoch"] == start["epoch"]
                assert message["offset"] == int(message["data"])
                checker.saw(int(message["data"]))
        assert checker.gaps == checker.duplicates == 0


class SequenceChecker:
    """Counts gaps and duplicates in a stream of consecutive numbers."""

    def __init__(self, last: int = 0) -> None:
        self.last = last
        self.gaps = 0
        self.duplicates = 0

    def saw(self, n: int) -> None:
        if n <= self.last:
            self.duplicates += 1
            return
        self.gaps += n - self.last - 1
        self.last = n


async def test_the_browser_client_is_served_as_a_javascript_module() -> None:
    async with serving(app, port=0) as running:
        answer = await http_exchange(running.port, get("/" + CLIENT_SCRIPT, "Connection: close"))
    assert answer.status == 200 and "text/javascript" in answer.headers["content-type"]
    assert b"export class TopicClient" in answer.body and answer.body == script()


async def test_edge_positions_over_real_sockets_are_answered_explicitly() -> None:
    """Before anything was received, from the future, another epoch, trimmed away: each gets
    an explicit answer over a real socket, and what is kept follows."""
    async with serving(app, port=0) as running:
        engine = LocalTopics(Retention(count=3))
        async with topics.serving(engine, running.node), open_client(running.url("/topics")) as c:
            await c.send_json(subscribe("edge"))
            fresh = await c.receive_json()  # a client that never received a post
            await c.close()
        async with topics.serving(engine, running.node):
            for n in range(1, 4):
                await engine.post("edge", f"m{n}")
            async with open_client(running.url("/topics")) as client:
                where = {"epoch": fresh["epoch"], "offset": fresh["offset"]}
                await client.send_json(subscribe("edge", where))
                assert (await client.receive_json())["type"] == "subscribed"
                posts = [await client.receive_json() for _ in range(3)]
                assert [post["data"] for post in posts] == ["m1", "m2", "m3"]
            for n in range(4, 6):
                await engine.post("edge", f"m{n}")
        cases = [
            ({"epoch": engine.epoch, "offset": 1}, "unrecoverable", "trimmed"),
            ({"epoch": engine.epoch, "offset": 2}, "subscribed", None),
            ({"epoch": engine.epoch, "offset": 9}, "unrecoverable", "future"),
            ({"epoch": "another", "offset": 4}, "unrecoverable", "epoch"),
        ]
        async with topics.serving(engine, running.node):
            for position, kind, why in cases:
                async with open_client(running.url("/topics")) as client:
                    await client.send_json(subscribe("edge", position))
                    answer = await client.receive_json()
                    assert (answer["type"], answer.get("why")) == (kind, why), answer
                    posts = [await client.receive_json() for _ in range(3)]
                    assert [post["data"] for post in posts] == ["m3", "m4", "m5"]
                    await client.refute_push()

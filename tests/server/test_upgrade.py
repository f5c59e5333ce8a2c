"""Hot code upgrade of ``corral serve`` over real sockets: SIGHUP, ``corral upgrade``, workers.

The app is a module of the test's own directory, rewritten between versions: version 1 counts
each connection's messages in an int, version 2 in a dict (its ``code_change`` converts).
"""

from __future__ import annotations

import json
import shutil
import signal
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import pytest

from server import Request, Response, WebSocketHandler, http_route, websocket
from server.ops.dashboard.access import DashboardAccess
from server.ops.dashboard.handler import DashboardUpgrade
from server.run.cli import main
from server.run.upgrade import merge_routes
from server.testing import build_request

from .corral_process import ROOT, CorralProcess, corral_serve
from .kit import HttpAnswer, RawClient, assert_echoes, frame, http_exchange, raw_client
from .test_metrics import scrape, value

VERSION_1 = """
from server import App, Text, Upgrade, WebSocketHandler, websocket


class Counter(WebSocketHandler[int]):
    version = "1"

    def init(self, request):
        return Upgrade(0)

    def websocket_handle(self, frame, state):
        return Text(f"v1 {state + 1}"), state + 1


app = App([websocket("/", Counter())])
"""

VERSION_2 = """
from server import App, Text, Upgrade, WebSocketHandler, websocket


class Counter(WebSocketHandler[dict]):
    version = "2"

    def init(self, request):
        return Upgrade({"count": 0})

    def websocket_handle(self, frame, state):
        count = state["count"] + 1
        return Text(f"v2 {count}"), {"count": count}

    def code_change(self, old_version, state, extra):
        if state == REFUSED:
            raise ValueError("this state does not convert")
        return {"count": state}


REFUSED = -1
app = App([websocket("/", Counter())])
"""


def _write(directory: Path, source: str) -> None:
    (directory / "hot_app.py").write_text(source)


async def _say(client: RawClient, text: str = "hi") -> str | bytes:
    await client.send_raw(_text_frame(text))
    return await client.message()


def _text_frame(text: str) -> bytes:
    return frame(0x1, text.encode())


async def _upgraded(corral: CorralProcess, count: int = 1) -> None:
    await corral.wait_for_log(r"upgraded to generation \d+", count)


async def test_sighup_upgrades_instead_of_killing_the_server(tmp_path: Path) -> None:
    """It used to kill it at once: every client lost its connection without a close frame."""
    async with corral_serve(tmp_path, "examples.echo:app") as corral:
        url = f"ws://127.0.0.1:{corral.port}/"
        await assert_echoes(url, "before")
        corral.process.send_signal(signal.SIGHUP)
        await corral.wait_for_log("SIGHUP: upgrading")
        await _upgraded(corral)
        assert corral.process.poll() is None
        await assert_echoes(url, "after")


@pytest.mark.slow
async def test_1000_live_connections_keep_their_state_through_code_change(tmp_path: Path) -> None:
    _write(tmp_path, VERSION_1)
    async with corral_serve(tmp_path, "hot_app:app", cwd=tmp_path) as corral:
        await _upgrade_keeps_state(corral, tmp_path, connections=1000)


async def test_live_connections_keep_their_state_through_code_change(tmp_path: Path) -> None:
    """The suite's quick twin of the 1,000-connection test (``corral upgrade PID`` this time)."""
    _write(tmp_path, VERSION_1)
    async with corral_serve(tmp_path, "hot_app:app", cwd=tmp_path) as corral:
        await _upgrade_keeps_state(corral, tmp_path, connections=20)


async def _upgrade_keeps_state(corral: CorralProcess, directory: Path, connections: int) -> None:
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(raw_client(corral.port)) for _ in range(connections)
        ]
        for client in clients:
            assert await _say(client) == "v1 1"
            assert await _say(client) == "v1 2"
        _write(directory, VERSION_2)
        assert main(["upgrade", str(corral.process.pid)]) == 0
        await _upgraded(corral)
        for client in clients:
            assert await _say(client) == "v2 3"  # the count went through code_change
        assert " closed " not in corral.log  # no connection was dropped
        async with raw_client(corral.port) as newcomer:
            assert await _say(newcomer) == "v2 1"


async def test_new_code_with_a_syntax_error_leaves_the_old_code_running(tmp_path: Path) -> None:
    _write(tmp_path, VERSION_1)
    async with corral_serve(tmp_path, "hot_app:app", cwd=tmp_path) as corral:
        async with raw_client(corral.port) as client:
            assert await _say(client) == "v1 1"
            _write(tmp_path, VERSION_2.replace("def init(self, request):", "def init(self,"))
            corral.process.send_signal(signal.SIGHUP)
            await corral.wait_for_log("upgrade failed, the old code runs on: SyntaxError")
            assert "hot_app.py:" in corral.log
            assert await _say(client) == "v1 2"
            async with raw_client(corral.port) as newcomer:
                assert await _say(newcomer) == "v1 1"
            _write(tmp_path, VERSION_2)  # fixed: the next upgrade goes through
            corral.process.send_signal(signal.SIGHUP)
            await _upgraded(corral)
            assert await _say(client) == "v2 3"


async def test_a_code_change_that_raises_leaves_that_connection_on_its_old_code(
    tmp_path: Path,
) -> None:
    _write(tmp_path, VERSION_1.replace("return Upgrade(0)", "return Upgrade(-2)"))
    async with corral_serve(tmp_path, "hot_app:app", cwd=tmp_path) as corral:
        async with raw_client(corral.port) as refused, raw_client(corral.port) as converted:
            assert await _say(refused) == "v1 -1"  # its state is now REFUSED (-1)
            assert await _say(converted) == "v1 -1"
            assert await _say(converted) == "v1 0"
            _write(tmp_path, VERSION_2)
            corral.process.send_signal(signal.SIGHUP)
            await _upgraded(corral)
            assert await _say(refused) == "v1 0"  # still the old code, its state untouched
            assert await _say(converted) == "v2 1"
            await corral.wait_for_log("stays on version 1: code_change to 2 raised")


async def test_workers_each_upgrade_and_the_parent_reports_each(tmp_path: Path) -> None:
    _write(tmp_path, VERSION_1)
    async with corral_serve(
        tmp_path, "hot_app:app", "--workers", "2", cwd=tmp_path, listening=2
    ) as corral:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(raw_client(corral.port)) for _ in range(8)]
            for client in clients:
                assert await _say(client) == "v1 1"
            _write(tmp_path, VERSION_2)
            corral.process.send_signal(signal.SIGHUP)
            await corral.wait_for_log(r"upgrade: 2 of 2 workers upgraded")
            for index in (0, 1):
                assert f"worker {index} (pid " in corral.log
            assert len(_lines(corral, "upgraded to generation 1")) >= 4  # each, and the parent
            for client in clients:
                assert await _say(client) == "v2 2"


def _lines(corral: CorralProcess, text: str) -> list[str]:
    return [line for line in corral.log.splitlines() if text in line]


async def test_the_dashboard_button_upgrades_and_metrics_say_how_each_upgrade_went(
    tmp_path: Path,
) -> None:
    _write(tmp_path, VERSION_1)
    async with corral_serve(
        tmp_path,
        "hot_app:app",
        "--dashboard",
        "--dashboard-token",
        TOKEN,
        "--metrics",
        cwd=tmp_path,
    ) as corral:
        _write(tmp_path, "def (\n")
        assert (await _press_upgrade(corral.port)).status == 202
        await corral.wait_for_log("upgrade failed, the old code runs on: SyntaxError")
        _write(tmp_path, VERSION_2)
        assert (await _press_upgrade(corral.port)).status == 202
        await _upgraded(corral)
        samples = await scrape(corral.port)
        assert value(samples, "corral_upgrades_total", result="failed") == 1
        assert value(samples, "corral_upgrades_total", result="ok") == 1
        assert value(samples, "corral_code_generation") >= 1
        assert value(samples, "corral_connections_on_old_code") == 0


async def test_the_dashboard_button_needs_a_token_and_the_page_s_origin() -> None:
    without_token = DashboardUpgrade(DashboardAccess())
    assert without_token(_post("/corral/upgrade")).status == 403
    with_token = DashboardUpgrade(DashboardAccess(TOKEN))
    assert with_token(_post("/corral/upgrade")).status == 403  # no token in the request
    elsewhere = ("origin", "https://evil.example")
    bearer = ("authorization", f"Bearer {TOKEN}")
    assert with_token(_post("/corral/upgrade", bearer, elsewhere)).status == 403
    assert with_token(build_request("/corral/upgrade", headers=[bearer])).status == 405


TOKEN = "a-dashboard-token-long-enough-for-tests"


def _post(path: str, *headers: tuple[str, str]) -> Request:
    return attrs.evolve(build_request(path, headers=headers), method="POST")


async def _press_upgrade(port: int) -> HttpAnswer:
    head = (
        f"POST /corral/upgrade HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return await http_exchange(port, head.encode())


async def test_a_running_chat_upgrades_its_message_format_without_a_client_noticing(
    tmp_path: Path,
) -> None:
    """The README's walk-through, on a copy of the chat: members, history and rooms live on,
    the next ``said`` has the new field."""
    shutil.copytree(ROOT / "examples" / "chat", tmp_path / "hotchat")
    async with corral_serve(tmp_path, "hotchat:app", cwd=tmp_path) as corral:
        async with (
            raw_client(corral.port, "/ws/lobby") as ann,
            raw_client(corral.port, "/ws/lobby") as bob,
        ):
            await _join(ann, "ann")
            await _join(bob, "bob")
            await ann.send_raw(_text_frame('{"type": "say", "text": "before"}'))
            for client in (ann, bob):
                said = await _next_of(client, "said")
                assert said["text"] == "before" and "chars" not in said
            protocol = tmp_path / "hotchat" / "protocol.py"
            protocol.write_text(
                protocol.read_text().replace(
                    'return encode("said", **message.as_dict())',
                    'return encode("said", **message.as_dict(), chars=len(message.text))',
                )
            )
            corral.process.send_signal(signal.SIGHUP)
            await _upgraded(corral)
            await bob.send_raw(_text_frame('{"type": "say", "text": "after"}'))
            for client in (ann, bob):
                said = await _next_of(client, "said")
                assert (said["nick"], said["text"], said["chars"]) == ("bob", "after", 5)
            async with raw_client(corral.port, "/ws/lobby") as cat:
                await cat.send_raw(_text_frame('{"type": "join", "nick": "cat"}'))
                history = await _next_of(cat, "history")
                assert [m["text"] for m in history["messages"]] == ["before", "after"]
                assert await _members_seen(cat, {"ann", "bob", "cat"}) == {"ann", "bob", "cat"}
                assert " closed " not in corral.log  # nobody was dropped


async def _join(client: RawClient, nick: str) -> None:
    await client.send_raw(_text_frame(json.dumps({"type": "join", "nick": nick})))
    await _next_of(client, "members")


async def _members_seen(client: RawClient, expected: set[str]) -> set[str]:
    """The members ``client`` learns of: its ``members`` list, then ``joined`` (presence's
    list is as of its last diff, so one who joined within the diff interval comes after)."""
    seen = set((await _next_of(client, "members"))["nicks"])
    while seen < expected:
        message = json.loads(await client.message())
        if message["type"] == "joined":
            seen.add(message["nick"])
    return seen


async def _next_of(client: RawClient, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (others, such as ``joined``, are skipped)."""
    while True:
        message = json.loads(await client.message())
        if message["type"] == kind:
            return dict(message)


class _Kept(WebSocketHandler[None]):
    pass


class _Other(WebSocketHandler[None]):
    pass


def test_merge_routes_keeps_the_handler_object_of_a_route_that_stays() -> None:
    kept, gone = _Kept(), _Other()
    old = [websocket("/a", kept), websocket("/b", gone), http_route("/h", _page)]
    new_a, new_b, new_c = _Kept(), _Kept(), _Kept()
    merged = merge_routes(
        old, [websocket("/a", new_a), websocket("/b", new_b), websocket("/c", new_c)]
    )
    handlers = [route.target.handler for route in merged]  # type: ignore[attr-defined]
    assert handlers[0] is kept  # same pattern, same class: the running object, what it holds
    assert handlers[1] is new_b  # its class changed: the new object
    assert handlers[2] is new_c  # a new route
    assert [route.pattern for route in merged] == ["/a", "/b", "/c"]  # /h is gone


def _page(request: Request) -> Response:
    return Response(200)

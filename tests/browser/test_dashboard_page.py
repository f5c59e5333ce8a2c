"""The dashboard page in headless Chromium against a running server with live connections:
the tree renders, a blocked actor's mailbox depth rises, a chart moves with traffic, and the
page says so when the server goes away. Screenshots land in test-output/browser/."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs
import trio
from playwright.sync_api import Page, expect
from websockets.sync.client import ClientConnection, connect

import actors
from actors import ChildSpec
from server import App, Frame, WebSocketHandler, websocket
from server.ops.dashboard import with_dashboard
from server.run.supervised import Server

BLOCK = "block"


async def stops_receiving(actor: actors.Actor) -> None:
    """Takes messages until told ``block``; from then on it never receives again."""
    async for message in actor:
        if message == BLOCK:
            await trio.sleep_forever()


class Echo(WebSocketHandler[None]):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        return frame, state


class Slow(WebSocketHandler[None]):
    """Holds the loop on every message: what the watchdog is there to catch."""

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        time.sleep(0.25)  # blocking on purpose
        return frame, state


APP = with_dashboard(
    App(
        [websocket("/echo", Echo()), websocket("/slow", Slow())],
        children=[ChildSpec("inbox", stops_receiving, name="inbox", kind="inbox")],
    )
)


@attrs.frozen
class Served:
    """The server under test, and how to reach into its trio thread."""

    port: int
    server: Server
    token: trio.lowlevel.TrioToken

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.port}/corral/"

    def send(self, name: str, message: Any) -> None:
        """Send ``message`` to the actor named ``name``, from the server's thread."""
        node = self.server.node
        assert node is not None
        trio.from_thread.run_sync(node.send, name, message, trio_token=self.token)

    def shut_down(self) -> None:
        trio.from_thread.run(self.server.shutdown, trio_token=self.token)


async def serve_app(*, task_status: trio.TaskStatus[Served]) -> None:
    server = Server(APP, host="127.0.0.1", port=0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        task_status.started(Served(port, server, trio.lowlevel.current_trio_token()))


class EchoClients:
    """WebSocket clients on a thread of their own, echoing ``rounds`` messages each."""

    def __init__(self, port: int, count: int) -> None:
        self._stack = ExitStack()
        self.sockets: list[ClientConnection] = [
            self._stack.enter_context(connect(f"ws://127.0.0.1:{port}/echo")) for _ in range(count)
        ]

    def echo(self, rounds: int) -> None:
        def run() -> None:
            for number in range(rounds):
                for ws in self.sockets:
                    ws.send(f"m{number}")
                for ws in self.sockets:
                    assert ws.recv(timeout=10) == f"m{number}"

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
        assert not thread.is_alive()

    def close(self) -> None:
        self._stack.close()


def depth_cell(page: Page, name: str) -> Any:
    return page.locator("#actors tbody tr", has_text=name).locator("td.depth")


def test_the_tree_a_blocked_mailbox_and_a_chart_show_live(
    serve_trio: Callable[..., Any],
    open_page: Callable[..., Page],
    screenshot: Callable[[Page, str], Path],
) -> None:
    served: Served = serve_trio(serve_app)
    page = open_page(served.dashboard, width=1280, height=900)
    expect(page.locator("#status")).to_have_text("live")
    expect(page.locator("#idle")).to_be_visible()
    # An icon of its own: the browser does not ask for /favicon.ico (a logged 404).
    expect(page.locator("link[rel=icon]")).to_have_attribute("href", "data:,")
    root = page.locator("#tree > li[data-id=root]")
    expect(root).to_contain_text("restarts 0")
    for child in ("inbox", "dashboard-sampler", "connections", "listener"):
        expect(root.locator(f"li[data-id='{child}']")).to_have_count(1)
    expect(depth_cell(page, "inbox")).to_have_text("0/1024")

    clients = EchoClients(served.port, 3)
    try:
        expect(page.locator("#idle")).to_be_hidden()
        expect(page.locator("#routes tbody")).to_contain_text("/echo")
        expect(root.locator("li[data-id=connection]")).to_have_count(4)  # 3 echo + this page
        served.send("inbox", BLOCK)
        for number in range(40):
            served.send("inbox", number)
        expect(depth_cell(page, "inbox")).to_have_text("40/1024")
        expect(page.locator("#actors tbody tr").first).to_contain_text("inbox")  # deepest first
        clients.echo(200)
        messages = page.locator("#chart-messages")
        expect(messages).not_to_have_attribute("data-last", "0")
        expect(messages.locator("polyline")).to_have_count(2)
        before = int(messages.get_attribute("data-points") or 0)
        expect(messages).not_to_have_attribute("data-points", str(before))  # a new point came
        with connect(f"ws://127.0.0.1:{served.port}/slow") as slow:
            slow.send("take your time")
            assert slow.recv(timeout=10) == "take your time"
        expect(page.locator("#blocked-count")).to_have_text("1")
        expect(page.locator("#blocked tbody")).to_contain_text("Slow")
        expect(page.locator("#blocked tbody")).to_contain_text("/slow")
        expect(page.locator("#closes-key")).to_contain_text("1000 normal")
        expect(page.locator("#actors tbody")).to_contain_text(re.compile(r"/echo 127\.0\.0\.1:\d+"))
        page.locator("#actors th[data-key=name]").click()
        expect(page.locator("#actors th[data-key=name]")).to_have_class("sorted")
        page.locator("#actors th[data-key=depth]").click()
        screenshot(page, "dashboard")
    finally:
        clients.close()


def test_the_page_says_it_is_disconnected_when_the_server_goes_away(
    serve_trio: Callable[..., Any],
    open_page: Callable[..., Page],
    screenshot: Callable[[Page, str], Path],
) -> None:
    served: Served = serve_trio(serve_app)
    page = open_page(served.dashboard)
    expect(page.locator("#status")).to_have_text("live")
    expect(page.locator("#disconnected")).to_be_hidden()
    served.shut_down()
    banner = page.locator("#disconnected")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("reconnecting in")
    expect(page.locator("#status")).to_have_text("disconnected")
    screenshot(page, "disconnected")

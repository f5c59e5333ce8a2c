"""The chat page in headless Chromium against the real chat server (``examples.chat.app``).

Each test serves the app on a background thread (``serve_trio``) and opens pages in separate
browser contexts, so two pages are two people. Screenshots land in test-output/browser/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio
from playwright.sync_api import Page, expect

import examples.chat
from actors import KILLED
from server import App
from server.run.supervised import Server
from server.tokens import TokenAuth


@attrs.frozen
class Served:
    """The chat server under test, and how to reach into its trio thread."""

    url: str
    server: Server
    token: trio.lowlevel.TrioToken

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)`` on the server's thread (where its actors live)."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)


async def serve_chat(app: App = examples.chat.app, *, task_status: trio.TaskStatus[Served]) -> None:
    """Run the chat app (``examples.chat.app`` unless told) on a free port until cancelled."""
    server = Server(app, host="127.0.0.1", port=0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        token = trio.lowlevel.current_trio_token()
        task_status.started(Served(f"http://127.0.0.1:{port}", server, token))


def join(page: Page, nick: str) -> None:
    page.fill("#nick-input", nick)
    page.click("#join-button")
    expect(page.locator("#message-input")).to_be_visible()


def say(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def test_a_message_sent_on_one_page_shows_on_the_other(
    serve_trio: Callable[..., Any],
    open_page: Callable[..., Page],
    screenshot: Callable[[Page, str], Path],
) -> None:
    chat: Served = serve_trio(serve_chat)
    ann = open_page(f"{chat.url}/?room=lobby")
    bob = open_page(f"{chat.url}/#lobby")
    expect(ann.locator("#room-name")).to_have_text("lobby")
    expect(ann.locator("#status")).to_have_text("Connected")
    # An icon of its own: the browser does not ask for /favicon.ico (a logged 404).
    expect(ann.locator("link[rel=icon]")).to_have_attribute("href", "data:,")
    join(ann, "ann")
    join(bob, "bob")
    expect(ann.locator("#messages")).to_contain_text("bob joined")
    expect(ann.locator("#members li")).to_have_count(2)
    say(ann, "hello bob <b>not bold</b>")
    expect(bob.locator("#messages .message").last).to_contain_text("hello bob <b>not bold</b>")
    expect(bob.locator("#messages .message").last.locator(".nick")).to_have_text("ann")
    expect(bob.locator("#messages b")).to_have_count(0)
    expect(ann.locator("#messages .message.mine")).to_contain_text("hello bob")
    expect(ann.locator("#message-input")).to_have_value("")
    say(bob, "hi ann — ça va?")
    expect(ann.locator("#messages .message").last).to_contain_text("hi ann — ça va?")
    expect(bob.locator("#member-count")).to_have_text("2")
    screenshot(ann, "ann")
    screenshot(bob, "bob")


def test_a_later_joiner_sees_the_history_and_rooms_stay_apart(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    chat: Served = serve_trio(serve_chat)
    ann = open_page(f"{chat.url}/?room=red")
    join(ann, "ann")
    for number in range(3):
        say(ann, f"red {number}")
    expect(ann.locator("#messages .message")).to_have_count(3)
    late = open_page(f"{chat.url}/?room=red")
    join(late, "cyd")
    expect(late.locator("#messages .message")).to_have_count(3)
    expect(late.locator("#messages .message").first).to_contain_text("red 0")
    other = open_page(f"{chat.url}/?room=blue")
    join(other, "ann")  # the same nick is free in another room
    expect(other.locator("#messages .message")).to_have_count(0)
    expect(other.locator("#members li")).to_have_count(1)


def test_a_taken_nick_is_refused_on_the_form(
    serve_trio: Callable[..., Any],
    open_page: Callable[..., Page],
    screenshot: Callable[[Page, str], Path],
) -> None:
    chat: Served = serve_trio(serve_chat)
    join(open_page(chat.url), "ann")
    other = open_page(chat.url)
    other.fill("#nick-input", "Ann")
    other.click("#join-button")
    expect(other.locator("#join-error")).to_contain_text("nick taken")
    expect(other.locator("#join-button")).to_be_enabled()
    screenshot(other, "nick-taken")
    join(other, "ann2")
    expect(other.locator("#members li")).to_have_count(2)


def test_with_a_token_the_page_joins_with_its_nick_and_without_one_is_refused(
    serve_trio: Callable[..., Any],
    open_page: Callable[..., Page],
    screenshot: Callable[[Page, str], Path],
) -> None:
    secret = "browser test secret, 32 bytes or more"
    chat: Served = serve_trio(serve_chat, examples.chat.make_app(secret=secret))
    token = TokenAuth(secret).issue("zoë", expires_in=600, topics=["room:red"])
    ann = open_page(f"{chat.url}/#token={token}&room=red")
    expect(ann.locator("#room-name")).to_have_text("red")
    expect(ann.locator("#nick-input")).to_have_value("zoë")
    expect(ann.locator("#nick-input")).not_to_be_editable()
    ann.click("#join-button")
    expect(ann.locator("#message-input")).to_be_visible()
    say(ann, "signed in")
    expect(ann.locator("#messages .message.mine")).to_contain_text("signed in")
    screenshot(ann, "token")
    anonymous = open_page(f"{chat.url}/?room=red")
    expect(anonymous.locator("#status")).to_contain_text("Disconnected")  # refused: 401
    expect(ann.locator("#members li")).to_have_count(1)


def test_too_long_text_is_stopped_by_the_page(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    chat: Served = serve_trio(serve_chat)
    ann = open_page(chat.url)
    join(ann, "ann")
    say(ann, "é" * 2049)
    expect(ann.locator("#messages .system.error")).to_contain_text("4096-byte limit")
    expect(ann.locator("#messages .message")).to_have_count(0)


def test_a_dropped_page_reconnects_and_rejoins_with_its_nick(
    serve_trio: Callable[..., Any],
    open_page: Callable[..., Page],
    screenshot: Callable[[Page, str], Path],
) -> None:
    chat: Served = serve_trio(serve_chat)
    ann, bob = open_page(chat.url + "/#ops"), open_page(chat.url + "/#ops")
    join(ann, "ann")
    join(bob, "bob")
    chat.run(_drop_connections, chat.server)
    expect(ann.locator("#messages")).to_contain_text("Connection lost")
    expect(ann.locator("#status")).to_have_text("Connected")
    expect(bob.locator("#status")).to_have_text("Connected")
    expect(ann.locator("#own-nick")).to_have_text("ann")
    expect(ann.locator("#members li")).to_have_count(2)
    say(ann, "back")
    expect(bob.locator("#messages .message").last).to_contain_text("back")
    screenshot(ann, "after-reconnect")


def test_a_room_restart_goes_unnoticed_and_the_chat_goes_on(
    serve_trio: Callable[..., Any],
    open_page: Callable[..., Page],
    screenshot: Callable[[Page, str], Path],
) -> None:
    chat: Served = serve_trio(serve_chat)
    ann, bob = open_page(chat.url), open_page(chat.url)
    join(ann, "ann")
    join(bob, "bob")
    say(ann, "before")
    expect(bob.locator("#messages .message")).to_have_count(1)
    chat.run(_kill_room, chat.server, "lobby")
    # The new room finds its members in presence: nobody rejoins, the list stays as it was.
    say(ann, "after")
    expect(bob.locator("#messages .message").last).to_contain_text("after")
    expect(ann.locator("#message-input")).to_have_value("")
    expect(bob.locator("#messages .system.error")).to_have_count(0)
    expect(bob.locator("#members li")).to_have_count(2)
    expect(bob.locator("#message-input")).to_be_visible()
    screenshot(bob, "after-room-restart")


def _drop_connections(server: Server) -> None:
    """Kill every connection actor: clients see TCP close without a close frame."""
    assert server.node is not None
    for _, address in server.connections.which_children():
        server.node.exit(address, KILLED)


def _kill_room(server: Server, room: str) -> None:
    assert server.node is not None
    address = server.node.whereis(f"room:{room}")
    assert address is not None
    server.node.exit(address, KILLED)

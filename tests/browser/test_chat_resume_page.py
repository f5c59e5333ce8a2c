"""The chat page resumed in Chromium: a page taken offline (DevTools network emulation) while
the other says 20 things shows the 20 once each when it is back, after the 40 it showed before
(a history of 50 could not give all 60: they come from its position); a reloaded page shows
what it showed and what was said since, once each; a position the room cannot honour is told."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from .test_chat_page import Served, join, say, serve_chat
from .test_topic_client_page import Network


def test_a_page_offline_while_20_things_are_said_shows_them_once_each(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    chat: Served = serve_trio(serve_chat)
    ann = open_page(f"{chat.url}/?room=lobby")
    bob = open_page(f"{chat.url}/?room=lobby")
    join(ann, "ann")
    join(bob, "bob")
    before = [f"before {n}" for n in range(40)]
    for text in before:
        say(bob, text)
    messages = ann.locator("#messages .message .text")
    expect(messages).to_have_text(before)
    network = Network(ann)
    network.offline(True)
    expect(ann.locator("#status")).not_to_have_text("Connected")
    expect(bob.locator("#members li")).to_have_count(1)  # ann's connection is gone
    away = [f"while away {n}" for n in range(20)]
    for text in away:
        say(bob, text)
    expect(bob.locator("#messages .message .text")).to_have_count(60)
    network.offline(False)
    expect(ann.locator("#status")).to_have_text("Connected", timeout=15_000)
    expect(messages).to_have_text([*before, *away])
    expect(ann.locator("#members li")).to_have_count(2)
    say(bob, "and after")
    expect(messages).to_have_text([*before, *away, "and after"])
    expect(ann.locator("#messages .system.error")).not_to_contain_text(["missed"])


def test_a_reloaded_page_shows_what_it_showed_and_what_was_said_meanwhile(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    chat: Served = serve_trio(serve_chat)
    ann = open_page(f"{chat.url}/?room=lobby")
    bob = open_page(f"{chat.url}/?room=lobby")
    join(ann, "ann")
    join(bob, "bob")
    say(bob, "one")
    messages = ann.locator("#messages .message .text")
    expect(messages).to_have_text(["one"])
    ann.reload()
    say(bob, "two")
    expect(ann.locator("#own-nick")).to_have_text("ann")  # back in the room, same nick
    expect(ann.locator("#message-input")).to_be_visible()
    say(bob, "three")
    expect(messages).to_have_text(["one", "two", "three"])


def test_a_page_whose_position_is_lost_says_so_and_shows_what_is_kept(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    chat: Served = serve_trio(serve_chat)
    ann = open_page(f"{chat.url}/?room=lobby")
    bob = open_page(f"{chat.url}/?room=lobby")
    join(ann, "ann")
    join(bob, "bob")
    say(bob, "kept")
    messages = ann.locator("#messages .message .text")
    expect(messages).to_have_text(["kept"])
    # As if the server had restarted: the page's position is of an epoch the room never had.
    ann.evaluate(
        "sessionStorage.setItem('corral-chat-position:lobby',"
        " JSON.stringify({epoch: 'gone', offset: 1}))"
    )
    ann.reload()
    notice = ann.locator("#messages .system.error")
    expect(notice).to_contain_text("Some messages were missed while you were away")
    expect(messages).to_have_text(["kept", "kept"])  # what it showed, then what the room keeps

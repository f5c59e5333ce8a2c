"""Bad input to the chat: each case gets an ``error`` to its sender only, and nothing breaks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from examples.chat import make_app
from examples.chat.protocol import MAX_TEXT_BYTES, nick_key, room_name
from tests.examples.kit import Client, connect, join, member
from tests.server.kit import Served, running_clean


@asynccontextmanager
async def lobby_with_ann() -> AsyncIterator[tuple[Served, Client]]:
    """A chat server with ``ann`` in the lobby, who must hear nothing of others' mistakes.

    On the way out, ann may still hear others come and go, but no error and no message.
    """
    async with running_clean(make_app()) as server, member(server, "lobby", "ann") as ann:
        yield server, ann
        heard = await ann.drain()
        assert all(frame["type"] in ("joined", "left") for frame in heard), heard


async def refused(client: Client, frame: str | bytes) -> str:
    """Send ``frame``; return the reason of the error that must come back."""
    await client.send_raw(frame)
    answer = await client.receive()
    assert answer["type"] == "error", answer
    assert set(answer) == {"type", "reason"} and isinstance(answer["reason"], str)
    return str(answer["reason"])


def say(text: Any) -> str:
    return json.dumps({"type": "say", "text": text})


def join_as(nick: Any) -> str:
    return json.dumps({"type": "join", "nick": nick})


BAD_FRAMES: dict[str, tuple[str | bytes, str]] = {
    "not-json": ("hello", "not JSON"),
    "truncated-json": ('{"type": "say"', "not JSON"),
    "array": ("[1, 2]", "expected a JSON object"),
    "string": ('"say"', "expected a JSON object"),
    "null": ("null", "expected a JSON object"),
    "deep-nesting": ("[" * 60_000, "not JSON"),
    "no-type": ('{"text": "hi"}', "unknown type null"),
    "unknown-type": ('{"type": "shout", "text": "hi"}', 'unknown type "shout"'),
    "long-unknown-type": (json.dumps({"type": "x" * 1000}), "unknown type"),
    "binary": (b'{"type": "say", "text": "hi"}', "binary frames are not supported"),
}


@pytest.mark.parametrize("frame, reason", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_a_malformed_frame_gets_an_error_and_the_sender_stays_usable(
    frame: str | bytes, reason: str
) -> None:
    async with lobby_with_ann() as (server, ann), connect(server, "/ws/lobby") as bob:
        assert (await refused(bob, frame)).startswith(reason)
        await join(bob, "bob")
        await bob.send(type="say", text="still here")
        assert (await ann.receive_type("said"))["text"] == "still here"
        await bob.receive_type("said")


async def test_an_unknown_type_is_echoed_bounded() -> None:
    async with lobby_with_ann() as (_, ann):
        reason = await refused(ann, json.dumps({"type": "x" * 1000}))
        assert len(reason) < 80


TOO_LONG = {
    "ascii": "a" * (MAX_TEXT_BYTES + 1),
    "two-byte": "é" * (MAX_TEXT_BYTES // 2 + 1),
    "four-byte": "🐎" * (MAX_TEXT_BYTES // 4 + 1),
}


@pytest.mark.parametrize("text", TOO_LONG.values(), ids=TOO_LONG.keys())
async def test_text_over_4_kib_of_utf8_is_refused(text: str) -> None:
    async with lobby_with_ann() as (_, ann):
        reason = await refused(ann, say(text))
        assert reason.startswith("text too long") and str(MAX_TEXT_BYTES) in reason
        await ann.nothing_more()


@pytest.mark.parametrize("text", ["a" * MAX_TEXT_BYTES, "é" * (MAX_TEXT_BYTES // 2)])
async def test_text_of_exactly_4_kib_is_said(text: str) -> None:
    async with lobby_with_ann() as (_, ann):
        await ann.send(type="say", text=text)
        assert (await ann.receive())["text"] == text


BAD_TEXTS = {
    "empty": ("", "empty text"),
    "blank": ("  \n\t", "empty text"),
    "number": (5, "empty text"),
    "null": (None, "empty text"),
    "object": ({"a": 1}, "empty text"),
}


@pytest.mark.parametrize("text, reason", BAD_TEXTS.values(), ids=BAD_TEXTS.keys())
async def test_a_say_without_usable_text_is_refused(text: Any, reason: str) -> None:
    async with lobby_with_ann() as (_, ann):
        assert (await refused(ann, say(text))).startswith(reason)


async def test_a_lone_surrogate_in_text_is_refused() -> None:
    async with lobby_with_ann() as (_, ann):
        assert (await refused(ann, '{"type": "say", "text": "a\\ud800b"}')).startswith("bad text")


async def test_say_before_join_is_refused() -> None:
    async with lobby_with_ann() as (server, _), connect(server, "/ws/lobby") as bob:
        assert (await refused(bob, say("hello"))).startswith("join first")


async def test_say_after_a_refused_join_is_refused_by_the_room() -> None:
    async with lobby_with_ann() as (server, _), connect(server, "/ws/lobby") as bob:
        assert (await refused(bob, join_as("ann"))).startswith("nick taken")
        assert (await refused(bob, say("hello"))).startswith("join first")


@pytest.mark.parametrize("nick", ["ann", "ANN", "Ａnn"], ids=["same", "upper-case", "full-width"])
async def test_a_nick_taken_in_the_room_is_refused(nick: str) -> None:
    async with lobby_with_ann() as (server, ann), connect(server, "/ws/lobby") as bob:
        reason = await refused(bob, join_as(nick))
        assert reason == f"nick taken: {nick} is already in this room"
        await join(bob, "bob")
        assert await ann.receive() == {"type": "joined", "nick": "bob"}


async def test_the_same_nick_in_another_room_is_fine() -> None:
    async with lobby_with_ann() as (server, _), connect(server, "/ws/kitchen") as other:
        await join(other, "ann")


BAD_NICKS = {
    "empty": ("", "bad nick: use 1 to 32"),
    "too-long": ("n" * 33, "bad nick: use 1 to 32"),
    "number": (42, "bad nick: use 1 to 32"),
    "null": (None, "bad nick: use 1 to 32"),
    "leading-space": (" ann", "bad nick: no leading"),
    "trailing-space": ("ann ", "bad nick: no leading"),
    "newline": ("a\nb", "bad nick: no control"),
    "nul": ("a\x00b", "bad nick: no control"),
    "zero-width": ("a\u200bb", "bad nick: no control"),
    "bidi-override": ("a\u202eb", "bad nick: no control"),
    "lone-surrogate": ("a\ud800", "bad nick: no control"),
}


@pytest.mark.parametrize("nick, reason", BAD_NICKS.values(), ids=BAD_NICKS.keys())
async def test_a_bad_nick_is_refused(nick: Any, reason: str) -> None:
    async with lobby_with_ann() as (server, ann), connect(server, "/ws/lobby") as bob:
        assert (await refused(bob, join_as(nick))).startswith(reason)
        await join(bob, "bob")
        assert await ann.receive() == {"type": "joined", "nick": "bob"}


@pytest.mark.parametrize("nick", ["a", "n" * 32, "Zoë 🐎", "李小龙", "a b"])
async def test_nicks_of_1_to_32_printable_characters_are_fine(nick: str) -> None:
    async with lobby_with_ann() as (server, ann), connect(server, "/ws/lobby") as bob:
        await join(bob, nick)
        assert await ann.receive() == {"type": "joined", "nick": nick}


async def test_joining_twice_is_refused() -> None:
    async with lobby_with_ann() as (_, ann):
        assert await refused(ann, join_as("ann2")) == "already joined as ann"


async def test_many_bad_frames_in_a_row_do_not_disturb_the_room() -> None:
    async with lobby_with_ann() as (server, ann), connect(server, "/ws/lobby") as bob:
        await join(bob, "bob")
        assert await ann.receive() == {"type": "joined", "nick": "bob"}
        for frame, _ in list(BAD_FRAMES.values()) * 5:
            await refused(bob, frame)
        await bob.send(type="say", text="done")
        assert (await ann.receive())["text"] == "done"
        await bob.receive_type("said")


async def test_a_frame_over_64_kib_closes_only_that_connection_with_1009() -> None:
    async with lobby_with_ann() as (server, ann), connect(server, "/ws/lobby") as bob:
        await join(bob, "bob")
        assert await ann.receive() == {"type": "joined", "nick": "bob"}
        await bob.send_raw(say("a" * 70_000))
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
            await bob.ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1009
        assert await ann.receive() == {"type": "left", "nick": "bob"}
        await ann.send(type="say", text="fine")
        assert (await ann.receive())["text"] == "fine"


def test_nick_uniqueness_ignores_case_and_width() -> None:
    assert nick_key("Ann") == nick_key("ann") == nick_key("ＡＮＮ")
    assert nick_key("ann") != nick_key("anne")


@pytest.mark.parametrize("name", ["", " a", "a ", "x" * 65, "a\tb", "a\u200bb"])
def test_room_name_constraint_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        room_name(name)


@pytest.mark.parametrize("name", ["lobby", "x" * 64, "café", "a b", "🐎"])
def test_room_name_constraint_accepts(name: str) -> None:
    assert room_name(name) == name

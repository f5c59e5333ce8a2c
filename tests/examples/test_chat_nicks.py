"""Nicks that look the same are the same nick; nicks that look blank or hide characters are refused.

Pure checks on the skeleton and the nick rules, then the same cases over real sockets.
"""

from __future__ import annotations

import json

import pytest

from examples.chat import make_app
from examples.chat.confusables import is_default_ignorable, skeleton
from examples.chat.protocol import nick_keys, nick_problem
from tests.examples.kit import connect, join, member
from tests.server.kit import running_clean

CYRILLIC_A = "\u0430"

LOOK_ALIKES = {
    "cyrillic-a": f"{CYRILLIC_A}dmin",
    "greek-alpha-capital": "\u0391DMIN",
    "capital-i-for-l": "admIn",
    "rn-for-m": "adrnin",
    "full-width": "ａｄｍｉｎ",
    "upper-case": "ADMIN",
}

INVISIBLE = {
    "combining-grapheme-joiner": "admin\u034f",
    "variation-selector-16": "admin\ufe0f",
    "hangul-filler": "\u3164",
    "hangul-filler-inside": "ad\u3164min",
    "zero-width-joiner": "ad\u200dmin",
    "tag-character": "admin\U000e0041",
}

BLANK_LOOKING = {
    "braille-blank": "\u2800",
    "braille-blank-trailing": "admin\u2800",
    "no-break-space-leading": "\u00a0admin",
    "ideographic-space-only": "\u3000",
}


def clash(first: str, second: str) -> bool:
    return not nick_keys(first).isdisjoint(nick_keys(second))


@pytest.mark.parametrize("nick", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_look_alike_nicks_share_a_key(nick: str) -> None:
    assert clash(nick, "admin")


@pytest.mark.parametrize("pair", [("ian", "lan"), ("ann", "anne"), ("bob", "rob"), ("a b", "ab")])
def test_nicks_that_look_different_do_not_clash(pair: tuple[str, str]) -> None:
    assert not clash(*pair)


def test_capital_i_clashes_both_with_l_and_with_i() -> None:
    assert clash("Ian", "lan") and clash("Ian", "ian")


def test_digits_that_pass_for_letters_clash() -> None:
    assert clash("a1ice", "alice") and clash("b0b", "bOb")


def test_the_skeleton_follows_unicodes_data() -> None:
    assert skeleton(f"{CYRILLIC_A}pple") == skeleton("apple") == "apple"
    assert skeleton("paypal") == skeleton("\u0440\u0430yp\u0430l")
    assert skeleton("m") == "rn"
    assert skeleton("admin\u034f") == skeleton("admin")  # default-ignorables are dropped
    assert skeleton("\u2800") == " "


@pytest.mark.parametrize("char", ["\u034f", "\ufe0f", "\u3164", "\u200b", "\u00ad", "\U000e0041"])
def test_invisible_characters_are_default_ignorable(char: str) -> None:
    assert is_default_ignorable(char)


@pytest.mark.parametrize("char", ["a", " ", "\u0430", "\u2800", "🐎"])
def test_visible_characters_are_not_default_ignorable(char: str) -> None:
    assert not is_default_ignorable(char)


@pytest.mark.parametrize("nick", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_a_nick_with_an_invisible_character_is_refused(nick: str) -> None:
    assert nick_problem(nick) == "bad nick: no control or invisible characters"


@pytest.mark.parametrize("nick", BLANK_LOOKING.values(), ids=BLANK_LOOKING.keys())
def test_a_nick_that_looks_blank_or_padded_is_refused(nick: str) -> None:
    problem = nick_problem(nick)
    assert problem is not None and problem.startswith("bad nick: ")


@pytest.mark.parametrize("nick", ["admin", "Zoë 🐎", "李小龙", "a b", "Ωmega", "Дмитрий"])
def test_ordinary_nicks_in_any_script_are_fine(nick: str) -> None:
    assert nick_problem(nick) is None


# ---- over real sockets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "nick",
    [*LOOK_ALIKES.values(), *INVISIBLE.values(), *BLANK_LOOKING.values()],
    ids=[*LOOK_ALIKES, *INVISIBLE, *BLANK_LOOKING],
)
async def test_a_nick_that_passes_for_admin_or_for_nobody_is_refused_beside_admin(
    nick: str,
) -> None:
    async with running_clean(make_app()) as server, member(server, "lobby", "admin") as admin:
        async with connect(server, "/ws/lobby") as impostor:
            await impostor.send_raw(json.dumps({"type": "join", "nick": nick}))
            answer = await impostor.receive()
            assert answer["type"] == "error", answer
            assert answer["reason"].startswith(("nick taken", "bad nick")), answer
            await join(impostor, "bob")
        assert await admin.receive() == {"type": "joined", "nick": "bob"}
        assert await admin.receive() == {"type": "left", "nick": "bob"}
        await admin.nothing_more()

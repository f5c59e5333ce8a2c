"""Route patterns: compile once, match percent-decoded segments, bind, constrain."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.front.router import MalformedPath, Match, Route, Router, percent_decode

segment_text = st.text(min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


def only(pattern: str, **kwargs: object) -> Router:
    return Router([Route(pattern, "target", **kwargs)])  # type: ignore[arg-type]


def bound(router: Router, path: str) -> dict[str, object]:
    match = router.match(path)
    assert match is not None, f"{path} did not match"
    return dict(match.bindings)


def test_literal_pattern_matches_only_its_path() -> None:
    router = only("/chat/lobby")
    assert router.match("/chat/lobby") is not None
    assert router.match("/chat/other") is None
    assert router.match("/chat") is None
    assert router.match("/chat/lobby/more") is None


def test_trailing_slash_is_ignored_on_both_sides() -> None:
    assert only("/chat/").match("/chat") is not None
    assert only("/chat").match("/chat/") is not None


def test_root_pattern_matches_root_only() -> None:
    router = only("/")
    assert router.match("/") is not None
    assert router.match("/x") is None


def test_binding_captures_one_decoded_segment() -> None:
    assert bound(only("/chat/:room"), "/chat/caf%C3%A9") == {"room": "café"}


def test_encoded_slash_stays_inside_its_segment() -> None:
    assert bound(only("/files/:name"), "/files/a%2Fb") == {"name": "a/b"}
    assert only("/files/:name").match("/files/a/b") is None


def test_underscore_matches_a_segment_without_binding_it() -> None:
    assert bound(only("/x/:_/y"), "/x/anything/y") == {}


def test_repeated_binding_must_have_the_same_value() -> None:
    router = only("/:a/:a")
    assert bound(router, "/1/1") == {"a": "1"}
    assert router.match("/1/2") is None


def test_optional_segments_may_be_absent() -> None:
    router = only("/a[/:b]")
    assert bound(router, "/a") == {}
    assert bound(router, "/a/x") == {"b": "x"}
    assert router.match("/a/x/y") is None


def test_optional_segments_nest() -> None:
    router = only("/hats[/page[/:number]]")
    assert bound(router, "/hats") == {}
    assert bound(router, "/hats/page") == {}
    assert bound(router, "/hats/page/2") == {"number": "2"}
    assert router.match("/hats/2") is None


def test_optional_part_may_open_after_a_slash() -> None:
    router = only("/hats/[page/:number]")
    assert bound(router, "/hats") == {}
    assert bound(router, "/hats/page/3") == {"number": "3"}


def test_rest_match_binds_remaining_segments_as_path_info() -> None:
    router = only("/static/[...]")
    match = router.match("/static/css/site%20main.css")
    assert match is not None
    assert match.path_info == ("css", "site main.css")
    assert match.bindings == {}


def test_rest_match_accepts_no_remaining_segments() -> None:
    match = only("/static/[...]").match("/static")
    assert match is not None and match.path_info == ()


def test_path_info_is_none_without_rest_match() -> None:
    match = only("/a").match("/a")
    assert match is not None and match.path_info is None


def test_int_constraint_converts_and_rejects() -> None:
    router = only("/page/:n", constraints={"n": "int"})
    assert bound(router, "/page/-12") == {"n": -12}
    assert router.match("/page/12a") is None
    assert router.match("/page/%D9%A3") is None  # Arabic-Indic digit three: ASCII digits only


def test_nonempty_constraint_rejects_empty_segment() -> None:
    router = only("/room/:name/x", constraints={"name": "nonempty"})
    assert router.match("/room//x") is None
    assert bound(router, "/room/a/x") == {"name": "a"}


def test_callable_constraint_converts_or_rejects_with_value_error() -> None:
    def upper_short(value: str) -> str:
        if len(value) > 3:
            raise ValueError("too long")
        return value.upper()

    router = only("/u/:name", constraints={"name": upper_short})
    assert bound(router, "/u/abc") == {"name": "ABC"}
    assert router.match("/u/abcd") is None


def test_constraints_chain_in_order() -> None:
    router = only("/n/:n", constraints={"n": ("int", lambda n: n * 2)})
    assert bound(router, "/n/21") == {"n": 42}


def test_rejected_constraint_falls_through_to_next_route() -> None:
    router = Router(
        [
            Route("/item/:id", "by-id", constraints={"id": "int"}),
            Route("/item/:slug", "by-slug"),
        ]
    )
    by_id, by_slug = router.match("/item/7"), router.match("/item/seven")
    assert isinstance(by_id, Match) and by_id.route.target == "by-id"
    assert isinstance(by_slug, Match) and by_slug.route.target == "by-slug"


def test_first_matching_route_wins() -> None:
    router = Router([Route("/a/:x", "first"), Route("/a/b", "second")])
    match = router.match("/a/b")
    assert match is not None and match.route.target == "first"


def test_route_kind_is_websocket_by_default() -> None:
    assert Route("/ws", object()).kind == "websocket"
    assert Route("/page", object(), kind="http").kind == "http"


@pytest.mark.parametrize(
    "pattern",
    [
        "no-slash",
        "/a[",
        "/a]",
        "/a[/b]]",
        "/a[b]",
        "/a[/b]c",
        "/[...]/after",
        "/:",
        "/:1abc",
        "/a:b",
    ],
)
def test_malformed_pattern_is_refused_at_construction(pattern: str) -> None:
    with pytest.raises(ValueError, match="route pattern"):
        Route(pattern, "target")


def test_constraint_on_unbound_name_is_refused() -> None:
    with pytest.raises(ValueError, match="never binds"):
        Route("/a/:b", "target", constraints={"c": "int"})


def test_unknown_constraint_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not 'int'"):
        Route("/a/:b", "target", constraints={"b": "integer"})  # type: ignore[dict-item]


def test_unknown_route_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        Route("/a", "target", kind="tcp")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["relative", "", "*", "/bad%zz", "/trunc%4", "/not-utf8%ff"])
def test_malformed_path_raises(path: str) -> None:
    with pytest.raises(MalformedPath):
        only("/[...]").match(path)


def test_plus_is_not_a_space_in_paths() -> None:
    assert percent_decode("a+b") == "a+b"


@given(st.lists(segment_text, min_size=1, max_size=5))
def test_any_encoded_segments_round_trip_through_rest_match(segments: list[str]) -> None:
    path = "/r/" + "/".join(quote(s, safe="") for s in segments)
    match = only("/r/[...]").match(path)
    assert match is not None and match.path_info == tuple(segments)


@given(segment_text)
def test_any_encoded_value_round_trips_through_a_binding(value: str) -> None:
    assert bound(only("/v/:value"), "/v/" + quote(value, safe="")) == {"value": value}


@given(st.text(max_size=30))
def test_decoding_arbitrary_text_fails_only_with_malformed_path(text: str) -> None:
    try:
        percent_decode(text)
    except MalformedPath:
        pass


@given(st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=3))
def test_nested_optionals_match_every_prefix_depth(values: list[str]) -> None:
    names = ["a", "b", "c"][: len(values)]
    path = "/root/" + "/".join(values)
    assert bound(only("/root[/:a[/:b[/:c]]]"), path) == dict(zip(names, values, strict=True))

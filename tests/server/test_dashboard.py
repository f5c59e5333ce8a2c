"""The dashboard's decisions without a socket (who may see it, the history's rates, what a
snapshot shows of a node), then its page and live feed over real sockets."""

from __future__ import annotations

import json
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from actors import ChildSpec, DynamicSupervisor, Restart, Supervisor
from server import App, Frame, Request, WebSocketHandler, websocket
from server.front.exposure import is_loopback_host
from server.ops.dashboard import dashboard_routes, with_dashboard
from server.ops.dashboard.access import DashboardAccess, cookie_value
from server.ops.dashboard.history import KEPT, History, Sample
from server.ops.dashboard.snapshot import TREE_CHILDREN, snapshot
from server.ops.stats import BlockedStep, ServerStats

from .kit import client, get, http_exchange, rejection, running, upgrade_request
from .test_cli import corral_serve

TOKEN = "s3cret-token"


def request(
    peer: str = "127.0.0.1", *headers: tuple[str, str], query: str = "", path: str = "/corral/"
) -> Request:
    return Request(
        method="GET",
        target=path + query,
        path=path,
        query={"token": (query.removeprefix("?token="),)} if query else {},
        headers=(("host", "127.0.0.1:8080"), *headers),
        peer=(peer, 40000),
    )


def may_see(request: Request, token: str | None) -> bool:
    return DashboardAccess(token).page_refusal(request) is None


def may_open_feed(request: Request, access: DashboardAccess) -> bool:
    return access.feed_refusal(request) is None


# ---- who may see it ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_addresses_are_loopback(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["10.0.0.5", "192.168.1.2", "::ffff:10.0.0.5", "2001:db8::1", ""])
def test_other_addresses_are_not(host: str) -> None:
    assert not is_loopback_host(host)


def test_loopback_sees_the_dashboard_without_a_token_configured() -> None:
    assert may_see(request("127.0.0.1"), None)
    assert may_see(request("::1"), None)


def test_with_a_token_configured_loopback_needs_it_too() -> None:
    """A reverse proxy that adds no forwarding header connects from loopback."""
    assert not may_see(request("127.0.0.1"), TOKEN)
    assert not may_see(request("::1"), TOKEN)
    assert may_see(request("127.0.0.1", ("authorization", f"Bearer {TOKEN}")), TOKEN)


def test_elsewhere_is_refused_without_the_token() -> None:
    assert not may_see(request("10.1.2.3"), None)
    assert not may_see(request("10.1.2.3"), TOKEN)
    assert not may_see(request("10.1.2.3", ("authorization", "Bearer wrong")), TOKEN)
    assert not may_see(request("10.1.2.3", query="?token=wrong"), TOKEN)
    assert not may_see(request("10.1.2.3", ("authorization", f"Basic {TOKEN}")), TOKEN)
    assert not may_see(request("10.1.2.3", ("cookie", f"corral_dashboard={TOKEN}")), TOKEN)


def test_elsewhere_with_the_token_is_let_in_by_header_query_or_cookie() -> None:
    assert may_see(request("10.1.2.3", ("authorization", f"Bearer {TOKEN}")), TOKEN)
    assert may_see(request("10.1.2.3", ("authorization", f"bearer  {TOKEN} ")), TOKEN)
    assert may_see(request("10.1.2.3", query=f"?token={TOKEN}"), TOKEN)
    cookie = ("cookie", f"theme=dark; corral_dashboard={cookie_value(TOKEN)}")
    assert may_see(request("10.1.2.3", cookie), TOKEN)


def test_no_token_configured_lets_no_presented_token_in() -> None:
    assert not may_see(request("10.1.2.3", query="?token="), None)
    assert not may_see(request("10.1.2.3", query="?token="), "")


@pytest.mark.parametrize("header", ["x-forwarded-for", "forwarded", "x-real-ip"])
def test_a_proxied_request_is_not_local_even_from_loopback(header: str) -> None:
    assert not may_see(request("127.0.0.1", (header, "203.0.113.7")), None)
    assert may_see(request("127.0.0.1", (header, "203.0.113.7"), query=f"?token={TOKEN}"), TOKEN)


# ---- the history ---------------------------------------------------------------------------


def sample(seq: int, at: float, frames_in: int = 0, closes: dict[str, int] | None = None) -> Sample:
    return Sample(
        seq=seq,
        at=at,
        connections=seq,
        frames_in=frames_in,
        frames_out=2 * frames_in,
        dropped=seq,
        blocked=0,
        closes=tuple(sorted((closes or {}).items())),
    )


def test_points_are_rates_between_consecutive_samples() -> None:
    history = History()
    history.samples.extend(
        [
            sample(0, 100.0, frames_in=0),
            sample(1, 101.0, frames_in=50, closes={"1000": 2}),
            sample(2, 103.0, frames_in=150, closes={"1000": 3, "1001": 1}),
        ]
    )
    points = history.points(since=-1)
    assert [p["seq"] for p in points] == [1, 2]
    assert [p["in_per_s"] for p in points] == [50.0, 50.0]
    assert [p["out_per_s"] for p in points] == [100.0, 100.0]
    assert [p["closes"] for p in points] == [{"1000": 2}, {"1000": 1, "1001": 1}]
    assert [p["dropped"] for p in points] == [1, 1]
    assert [p["seq"] for p in history.points(since=1)] == [2]
    assert history.points(since=2) == []


def test_a_sample_is_due_once_a_period_has_passed_and_the_ring_keeps_the_last_minutes() -> None:
    history = History()
    assert history.is_due(100.0) and history.last_seq == -1
    history.samples.append(sample(0, 100.0))
    assert not history.is_due(100.5)
    assert history.is_due(100.95)
    for seq in range(1, KEPT + 10):
        history.samples.append(sample(seq, 100.0 + seq))
    assert len(history.samples) == KEPT
    assert history.samples[0].seq == 10 and history.last_seq == KEPT + 9


async def test_the_closes_chart_gets_a_caption_per_close_code_label() -> None:
    history = History()
    history.samples.extend(
        [sample(0, 100.0), sample(1, 101.0, closes={"1000": 2, "4xxx": 5, "4001": 1, "other": 1})]
    )
    async with actors.open_node("test") as node:
        view = snapshot(
            node, ServerStats(), history, since=-1, now=102.0, feed_route="/corral/live"
        )
    assert view["close_captions"] == {
        "1000": "1000 normal",
        "4xxx": "4000-4999 private",
        "4001": "4001 app",
        "other": "other",
    }


# ---- what a snapshot shows -------------------------------------------------------------------


async def crash_once(actor: actors.Actor, crashed: list[bool]) -> None:
    if not crashed:
        crashed.append(True)
        raise RuntimeError("first run crashes")
    await trio.sleep_forever()


async def stuck(actor: actors.Actor) -> None:
    """Never takes a message: its mailbox only grows."""
    await trio.sleep_forever()


async def test_a_snapshot_shows_the_tree_with_restarts_the_deepest_mailboxes_and_groups() -> None:
    crashed: list[bool] = []
    pool = DynamicSupervisor()
    tree = Supervisor(
        [
            ChildSpec("flaky", crash_once, (crashed,), kind="worker"),
            ChildSpec("stuck", stuck, name="stuck"),
            pool.child_spec("pool"),
        ]
    )
    async with actors.open_node("test") as node, trio.open_nursery() as nursery:
        root = await nursery.start(partial(actors.supervise, tree, name="top"))
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(TREE_CHILDREN + 3):
            pool.start_child(ChildSpec("job", stuck, restart=Restart.TEMPORARY, kind="job"))
        for number in range(7):
            node.send("stuck", number)
        stuck_address = node.whereis("stuck")
        assert stuck_address is not None
        node.join("room:lobby", stuck_address)
        stats = ServerStats()
        stats.blocked["/slow"] += 1
        stats.recent_blocked.append(
            BlockedStep(1000.0, 0.25, "actor x", "Slow", "/slow", "/slow", "slow.py:3 in handle")
        )
        now = time.time() + 60
        view = snapshot(node, stats, History(), since=-1, now=now, feed_route="/corral/live")
        nursery.cancel_scope.cancel()

    [top] = view["tree"]
    assert top["id"] == "top" and top["address"] == f"test.{root.serial}"
    flaky, stuck_child, pool_child = top["children"]
    assert (flaky["id"], flaky["kind"], flaky["restarts"]) == ("flaky", "worker", 1)
    assert stuck_child["name"] == "stuck" and stuck_child["restarts"] == 0
    assert pool_child["supervisor"] and len(pool_child["children"]) == TREE_CHILDREN
    assert pool_child["more"] == {"count": 3, "kinds": {"job": 3}, "restarts": 0}

    rows = view["actors"]["rows"]
    assert rows[0]["name"] == "stuck" and rows[0]["depth"] == 7 and rows[0]["in"] == 7
    assert rows[0]["kind"] == "actor" and rows[0]["out"] is None
    assert 60 <= rows[0]["age"] < 120
    assert [r["depth"] for r in rows] == sorted((r["depth"] for r in rows), reverse=True)
    assert view["actors"]["total"] == len(rows)
    assert view["groups"] == [{"group": "room:lobby", "members": 1}]
    assert view["idle"] and view["connections"] == []
    assert view["totals"]["restarts"] == 1
    assert view["blocked"]["count"] == 1
    assert view["blocked"]["recent"][0]["handler"] == "Slow"
    assert view["blocked"]["recent"][0]["ms"] == 250.0
    json.dumps(view)  # all of it travels as JSON


# ---- over real sockets ------------------------------------------------------------------------


class Echo(WebSocketHandler[None]):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        return frame, state


APP = App([websocket("/echo", Echo())])


async def next_update(ws: Any) -> dict[str, Any]:
    with trio.fail_after(10):
        update: dict[str, Any] = json.loads(await ws.get_message())
    return update


async def test_the_feed_counts_the_other_routes_connections_and_their_messages() -> None:
    async with running(with_dashboard(APP)) as served:
        async with client(served.url("/echo")) as echo:
            for number in range(5):
                await echo.send_message(f"m{number}")
                assert await echo.get_message() == f"m{number}"
            async with client(served.url("/corral/live")) as feed:
                first = await next_update(feed)
                second = await next_update(feed)
    assert not first["idle"]
    assert first["connections"] == [
        {"route": "/corral/live", "open": 1},
        {"route": "/echo", "open": 1},
    ]
    [echo_row] = [row for row in first["actors"]["rows"] if row["route"] == "/echo"]
    assert echo_row["kind"] == "connection"
    assert re.fullmatch(r"/echo 127\.0\.0\.1:\d+", echo_row["name"]), echo_row["name"]
    assert (echo_row["in"], echo_row["out"]) == (5, 5)
    [root] = first["tree"]
    assert [child["id"] for child in root["children"]] == [
        "dashboard-sampler",
        "connections",
        "listener",
    ]
    assert second["seq"] >= first["seq"]
    assert all(p["seq"] > first["seq"] for p in second["points"])


async def test_with_a_token_the_page_trades_it_for_a_cookie_that_opens_the_feed() -> None:
    app = App([*dashboard_routes("/ops/", token=TOKEN), *APP.routes])
    async with running(app) as served:
        local = await http_exchange(served.port, get("/ops/"))
        with_header = await http_exchange(
            served.port, get("/ops/", f"Authorization: Bearer {TOKEN}")
        )
        with_query = await http_exchange(served.port, get(f"/ops/?view=tree&token={TOKEN}"))
        cookie = with_query.headers["set-cookie"].split(";")[0]
        with_cookie = await http_exchange(served.port, get("/ops/", f"Cookie: {cookie}"))
        feed_refused = await http_exchange(served.port, upgrade_request("/ops/live"))
        refused = await rejection(served.url(f"/ops/live?token={TOKEN}"))
        async with client(served.url("/ops/live"), extra_headers=[("Cookie", cookie)]) as feed:
            update = await next_update(feed)
    assert local.status == 403 and b"token" in local.body
    assert with_header.status == 200 and with_header.headers["content-type"].startswith("text/html")
    assert b"<title>corral dashboard</title>" in with_header.body
    assert with_query.status == 200 and "location" not in with_query.headers
    assert b'location.replace("/ops/?view=tree")' in with_query.body  # same-site, unlike a 303
    assert TOKEN.encode() not in with_query.body
    attributes = {part.strip() for part in with_query.headers["set-cookie"].split(";")[1:]}
    assert attributes == {"Path=/ops", "HttpOnly", "SameSite=Strict"}
    assert TOKEN not in cookie
    assert with_cookie.status == 200 and TOKEN.encode() not in with_cookie.body
    assert feed_refused.status == 403 and refused.status_code == 403
    assert update["idle"]
    assert update["connections"] == [
        {"route": "/echo", "open": 0},
        {"route": "/ops/live", "open": 1},
    ]


async def test_corral_serve_dashboard_serves_the_page_and_takes_its_token_from_the_command_line(
    tmp_path: Path,
) -> None:
    args = ("examples.echo:app", "--dashboard", "--dashboard-token", TOKEN)
    async with corral_serve(tmp_path, *args) as corral:
        local = await http_exchange(corral.port, get("/corral/"))
        proxied = await http_exchange(corral.port, get("/corral/", "Forwarded: for=203.0.113.7"))
        with_token = await http_exchange(
            corral.port,
            get("/corral/", "Forwarded: for=203.0.113.7", f"Authorization: Bearer {TOKEN}"),
        )
        bearer = [("Authorization", f"Bearer {TOKEN}")]
        async with client(
            f"ws://127.0.0.1:{corral.port}/corral/live", extra_headers=bearer
        ) as feed:
            update = await next_update(feed)
    assert (local.status, proxied.status, with_token.status) == (403, 403, 200)
    [root] = update["tree"]
    assert "dashboard-sampler" in [child["id"] for child in root["children"]]


async def test_the_snapshot_says_how_the_last_upgrade_went() -> None:
    async with actors.open_node("test") as node:
        stats = ServerStats()
        stats.upgraded(False, "upgrade failed, the old code runs on: SyntaxError: x at a.py:3")
        view = snapshot(node, stats, History(), since=-1, now=time.time(), feed_route="/live")
    assert view["code"]["last_upgrade"].startswith("upgrade failed, the old code runs on")
    assert view["code"]["upgrades_failed"] == 1
    assert view["code"]["on_old_code"] == 0

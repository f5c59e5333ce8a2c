"""The dashboard and /metrics exposed: Host and Origin checks, tokens kept out of the logs,
/metrics behind a bearer token, the start-up warning, the cap on feeds. Decisions first,
then over real sockets on 127.0.0.1."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from server import App, Request, metrics_route, websocket
from server.front.exposure import exposure_warnings, host_allowed, is_loopback_bind, redacted_target
from server.ops.dashboard import dashboard_routes, with_dashboard
from server.ops.dashboard.access import origin_allowed
from server.ops.dashboard.history import take_sample
from server.ops.stats import stats_of
from server.ops.worker_metrics import combined_metrics_route
from server.run import embed
from server.run.cli import main

from .corral_process import corral_serve, free_port
from .kit import (
    HttpAnswer,
    client,
    expect_close,
    get,
    http_exchange,
    rejection,
    running,
    upgrade_request,
)
from .test_dashboard import APP, TOKEN, Echo, next_update
from .test_metrics import scrape, value

# ---- decisions -------------------------------------------------------------------------------


def head(*headers: tuple[str, str], scheme: str = "ws") -> Request:
    return Request("GET", "/corral/live", "/corral/live", {}, headers, scheme=scheme)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8080",
        "10.0.0.5",
        "[::1]:8080",
        "localhost:8080",
        "ops.localhost",
        "Corral.Example:8080",
    ],
)
def test_ip_addresses_localhost_and_configured_names_are_accepted_hosts(host: str) -> None:
    assert host_allowed(head(("host", host)), {"corral.example"})


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example"])
def test_other_names_are_refused_hosts(host: str) -> None:
    """DNS rebinding needs a name the attacker owns: it is never an IP literal."""
    assert not host_allowed(head(("host", host)), {"corral.example"})


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://ops.example", "ops.example", True),  # behind a TLS proxy: default ports
        ("http://OPS.example:80", "ops.example", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8080", False),  # another server on this machine
        ("http://127.0.0.2:8080", "127.0.0.1:8080", False),
        ("http://evil.example", "127.0.0.1:8080", False),
        ("null", "127.0.0.1:8080", False),
        ("https://grafana.example", "127.0.0.1:8080", True),  # configured
    ],
)
def test_the_feed_takes_its_own_origin_and_configured_ones(
    origin: str, host: str, allowed: bool
) -> None:
    request = head(("host", host), ("origin", origin))
    assert origin_allowed(request, {"https://grafana.example"}) is allowed


def test_a_client_without_origin_is_not_a_browser_and_passes() -> None:
    assert origin_allowed(head(("host", "127.0.0.1:8080")))


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/corral/?token=s3cret", "/corral/?token=redacted"),
        ("/x?a=1&TOKEN=s3cret&b=2", "/x?a=1&TOKEN=redacted&b=2"),
        ("/x?access_token=s3cret&password=hunter2", "/x?access_token=redacted&password=redacted"),
        ("/x?tokens=fine", "/x?tokens=fine"),
        ("/plain", "/plain"),
    ],
)
def test_secret_query_values_are_redacted_from_log_lines(target: str, logged: str) -> None:
    assert redacted_target(target) == logged


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_loopback_binds(host: str) -> None:
    assert is_loopback_bind(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", None, "10.0.0.5", "corral.example"])
def test_binds_beyond_loopback(host: str | None) -> None:
    assert not is_loopback_bind(host)


def test_start_up_warnings_name_each_unprotected_endpoint_beyond_loopback_only() -> None:
    open_routes = (metrics_route(), *dashboard_routes())
    warnings = exposure_warnings(open_routes, "0.0.0.0")
    assert len(warnings) == 2
    assert "/metrics answers anyone" in warnings[0] and "--metrics-token" in warnings[0]
    assert "dashboard at /corral has no token" in warnings[1]
    assert exposure_warnings(open_routes, "127.0.0.1") == []
    guarded = (metrics_route(token=TOKEN), *dashboard_routes(token=TOKEN))
    assert exposure_warnings(guarded, "0.0.0.0") == []


# ---- over real sockets -----------------------------------------------------------------------


def request_with_host(path: str, host: str, *headers: str) -> bytes:
    lines = "".join(f"{header}\r\n" for header in headers)
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{lines}\r\n".encode()


async def test_a_rebound_name_gets_403_from_the_dashboard_and_metrics() -> None:
    names = ["corral.example"]
    app = with_dashboard(App([metrics_route(hosts=names), *APP.routes]), hosts=names)
    async with running(app) as served:

        async def status(path: str, host: str) -> int:
            answer: HttpAnswer = await http_exchange(served.port, request_with_host(path, host))
            return answer.status

        rebound = [await status(path, "evil.example") for path in ("/corral/", "/metrics")]
        named = [await status(path, "corral.example:80") for path in ("/corral/", "/metrics")]
        by_address = [
            await status(path, f"127.0.0.1:{served.port}") for path in ("/corral/", "/metrics")
        ]
    assert rebound == [403, 403]
    assert named == [200, 200] and by_address == [200, 200]


async def test_the_feed_refuses_a_page_of_another_origin_and_takes_its_own() -> None:
    async with running(with_dashboard(APP)) as served:
        own = f"http://127.0.0.1:{served.port}"
        foreign = await rejection(
            served.url("/corral/live"), extra_headers=[("Origin", "http://evil.example")]
        )
        other_port = await rejection(
            served.url("/corral/live"), extra_headers=[("Origin", "http://127.0.0.1:1")]
        )
        async with client(served.url("/corral/live"), extra_headers=[("Origin", own)]) as feed:
            update = await next_update(feed)
    assert foreign.status_code == 403 and b"origin" in foreign.body
    assert other_port.status_code == 403
    assert update["connections"]


async def test_the_token_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(with_dashboard(APP, token=TOKEN)) as served:
        traded = await http_exchange(served.port, get(f"/corral/?token={TOKEN}"))
        wrong = await http_exchange(served.port, get(f"/corral/?token={TOKEN}x"))
        await rejection(served.url(f"/corral/live?token={TOKEN}"))
    assert (traded.status, wrong.status) == (200, 403)
    assert "GET /corral/?token=redacted -> 200" in caplog.text
    assert TOKEN not in caplog.text


async def test_metrics_with_a_token_need_it_as_a_bearer_token() -> None:
    app = App([metrics_route(token=TOKEN), *APP.routes])
    async with running(app) as served:
        without = await http_exchange(served.port, get("/metrics"))
        wrong = await http_exchange(served.port, get("/metrics", "Authorization: Bearer nope"))
        right = await http_exchange(served.port, get("/metrics", f"Authorization: Bearer {TOKEN}"))
    assert without.status == 401 and without.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status == 401
    assert right.status == 200 and b"corral_connections_open" in right.body


async def test_a_server_beyond_loopback_warns_of_open_metrics_and_dashboard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = with_dashboard(App([metrics_route(), *APP.routes]))
    async with embed.serving(app, host="0.0.0.0", port=0):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("/metrics answers anyone" in line for line in warnings), warnings
    assert any("dashboard at /corral has no token" in line for line in warnings), warnings


async def test_feeds_past_the_cap_are_closed_with_1013_and_a_reason() -> None:
    async with running(with_dashboard(APP, max_feeds=2)) as served:
        async with (
            client(served.url("/corral/live")) as first,
            client(served.url("/corral/live")) as second,
        ):
            for feed in (first, second):
                await next_update(feed)
            async with client(served.url("/corral/live")) as third:
                code, reason = await expect_close(third)
        async with client(served.url("/corral/live")) as after:  # a place came free
            update: dict[str, Any] = await next_update(after)
    assert (code, reason) == (1013, "too many dashboard feeds open (at most 2)")
    assert update["seq"] >= 0


async def test_a_plain_get_to_an_unknown_path_is_no_refused_upgrade() -> None:
    app = App([metrics_route(), websocket("/echo", Echo())])
    async with running(app) as served:
        for _ in range(3):
            assert (await http_exchange(served.port, get("/favicon.ico"))).status == 404
        assert (await http_exchange(served.port, upgrade_request("/nowhere"))).status == 404
        assert (await http_exchange(served.port, get("/echo"))).status == 426
        with trio.fail_after(10):
            samples = await scrape(served.port)
    assert value(samples, "corral_upgrades_refused_total", status="404") == 1
    assert value(samples, "corral_upgrades_refused_total", status="426") == 1


async def test_many_distinct_client_close_codes_make_a_bounded_number_of_series() -> None:
    codes = [*range(3000, 3060), *range(4000, 4060)]
    async with running(App([metrics_route(), websocket("/echo", Echo())])) as served:
        for code in codes:
            async with client(served.url("/echo")) as ws:
                await ws.aclose(code=code)
        await served.until_no_connections()
        answer = await http_exchange(served.port, get("/metrics"))
        closes = dict(take_sample(served.node, stats_of(served.node), 0, 0.0).closes)
    closed = [
        line
        for line in answer.body.decode().splitlines()
        if line.startswith("corral_connections_closed_total{")
    ]
    assert len(closed) == 2, closed
    assert 'code="3xxx"' in closed[0] and closed[0].endswith(" 60.0")
    assert 'code="4xxx"' in closed[1] and closed[1].endswith(" 60.0")
    assert closes == {"3xxx": 60, "4xxx": 60}  # the dashboard's history keeps as few
    assert len(answer.body) < 12_000


async def test_corral_serve_takes_the_metrics_token_and_dashboard_names_from_its_options(
    tmp_path: Path,
) -> None:
    args = ("--metrics", "--metrics-token", TOKEN, "--dashboard", "--dashboard-host", "ops.example")
    async with corral_serve(tmp_path, "examples.echo:app", *args) as corral:
        anonymous = await http_exchange(corral.port, get("/metrics"))
        bearer = await http_exchange(corral.port, get("/metrics", f"Authorization: Bearer {TOKEN}"))
        named = await http_exchange(corral.port, request_with_host("/corral/", "ops.example"))
        rebound = await http_exchange(corral.port, request_with_host("/corral/", "evil.example"))
    assert (anonymous.status, bearer.status) == (401, 200)
    assert (named.status, rebound.status) == (200, 403)


async def test_the_workers_combined_metrics_take_the_token_too(tmp_path: Path) -> None:
    app = App([combined_metrics_route(tmp_path, token=TOKEN), *APP.routes])
    async with running(app) as served:
        without = await http_exchange(served.port, get("/metrics"))
        right = await http_exchange(served.port, get("/metrics", f"Authorization: Bearer {TOKEN}"))
    assert (without.status, right.status) == (401, 200)
    assert b"corral_connections_open" in right.body


async def test_metrics_on_an_address_of_their_own_leave_the_app_port(tmp_path: Path) -> None:
    scrape_port = free_port()
    args = ("--metrics-address", f"127.0.0.1:{scrape_port}", "--metrics-token", TOKEN)
    async with corral_serve(tmp_path, "examples.echo:app", *args) as corral:
        await corral.wait_for_log(rf"metrics on http://127\.0\.0\.1:{scrape_port}/metrics")
        on_app_port = await http_exchange(corral.port, get("/metrics"))
        anonymous = await http_exchange(scrape_port, get("/metrics"))
        bearer = await http_exchange(scrape_port, get("/metrics", f"Authorization: Bearer {TOKEN}"))
        elsewhere = await http_exchange(scrape_port, get("/"))
    assert on_app_port.status == 404
    assert (anonymous.status, bearer.status, elsewhere.status) == (401, 200, 404)
    assert b"corral_connections_open" in bearer.body


@pytest.mark.parametrize("address", ["9100", "nohost:", ":9100", "host:99999", "host:http"])
def test_a_bad_metrics_address_exits_2_naming_the_option(
    address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "examples.echo:app", "--metrics-address", address]) == 2
    assert "--metrics-address must be HOST:PORT" in capsys.readouterr().err

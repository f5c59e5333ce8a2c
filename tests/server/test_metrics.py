"""Prometheus metrics over a real socket after real traffic, parsed by prometheus_client's
own parser; and the blocked-loop watchdog, which counts and logs a callback that holds the
loop."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import actors
from server import (
    App,
    Close,
    ConnectionOptions,
    Frame,
    OutboxPolicy,
    Request,
    Response,
    ServerOptions,
    Text,
    broadcast,
    metrics_route,
    websocket,
)

from .http_client import HttpClient
from .kit import (
    Recorded,
    Terminations,
    client,
    expect_close,
    get,
    http_exchange,
    raw_client,
    rejection,
    running,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int, path: str = "/metrics") -> Samples:
    """Fetch the metrics page and parse it: ``{(sample name, labels): value}``."""
    answer = await http_exchange(port, get(path))
    assert answer.status == 200, answer
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples[metric, frozenset(labels.items())]


class Echo(Recorded):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Any, Any]:
        if frame == Text("bye"):
            return Close(4000, "bye"), state
        return frame, state


class Crashes(Recorded):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Any, Any]:
        raise RuntimeError("handler bug")


class Refuses(Recorded):
    def init(self, request: Request) -> Response:
        return Response.text(403, "no")


def traffic_app(log: Terminations) -> App:
    return App(
        [
            metrics_route("/stats/prometheus"),
            websocket("/echo/:n", Echo(log)),
            websocket("/crash", Crashes(log)),
            websocket("/refuse", Refuses(log)),
        ]
    )


async def test_metrics_count_connections_closes_refusals_and_frames_after_real_traffic() -> None:
    log = Terminations()
    async with running(traffic_app(log)) as served:
        async with client(served.url("/echo/1")) as stays:
            async with client(served.url("/echo/2")) as leaves:
                for ws in (stays, leaves):
                    for n in range(3):
                        await ws.send_message(f"message {n}")
                        assert await ws.get_message() == f"message {n}"
                await leaves.send_message("bye")
                assert await expect_close(leaves) == (4000, "bye")
            async with client(served.url("/crash")) as crashing:
                await crashing.send_message("boom")
                assert (await expect_close(crashing))[0] == 1011
            await log.wait(2)
            assert (await rejection(served.url("/refuse"))).status_code == 403
            assert (await rejection(served.url("/nowhere"))).status_code == 404
            assert (await http_exchange(served.port, get("/echo/1"))).status == 426

            samples = await scrape(served.port, "/stats/prometheus")

    assert value(samples, "corral_connections_open", route="/echo/:n") == 1
    assert value(samples, "corral_connections_opened_total", route="/echo/:n") == 2
    assert value(samples, "corral_connections_opened_total", route="/crash") == 1
    closed = "corral_connections_closed_total"
    assert value(samples, closed, route="/echo/:n", code="4000", reason="handler_stopped") == 1
    assert value(samples, closed, route="/crash", code="1011", reason="handler_crashed") == 1
    assert value(samples, "corral_handler_crashes_total", route="/crash") == 1
    for status in ("403", "404", "426"):
        assert value(samples, "corral_upgrades_refused_total", status=status) == 1
    assert value(samples, "corral_frames_received_total") == 3 + 4 + 1
    assert value(samples, "corral_frames_sent_total") == 6
    # Masked client frames: 6 header bytes + 9 of text, each.
    assert value(samples, "corral_bytes_received_total") >= 8 * 15
    assert value(samples, "corral_bytes_sent_total") >= 6 * 11
    # Sampled: each connection's first message is timed.
    assert value(samples, "corral_handler_seconds_count") == 3
    assert value(samples, "corral_handler_seconds_bucket", le="+Inf") == 3
    assert value(samples, "corral_actors", kind="connection") >= 1
    assert value(samples, "corral_supervisor_restarts_total") == 0
    assert ("corral_timers_pending", frozenset()) in samples
    assert ("corral_dead_letters_total", frozenset()) in samples


async def test_connections_open_reads_zero_for_every_websocket_route_with_none_open() -> None:
    log = Terminations()
    async with running(traffic_app(log)) as served:
        async with client(served.url("/echo/1")):
            pass
        await log.wait(1)
        samples = await scrape(served.port, "/stats/prometheus")
    for route in ("/echo/:n", "/crash", "/refuse"):
        assert value(samples, "corral_connections_open", route=route) == 0


async def test_mailbox_depth_and_drops_are_read_when_scraped(nursery: trio.Nursery) -> None:
    app = App([metrics_route()])
    release = trio.Event()

    async def stuck(actor: actors.Actor) -> None:
        await release.wait()  # never reads its mailbox

    async with running(app) as served:
        address = served.node.spawn(nursery, stuck, name="stuck", capacity=4, kind="stuck")
        for n in range(10):
            served.node.send(address, n)
        samples = await scrape(served.port)
        release.set()
        await served.node.wait(address)
        # The first scrape's connection ends after its answer: the connections supervisor
        # has its Down to take before every mailbox is empty.
        await served.until_no_connections()
        after = await scrape(served.port)

    top = {"actor": f"local.{address.serial}", "name": "stuck", "kind": "stuck"}
    assert value(samples, "corral_mailbox_depth_top", **top) == 4
    assert value(samples, "corral_mailbox_depth_bucket", le="1") < value(
        samples, "corral_mailbox_depth_bucket", le="+Inf"
    )
    assert value(samples, "corral_mailbox_depth_bucket", le="4") == value(
        samples, "corral_mailbox_depth_bucket", le="+Inf"
    )
    assert value(samples, "corral_mailbox_depth_gsum") >= 4
    assert value(samples, "corral_mailbox_dropped_total") == 6
    # Once the actor has ended, its drops are still counted (a counter never goes down).
    assert value(after, "corral_mailbox_dropped_total") == 6
    assert not [key for key in after if key[0] == "corral_mailbox_depth_top"]


class Blocks(Recorded):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Any, Any]:
        time.sleep(0.3)  # the blocking call under test: it must hold the loop for real
        return frame, state


BLOCKING_LINE = Blocks.websocket_handle.__code__.co_firstlineno + 1


async def test_a_callback_that_blocks_the_loop_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="corral.server.watchdog")
    log = Terminations()
    app = App([metrics_route(), websocket("/slow/:id", Blocks(log))])
    async with running(app, ServerOptions(block_threshold=0.1)) as served:
        async with client(served.url("/slow/7")) as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
        with trio.fail_after(5):  # the watcher thread reports once it sees the step is over
            while "loop blocked" not in caplog.text:
                await trio.sleep(0.01)
        samples = await scrape(served.port)
    assert value(samples, "corral_loop_blocked_total", route="/slow/:id") == 1
    assert value(samples, "corral_loop_blocked_seconds_count") == 1
    assert value(samples, "corral_loop_blocked_seconds_bucket", le="0.1") == 0
    # Told of at the threshold from the watcher thread (the hold went on), then reported.
    held, blocked = [r.getMessage() for r in caplog.records if r.name == "corral.server.watchdog"]
    assert held.startswith("loop held for ") and " ms so far by actor " in held, held
    assert f"at test_metrics.py:{BLOCKING_LINE} in websocket_handle <- connection.py:" in held
    assert held.endswith(" in run")  # the task's whole stack, down to trio's scheduler
    message = blocked
    blocked_ms = re.match(r"loop blocked for (\d+) ms by actor ", message)
    assert blocked_ms is not None, message
    # Timed by samples a quarter threshold apart: about 25 ms short of the 300 held at most.
    assert int(blocked_ms.group(1)) >= 250
    assert "(handler Blocks, route /slow/:id, path /slow/7)" in message
    # Where the loop was held, innermost first: the blocking line, then the connection's loop.
    assert f"at test_metrics.py:{BLOCKING_LINE} in websocket_handle <- connection.py:" in message


async def test_the_watchdog_is_off_when_its_threshold_is_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Terminations()
    app = App([metrics_route(), websocket("/slow", Blocks(log))])
    async with running(app, ServerOptions(block_threshold=None)) as served:
        async with client(served.url("/slow")) as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
        samples = await scrape(served.port)
    assert ("corral_loop_blocked_seconds_count", frozenset()) in samples
    assert value(samples, "corral_loop_blocked_seconds_count") == 0
    assert "loop blocked" not in caplog.text


async def test_supervisor_restarts_dead_letters_and_pending_timers_are_exported() -> None:
    started = 0
    restarted = trio.Event()

    async def flaky(actor: actors.Actor) -> None:
        nonlocal started
        started += 1
        if started == 1:
            raise RuntimeError("first start fails")
        actor.start_timer(3600, "later")  # one pending timer
        restarted.set()
        await trio.sleep_forever()

    app = App([metrics_route()], children=[actors.ChildSpec("flaky", flaky, name="flaky")])
    async with running(app) as served:
        with trio.fail_after(10):
            await restarted.wait()
        ended = actors.Address(served.node.name, 10_000)  # never spawned: no such actor
        served.node.send(ended, "lost")
        samples = await scrape(served.port)
    # The root supervisor is rest_for_one: the crash restarts flaky and the two after it
    # (the connections' supervisor and the listener).
    assert value(samples, "corral_supervisor_restarts_total") == 3
    assert value(samples, "corral_dead_letters_total") == 1
    assert value(samples, "corral_timers_pending") >= 1


class Subscriber(Recorded):
    def websocket_init(self, state: Any) -> tuple[Any, Any]:
        actors.join("all")
        return Text("joined"), state


async def test_frames_broadcast_to_a_full_outbox_are_counted_as_dropped() -> None:
    options = ConnectionOptions(
        outbox_capacity=2, outbox_overflow=OutboxPolicy.DROP, idle_timeout=None
    )
    log = Terminations()
    app = App([metrics_route(), websocket("/sub", Subscriber(log), options=options)])
    big = "x" * 256 * 1024
    async with running(app) as served:
        async with raw_client(served.port, "/sub", receive_buffer=4096) as reader:
            assert await reader.message() == "joined"  # then it reads no more
            taken = sum(broadcast("all", big, node=served.node) for _ in range(100))
            samples = await scrape(served.port)
            reader.reset()
    assert taken < 100
    assert value(samples, "corral_outbox_dropped_total") == 100 - taken
    assert value(samples, "corral_frames_sent_total") == 1 + taken


async def test_the_asgi_apps_answers_are_counted_by_status() -> None:
    async def site(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with running(App([metrics_route()], asgi=site)) as served:
        client = await HttpClient.open(served.port)  # one kept-alive connection
        for path in ("/a", "/b", "/boom"):
            await client.request("GET", path)
        await client.aclose()
        samples = await scrape(served.port)
    assert value(samples, "corral_asgi_responses_total", status="200") == 2
    assert value(samples, "corral_asgi_responses_total", status="500") == 1

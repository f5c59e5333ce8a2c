"""``server.serving``: an app inside one's own trio program, on a free port, drained on exit."""

from __future__ import annotations

import pytest
import trio

from examples.echo import app as echo_app
from server import App, ServerOptions, ServerShutdown, serving, websocket

from .kit import Recorded, Terminations, client, expect_close, open_sockets, raw_client


async def test_port_0_picks_a_free_port_that_the_url_names() -> None:
    async with serving(echo_app, port=0) as running:
        assert running.port > 0
        assert running.url("/x") == f"ws://127.0.0.1:{running.port}/x"
        assert running.http_url() == f"http://127.0.0.1:{running.port}/"
        async with client(running.url()) as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "hi"


async def test_leaving_the_block_drains_open_connections_with_1001() -> None:
    log = Terminations()
    app = App([websocket("/", Recorded(log))])
    closes: list[tuple[int, str | None]] = []
    async with trio.open_nursery() as nursery:
        async with serving(app) as running:
            await nursery.start(hold_a_client, running.url(), closes)
        assert log.reasons == [ServerShutdown()]  # every terminate ran before serving returned
    assert closes == [(1001, None)]
    assert open_sockets(running.port) == []


async def test_an_error_in_the_block_still_drains_and_propagates() -> None:
    log = Terminations()
    app = App([websocket("/", Recorded(log))])
    closes: list[tuple[int, str | None]] = []
    async with trio.open_nursery() as nursery:
        with pytest.raises(LookupError, match="the embedding program failed"):
            async with serving(app) as running:
                await nursery.start(hold_a_client, running.url(), closes)
                raise LookupError("the embedding program failed")
        assert log.reasons == [ServerShutdown()]
    assert closes == [(1001, None)]


async def test_leaving_the_block_by_cancellation_drains_with_1001() -> None:
    log = Terminations()
    app = App([websocket("/", Recorded(log))])
    closes: list[tuple[int, str | None]] = []
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as embedding:  # the embedding program gives up on the block
            async with serving(app) as running:
                await nursery.start(hold_a_client, running.url(), closes)
                embedding.cancel()
                await trio.sleep_forever()
        assert embedding.cancelled_caught
        assert log.reasons == [ServerShutdown()]  # drained: not cut off
    assert closes == [(1001, None)]
    assert open_sockets(running.port) == []


async def test_a_cancelled_blocks_drain_ends_at_the_drain_timeout() -> None:
    log = Terminations()
    app = App([websocket("/", Recorded(log))])
    codes: list[int] = []
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10), trio.CancelScope() as embedding:
            async with serving(app, options=ServerOptions(drain_timeout=0.2)) as running:
                await nursery.start(hold_a_silent_client, running.port, codes)
                embedding.cancel()
        # The client never answers the close: the drain is cut at its timeout, not hung.
        assert log.reasons == [ServerShutdown()]
        nursery.cancel_scope.cancel()
    assert codes == [1001]


async def hold_a_silent_client(
    port: int, codes: list[int], *, task_status: trio.TaskStatus[None]
) -> None:
    """Connect, note the code of the server's close frame, never answer it."""
    async with raw_client(port) as silent:
        task_status.started()
        codes.append((await silent.close_event()).code)
        await trio.sleep_forever()


async def hold_a_client(
    url: str, closes: list[tuple[int, str | None]], *, task_status: trio.TaskStatus[None]
) -> None:
    """Connect, then read until the server closes; note the code and reason it sent."""
    async with client(url) as ws:
        task_status.started()
        closes.append(await expect_close(ws))

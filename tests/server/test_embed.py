"""``server.serving``: an app inside one's own trio program, on a free port, drained on exit."""

from __future__ import annotations

import pytest
import trio

from examples.echo import app as echo_app
from server import App, ServerShutdown, serving, websocket

from .serving import Recorded, Terminations, client, expect_close, open_sockets


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


async def hold_a_client(
    url: str, closes: list[tuple[int, str | None]], *, task_status: trio.TaskStatus[None]
) -> None:
    """Connect, then read until the server closes; note the code and reason it sent."""
    async with client(url) as ws:
        task_status.started()
        closes.append(await expect_close(ws))

"""How a connection reads its client: when its handler is free (backpressure), and never stuck at
the end."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from server import App, ConnectionOptions, Frame, HandlerStopped, ServerOptions, Stop, websocket

from .serving import Recorded, Terminations, client, serving

FLOOD = 40
"""Frames sent while the handler is busy: they wait, unread, in the sockets' buffers."""


class StopsWhenReleased(Recorded):
    """The first frame blocks its handler until the test says, then stops the connection."""

    release = trio.Event()

    async def websocket_handle(self, frame: Frame, state: Any) -> tuple[Any, Any]:
        await self.release.wait()
        return Stop(), state


async def test_a_connection_that_stops_with_frames_unread_still_finishes_its_close(
    virtual_clock: trio.testing.MockClock,
) -> None:
    log = Terminations()
    StopsWhenReleased.release = trio.Event()
    options = ConnectionOptions(close_timeout=5.0)
    app = App([websocket("/", StopsWhenReleased(log))])
    async with serving(app, ServerOptions(connection=options)) as served:
        async with client(served.url()) as ws:
            for number in range(FLOOD):
                await ws.send_message(f"frame {number}")
            await trio.testing.wait_all_tasks_blocked()
            released_at = trio.current_time()
            StopsWhenReleased.release.set()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1000
            call = await log.one()
        assert call.reason == HandlerStopped()
        # The frames before the client's close reply were read and dropped: no wait for
        # close_timeout, then an abort.
        assert trio.current_time() - released_at < options.close_timeout

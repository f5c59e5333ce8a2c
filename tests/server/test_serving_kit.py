"""The kit's own promises: ``serving`` notices a socket left open, on either side."""

from __future__ import annotations

import pytest
import trio

from examples.echo import app as echo_app

from .kit import HOST, assert_echoes, open_sockets, running_clean


async def test_serving_fails_when_a_client_leaves_its_socket_open() -> None:
    leaked = trio.socket.socket()
    try:
        with pytest.raises(AssertionError, match="clients left sockets open"):
            async with running_clean(echo_app) as served:
                await leaked.connect((HOST, served.port))
                await assert_echoes(served.url())
    finally:
        leaked.close()


async def test_open_sockets_sees_both_ends_and_forgets_them_once_closed() -> None:
    async with running_clean(echo_app) as served:
        stream = await trio.open_tcp_stream(HOST, served.port)
        await assert_echoes(served.url())  # the server has accepted by now
        ends = open_sockets(served.port)
        assert any(end.peer is not None and end.peer[1] == served.port for end in ends)
        assert any(end.local[1] == served.port and end.peer is None for end in ends)  # listener
        await stream.aclose()
    assert open_sockets(served.port) == []

"""server/wire.py leans on trio-websocket 0.12.2's internals: pin them, so an upgrade fails here."""

from __future__ import annotations

import inspect

import trio_websocket
import wsproto

from server import wire


def test_trio_websocket_is_the_pinned_version() -> None:
    assert trio_websocket.__version__ == wire.PINNED_TRIO_WEBSOCKET, "re-audit server/wire.py"


def test_the_internals_wire_relies_on_are_still_there() -> None:
    connection = wire.CorralWebSocket(
        stream=None,  # type: ignore[arg-type]
        ws_connection=wsproto.WSConnection(wsproto.ConnectionType.SERVER),
    )
    for name in ("_close_reason", "_message_size", "_max_message_size", "_wsproto", "_stream"):
        assert hasattr(connection, name), name
    assert hasattr(connection, "_stream_lock")
    close_handler = inspect.getsource(
        trio_websocket.WebSocketConnection._handle_close_connection_event
    )
    assert "ConnectionState.REMOTE_CLOSING" in close_handler
    message_handler = inspect.getsource(trio_websocket.WebSocketConnection._handle_message_event)
    # 1009: trio-websocket sets its close reason, sends the close, then closes the channel.
    assert message_handler.index("self._close_reason = CloseReason(1009") < message_handler.index(
        "await self._recv_channel.aclose()"
    )
    assert "Exceeded maximum message size: {self._max_message_size} bytes" in message_handler

"""The app the cluster benchmarks serve: ``/echo`` echoes; ``/sub`` joins group ``fan``;
``/pub`` publishes to it.

A ``/sub`` connection joins ``fan`` and says ``joined``, then only listens (no idle timeout:
a held connection must not be closed in a long run). Each text frame sent to ``/pub`` is
broadcast to every member of ``fan`` (on every worker, through Redis), except ``members``,
which ``/pub`` answers with ``members <n>``: how many members this worker's node knows of,
so the load client can wait until every join has been heard.
"""

from __future__ import annotations

from typing import Any

import actors
from server import App, ConnectionOptions, Frame, Text, WebSocketHandler, broadcast, websocket

GROUP = "fan"


class Echo(WebSocketHandler[None]):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        return frame, state


class Subscriber(WebSocketHandler[None]):
    def websocket_init(self, state: Any) -> tuple[Text, Any]:
        actors.join(GROUP)
        return Text("joined"), state


class Publisher(WebSocketHandler[None]):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Text | None, Any]:
        if isinstance(frame, Text):
            if frame.data == "members":
                return Text(f"members {len(actors.members(GROUP))}"), state
            broadcast(GROUP, frame.data)
        return None, state


_quiet = ConnectionOptions(idle_timeout=None)
app = App(
    [
        websocket("/echo", Echo()),
        websocket("/sub", Subscriber(), options=_quiet),
        websocket("/pub", Publisher(), options=_quiet),
    ]
)

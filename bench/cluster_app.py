"""The app the cluster benchmarks serve: ``/echo`` echoes, ``/fan`` joins group ``fan``.

On ``/fan`` a text ``publish <payload>`` broadcasts ``<payload>`` to every member of ``fan``
(on every worker, through Redis), and ``members`` answers ``members <n>``: how many members
this worker's node knows of, so the load client can wait until every join has been heard.
"""

from __future__ import annotations

from typing import Any

import actors
from server import App, Frame, Text, WebSocketHandler, broadcast, websocket


class Echo(WebSocketHandler[None]):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        return frame, state


class Fan(WebSocketHandler[None]):
    def websocket_init(self, state: Any) -> tuple[None, Any]:
        actors.join("fan")
        return None, state

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Text | None, Any]:
        if isinstance(frame, Text):
            if frame.data.startswith("publish "):
                broadcast("fan", frame.data.removeprefix("publish "))
                return None, state
            if frame.data == "members":
                return Text(f"members {len(actors.members('fan'))}"), state
        return None, state


app = App([websocket("/echo", Echo()), websocket("/fan", Fan())])

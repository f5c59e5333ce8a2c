"""A small app for the worker and cluster tests: who served me, and a broadcast to all."""

from __future__ import annotations

import os
from typing import Any

import actors
from server import App, Frame, Text, WebSocketHandler, broadcast, websocket


class WhoAmI(WebSocketHandler[None]):
    """Greets with ``pid <pid>``; ``broadcast <text>`` sends text to every connection of the
    cluster (group ``everyone``); ``members`` answers ``members <n>`` (this node's view);
    anything else is answered with the pid."""

    def websocket_init(self, state: Any) -> tuple[Text, Any]:
        actors.join("everyone")
        return Text(f"pid {os.getpid()}"), state

    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Text | None, Any]:
        if isinstance(frame, Text) and frame.data.startswith("broadcast "):
            broadcast("everyone", frame.data.removeprefix("broadcast "))
            return None, state
        if isinstance(frame, Text) and frame.data == "members":
            return Text(f"members {len(actors.members('everyone'))}"), state
        return Text(f"pid {os.getpid()}"), state


app = App([websocket("/", WhoAmI())])

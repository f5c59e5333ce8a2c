"""Cowboy's ``my_ws_handler`` from the seed guide, callback for callback.

Sends "Hello!" one second after connecting, then "How' you doin'?" every second;
answers each text frame ``m`` with "That's what she said! m"; ignores binary frames.

    corral serve examples.seed:app --port 8080
"""

from __future__ import annotations

from typing import Any

import actors
from server import (
    App,
    Frame,
    Request,
    TerminateReason,
    Text,
    Timeout,
    Upgrade,
    WebSocketHandler,
    websocket,
)


class MyWsHandler(WebSocketHandler[str]):
    def init(self, request: Request) -> Upgrade[str]:
        return Upgrade("undefined_state")

    def websocket_init(self, state: str) -> tuple[None, str]:
        actors.start_timer(1.0, "Hello!")
        return None, state

    def websocket_handle(self, frame: Frame, state: str) -> tuple[Text | None, str]:
        if isinstance(frame, Text):
            return Text("That's what she said! " + frame.data), state
        return None, state

    def websocket_info(self, message: Any, state: str) -> tuple[Text | None, str]:
        if isinstance(message, Timeout):
            actors.start_timer(1.0, "How' you doin'?")
            return Text(message.msg), state
        return None, state

    def terminate(self, reason: TerminateReason, request: Request, state: str) -> None:
        return None


app = App([websocket("/", MyWsHandler())])

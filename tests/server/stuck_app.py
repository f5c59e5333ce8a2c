"""An app whose handler never returns (a blocking call with no end), for the second-signal
test: ``corral serve tests.server.stuck_app:app``."""

from __future__ import annotations

import threading

from server import App, Frame, WebSocketHandler, websocket


class Stuck(WebSocketHandler[None]):
    def websocket_handle(self, frame: Frame, state: None) -> tuple[Frame, None]:
        threading.Event().wait()  # the blocking call under test: forever, on the loop
        return frame, state


STUCK_LINE = Stuck.websocket_handle.__code__.co_firstlineno + 1

app = App([websocket("/stuck", Stuck())])

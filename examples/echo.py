"""Echoes every text and binary message at ``/``: the conformance target.

    corral serve examples.echo:app --port 9001

``compressed_app`` is the same with permessage-deflate offered (RFC 7692).
"""

from __future__ import annotations

import attrs

from server import App, ConnectionOptions, Frame, WebSocketHandler, websocket

# Autobahn sends messages of up to 16 MiB, and 4 MiB ones in fragments as small as 64 bytes
# (over 65,536 frames); the echo takes them whole.
_OPTIONS = ConnectionOptions(max_message_size=64 * 2**20, max_fragments=2**17)


class Echo(WebSocketHandler[None]):
    def websocket_handle(self, frame: Frame, state: None) -> tuple[Frame, None]:
        return frame, state


app = App([websocket("/", Echo(), options=_OPTIONS)])
compressed_app = App([websocket("/", Echo(), options=attrs.evolve(_OPTIONS, compression=True))])

"""An ASGI app's WebSocket (the ``websocket`` scope), for upgrades no corral route takes.

So that a team's existing ASGI WebSocket endpoints keep working while they move them to corral
handlers. websockets' sans-I/O ``ServerProtocol`` does the handshake and the framing (pings
answered, fragments joined here into messages); ``asgi_rules.SocketCycle`` says what each
message of the app means. One task: ``receive()`` reads the socket when the app calls it. On
a drain the app is cancelled and the client gets a 1001 close.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio

from ..engine.websockets_api import Close, Frame, Opcode, ServerProtocol, Subprotocol
from .asgi_rules import (
    Accept,
    AsgiApp,
    ClientGone,
    CloseSocket,
    Message,
    Refuse,
    SendMessage,
    SocketAction,
    SocketCycle,
    SocketPhase,
    after_socket_app,
    websocket_scope,
)
from .eager_io import receive_bytes, send_eagerly
from .http import Request, head_bytes

logger = logging.getLogger("corral.server")

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
"""Largest message an ASGI WebSocket takes (websockets' default; past it: close 1009)."""

_CLOSE_WAIT = 2.0
"""Seconds to wait for the client's close frame after ours (then the connection closes)."""

_REASONS = {403: "Forbidden", 500: "Internal Server Error"}


async def serve_websocket(
    app: AsgiApp,
    stream: trio.abc.Stream,
    request: Request,
    rest: bytes,
    *,
    server: tuple[str, int] | None,
    state: dict[str, Any],
) -> None:
    """Run the app's WebSocket for ``request`` (a valid upgrade) until it ends."""
    protocol = ServerProtocol(
        select_subprotocol=lambda _protocol, _offered: socket.chosen(),
        max_size=DEFAULT_MAX_MESSAGE_SIZE,
    )
    protocol.receive_data(head_bytes(request))
    (handshake,) = protocol.events_received()
    socket = _Socket(stream, protocol, handshake, SocketCycle(request.subprotocols), rest)
    scope = websocket_scope(request, server=server, state=state)
    failed = ended = False
    try:
        await app(scope, socket.receive, socket.send)
        ended = True
    except Exception:
        failed = ended = True
        if not socket.gone:
            logger.exception("ASGI app failed on WebSocket %s", request.path)
    finally:
        if not ended:  # cancelled: the server drains (or kills) this connection
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await socket.carry_out(after_socket_app(socket.cycle.phase, False), 1001)
    if ended:
        await socket.carry_out(after_socket_app(socket.cycle.phase, failed))
        await socket.wait_for_close()


@attrs.define(eq=False)
class _Socket:
    """One ASGI WebSocket: the app's ``receive`` and ``send``."""

    stream: trio.abc.Stream
    protocol: ServerProtocol
    handshake: object
    cycle: SocketCycle
    rest: bytes
    subprotocol: str | None = None
    gone: bool = False
    _connected: bool = False
    _opened: trio.Event = attrs.field(factory=trio.Event)
    _frames: list[Frame] = attrs.field(factory=list)
    _fragments: list[bytes] = attrs.field(factory=list)
    _fragment_opcode: object = None
    _lock: trio.Lock = attrs.field(factory=trio.Lock)

    def chosen(self) -> Subprotocol | None:
        """The subprotocol the app accepted with, for websockets' handshake."""
        return None if self.subprotocol is None else Subprotocol(self.subprotocol)

    async def receive(self) -> Message:
        """``websocket.connect`` first, then each message, then ``websocket.disconnect``."""
        async with self._lock:
            if not self._connected:
                self._connected = True
                return {"type": "websocket.connect"}
            await self._opened.wait()  # nothing to read before the app answers the handshake
            while True:
                message = self._next_message()
                if message is not None:
                    return message
                if self.gone or self.cycle.phase is SocketPhase.CLOSED:
                    return self._disconnect()
                data = await receive_bytes(self.stream)
                if data:
                    self.protocol.receive_data(data)
                else:
                    self.protocol.receive_eof()
                    self.gone = True
                self._frames.extend(self.protocol.events_received())  # type: ignore[arg-type]
                await self._flush_quietly()  # pongs, the answer to a close

    async def send(self, message: Message) -> None:
        """Carry out one ``websocket.*`` message; ClientGone once the client went away."""
        if self.gone:
            raise ClientGone("the client closed the WebSocket")
        await self.carry_out(self.cycle.on_send(message))

    async def carry_out(self, action: SocketAction | None, close_code: int | None = None) -> None:
        """Write what ``action`` asks (``close_code`` replaces a close's code: 1001 on a drain)."""
        if action is None or self.gone:
            return
        protocol = self.protocol
        if isinstance(action, Accept):
            self.subprotocol = action.subprotocol
            response = protocol.accept(self.handshake)  # type: ignore[arg-type]
            for name, value in action.headers:
                response.headers[name] = value
            protocol.send_response(response)
            if self.rest:
                protocol.receive_data(self.rest)
                self._frames.extend(protocol.events_received())  # type: ignore[arg-type]
            self._opened.set()
        elif isinstance(action, Refuse):
            protocol.send_response(protocol.reject(action.status, _REASONS[action.status]))
            self.gone = True  # nothing follows a refusal
            self._opened.set()
        elif isinstance(action, SendMessage):
            if isinstance(action.data, str):
                protocol.send_text(action.data.encode())
            else:
                protocol.send_binary(action.data)
        else:
            assert isinstance(action, CloseSocket)
            protocol.send_close(close_code or action.code, action.reason)
            self.cycle.closed()
        await self._flush()

    async def wait_for_close(self) -> None:
        """After our close frame, read until the client's (or its hang-up), a while at most."""
        with trio.move_on_after(_CLOSE_WAIT):
            while not self.gone and self.protocol.close_expected():
                data = await receive_bytes(self.stream)
                if not data:
                    return
                self.protocol.receive_data(data)
                self.protocol.events_received()
                await self._flush_quietly()
                if self.protocol.close_code is not None:
                    return

    def _next_message(self) -> Message | None:
        """The next whole message among the frames read (fragments joined), a disconnect
        for a close frame, or None when more frames must be read."""
        while self._frames:
            frame = self._frames.pop(0)
            if frame.opcode is Opcode.CLOSE:
                code = Close.parse(frame.data).code if frame.data else 1005
                self.cycle.closed()
                return {"type": "websocket.disconnect", "code": code}
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._fragment_opcode = frame.opcode
                self._fragments = []
            elif frame.opcode is not Opcode.CONT:
                continue  # ping or pong: websockets answered a ping already
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                if self._fragment_opcode is Opcode.TEXT:
                    return {"type": "websocket.receive", "text": data.decode()}
                return {"type": "websocket.receive", "bytes": data}
        return None

    def _disconnect(self) -> Message:
        """Gone without a close frame read (a hang-up: 1006), or asked again after one."""
        self.cycle.closed()
        code = self.protocol.close_code
        return {"type": "websocket.disconnect", "code": 1006 if code is None else code}

    async def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if not data:
            return
        try:
            await send_eagerly(self.stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.gone = True
            raise ClientGone("the client closed the WebSocket") from None

    async def _flush_quietly(self) -> None:
        try:
            await self._flush()
        except ClientGone:
            pass

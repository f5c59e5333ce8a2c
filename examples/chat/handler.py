"""One chat connection: checks what the client sends and passes joins and says to its room.

Every client frame first passes the connection's ``Throttle`` (see ``limits``): past the rate
it is dropped, the first of a run with an ``error``, and a client that keeps sending is closed
with 1008, so a flood stops here and never reaches the room. A ``say`` then takes a token from
its peer address's bucket (``Rooms.says``, shared by all the connections from there): past it
the message is dropped with an ``error``, so more connections or reconnecting gain nothing.
Bad input gets an ``error`` frame from the connection itself and goes no further. A ``join``
opens the room (starting it on first use, charged to the client's peer address) and calls it
with ``Join``: the room writes the history and members to the client directly and answers
``Joined`` (or ``JoinRefused``, whose reason the client gets). A ``say`` is a cast. The
connection remembers its nick so that it can join again by itself when the room restarts.
"""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
import trio

import actors
from actors import Address
from server import (
    Close,
    Frame,
    Request,
    Response,
    TerminateReason,
    Text,
    Upgrade,
    WebSocketHandler,
)
from server.tokens import TokenAuth, chosen_subprotocol

from . import protocol
from .limits import Throttle, Verdict, peer_key
from .protocol import BadInput, JoinRequest
from .room import Join, Joined, Leave, RoomRestarted, Say
from .rooms import Rooms, RoomUnavailable


@attrs.frozen
class Session:
    """A connection's state: its room's name, and once it asked to join, the room's address."""

    room: str
    throttle: Throttle
    """The connection's inbound rate limit (mutable, owned by this connection alone)."""
    peer: str = "unknown"
    """Whom opening a new room is charged to (``limits.peer_key``)."""
    counted: bool = False
    """Whether this connection counts among its peer's ``Rooms.members`` (from its first join)."""
    room_address: Address | None = None
    nick: str | None = None
    """Set when the room accepted the join."""
    signed_nick: str | None = None
    """The nick the client's token gives it (a chat with a secret): the only one it may use."""


TOO_MANY_FROM_ADDRESS = (
    "slow down: too many messages from your address (all its connections together); "
    "this one was dropped"
)


def _error(reason: str) -> Text:
    return Text(protocol.error(reason))


def _ended(address: Address) -> bool:
    """Whether the actor at ``address`` has ended (a room that restarted or stopped)."""
    return actors.current_node().actor(address) is None


class ChatHandler(WebSocketHandler[Session]):
    """The handler of ``/ws/:room``."""

    def __init__(self, rooms: Rooms, auth: TokenAuth | None = None) -> None:
        self.rooms = rooms
        self.auth = auth
        """With one, a connection needs a token for its room (topic ``room:<room>``)."""

    def init(self, request: Request) -> Upgrade[Session] | Response:
        throttle = Throttle.for_limits(self.rooms.limits)
        room, peer = str(request.bindings["room"]), peer_key(request.peer)
        session = Session(room=room, throttle=throttle, peer=peer)
        if self.auth is None:
            return Upgrade(session)
        claims = self.auth.authenticate(request, topic=f"room:{room}")
        if isinstance(claims, Response):
            return claims
        signed = attrs.evolve(session, signed_nick=claims.subject)
        return Upgrade(signed, subprotocol=chosen_subprotocol(request))

    async def websocket_handle(
        self, frame: Frame, state: Session
    ) -> tuple[Text | Close | None, Session]:
        now = trio.current_time()
        verdict = state.throttle.admit(now)
        if verdict is Verdict.WARN:
            return _error(state.throttle.slow_down(now)), state
        if verdict is Verdict.DROP:
            return None, state
        if verdict is Verdict.CLOSE:
            return Close(1008, "message rate limit exceeded"), state
        if not isinstance(frame, Text):
            return _error("binary frames are not supported: send JSON text"), state
        request = protocol.parse(frame.data)
        if isinstance(request, BadInput):
            return _error(request.reason), state
        if isinstance(request, JoinRequest):
            return await self._join(request.nick, state)
        return await self._say(request.text, state)

    async def _join(self, nick: str, state: Session) -> tuple[Text | None, Session]:
        if state.signed_nick is not None and nick != state.signed_nick:
            return _error(f"your token makes you {state.signed_nick!r}: join with that nick"), state
        if not state.counted:
            if not self.rooms.members.acquire(state.peer):
                return _error("too many connections from your address are in rooms"), state
            state = attrs.evolve(state, counted=True)
        try:
            room = await self.rooms.open(state.room, state.peer)
        except RoomUnavailable as exc:
            return _error(str(exc)), state
        answer = await self._call_join(room, Join(actors.self_address(), nick))
        if isinstance(answer, Joined):
            return None, attrs.evolve(state, room_address=answer.room, nick=answer.nick)
        return _error(answer), state

    async def _call_join(self, room: Address, join: Join) -> Joined | str:
        """Ask ``room`` to take this connection in: ``Joined``, or why not (for the client)."""
        try:
            answer = await actors.call(room, join, timeout=self.rooms.open_timeout)
        except actors.MailboxFull:
            return "room busy: try again"
        except (actors.CalleeExited, actors.CallTimeout):
            return "room unavailable: it restarted or stopped, join again"
        return answer if isinstance(answer, Joined) else str(answer.reason)

    async def _say(self, text: str, state: Session) -> tuple[Text | None, Session]:
        if state.room_address is None:
            return _error("join first: say is for members of the room"), state
        if not self.rooms.says.take(state.peer, trio.current_time()):
            return _error(TOO_MANY_FROM_ADDRESS), state
        if actors.cast(state.room_address, Say(actors.self_address(), text)):
            return None, state
        if _ended(state.room_address):
            # The room ended for good (its supervisor gave up): open a new one, which asks
            # this connection (still in the room's group) to join again.
            with contextlib.suppress(RoomUnavailable):
                await self.rooms.open(state.room, state.peer)
        return _error("message not sent: the room is busy or restarting, send it again"), state

    async def websocket_info(self, message: Any, state: Session) -> tuple[Text | None, Session]:
        if isinstance(message, RoomRestarted) and state.nick is not None:
            rejoin = Join(actors.self_address(), state.nick, rejoin=True)
            answer = await self._call_join(message.room, rejoin)
            if isinstance(answer, Joined):
                return None, attrs.evolve(state, room_address=answer.room)
            return _error(answer), attrs.evolve(state, room_address=None, nick=None)
        return None, state

    def terminate(self, reason: TerminateReason, request: Request, state: Session) -> None:
        if state.counted:
            self.rooms.members.release(state.peer)
        if state.room_address is not None:
            actors.cast(state.room_address, Leave(actors.self_address()))

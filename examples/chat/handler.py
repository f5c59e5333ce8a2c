"""One chat connection: checks what the client sends and passes joins and says to its room.

Every client frame first passes the connection's ``Throttle`` (see ``limits``): past the rate
it is dropped, the first of a run with an ``error``, and a client that keeps sending is closed
with 1008, so a flood stops here and never reaches the room. A ``say`` then takes a token from
its peer address's bucket (``Rooms.says``, shared by all the connections from there): past it
the message is dropped with an ``error``, so more connections or reconnecting gain nothing.
Bad input gets an ``error`` frame from the connection itself and goes no further. A ``join``
opens the room (starting it on first use, charged to the client's peer address) and calls it
with ``Join``: the room answers ``Joined`` (or ``JoinRefused``, whose reason the client gets).
The connection then follows the room's topic (``history.follow``): a join without a position
sends the client ``history`` (the room's last messages, read from the topic, with the position
they end at), one with a position resumes after it (``subscribed`` or ``unrecoverable``, then
what the client missed); every message then comes as a ``said`` with its position. A ``say``
is a cast.

Once joined, the connection tracks itself in the room's presence topic (key: its nick) and
subscribes to it: the client's ``members`` comes from presence, then ``joined`` and ``left`` from
its diffs (a person's first connection arriving, their last one going), right on every node,
also when a node dies. The connection monitors its room: if the room ends (its node died, say)
it opens the room again, and the new room (which finds its members in presence) sends it
``Rejoined``. A ``say`` with an ``id`` stays unconfirmed until the room answers ``Heard``; one
the room never answered goes again to the room's next incarnation, and after ``say_timeout``
the client gets an ``error`` with its id (the page keeps the text).
"""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
import trio

import actors
from actors import Address, Down, MonitorRef, Timeout, TimerRef, presence
from actors.topics import Lagged, Position
from server import (
    Close,
    Frame,
    Request,
    Response,
    TerminateReason,
    Text,
    Upgrade,
    WebSocketHandler,
    send_frame,
)
from server.tokens import TokenAuth, chosen_subprotocol

from . import protocol
from .history import follow, topic_of, unfollow
from .limits import Throttle, Verdict, peer_key
from .protocol import BadInput, JoinRequest, SayRequest
from .room import Heard, Join, Joined, Leave, Rejoined, Say, presence_topic
from .rooms import Rooms, RoomUnavailable


@attrs.frozen
class Unconfirmed:
    """A say the room has not answered yet: its text, and when the client is told."""

    text: str
    timer: TimerRef


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
    room_monitor: MonitorRef | None = None
    """The connection's monitor on its room (to open it again if it ends)."""
    unconfirmed: dict[int, Unconfirmed] = attrs.field(factory=dict)
    """Says sent with an id and not yet answered (owned by this connection alone)."""


TOO_MANY_FROM_ADDRESS = (
    "slow down: too many messages from your address (all its connections together); "
    "this one was dropped"
)


def _error(reason: str, say_id: int | None = None) -> Text:
    return Text(protocol.error(reason, say_id))


def _arrivals(diff: presence.PresenceDiff) -> list[Text]:
    """A presence diff as the client sees it: a person's last connection going is ``left``,
    their first one coming ``joined`` (another tab of someone present is neither)."""
    return [Text(protocol.left(nick)) for nick in diff.departed] + [
        Text(protocol.joined(nick)) for nick in diff.arrived
    ]


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
    ) -> tuple[Text | list[Text] | Close | None, Session]:
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
            return await self._join(request, state)
        return await self._say(request, state)

    async def _join(
        self, request: JoinRequest, state: Session
    ) -> tuple[Text | list[Text], Session]:
        nick = request.nick
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
        signed = state.signed_nick is not None
        answer = await self._call_join(room, Join(actors.self_address(), nick, signed))
        if isinstance(answer, Joined):
            return await self._joined(answer, request.after, state)
        return _error(answer), state

    async def _joined(
        self, joined: Joined, after: Position | None, state: Session
    ) -> tuple[list[Text], Session]:
        """The room has this connection: follow its messages (the history, or from ``after``),
        be present, and tell the client who is here."""
        kept = None
        if after is None:
            kept = await self.rooms.history.read(state.room, joined.kept)
            frame = protocol.history(kept.messages, topic_of(state.room), kept.position)
            send_frame(actors.self_address(), frame)  # before the posts that follow it
        follow(state.room, kept, after)
        topic = presence_topic(state.room)
        meta = {"conn": actors.self_address(), "signed": state.signed_nick is not None}
        presence.track(topic, joined.nick, meta)
        present = presence.subscribe(topic)  # the next diff brings this connection's arrival
        members = Text(protocol.members(list(dict.fromkeys([*present, joined.nick]))))
        state = attrs.evolve(state, room_address=None, nick=joined.nick)
        return [members], self._in_room(joined.room, state)

    def _in_room(self, room: Address, state: Session) -> Session:
        """The room runs at ``room`` (first, or again after it ended): watch it, and send it the
        says the earlier one never answered."""
        if room == state.room_address and state.room_monitor is not None:
            return state
        if state.room_monitor is not None:
            actors.demonitor(state.room_monitor)
        me = actors.self_address()
        for say_id, unconfirmed in state.unconfirmed.items():
            actors.cast(room, Say(me, unconfirmed.text, say_id))
        return attrs.evolve(state, room_address=room, room_monitor=actors.monitor(room))

    async def _call_join(self, room: Address, join: Join) -> Joined | str:
        """Ask ``room`` to take this connection in: ``Joined``, or why not (for the client)."""
        try:
            answer = await actors.call(room, join, timeout=self.rooms.open_timeout)
        except actors.MailboxFull:
            return "room busy: try again"
        except (actors.CalleeExited, actors.CallTimeout):
            return "room unavailable: it restarted or stopped, join again"
        return answer if isinstance(answer, Joined) else str(answer.reason)

    async def _say(self, say: SayRequest, state: Session) -> tuple[Text | None, Session]:
        if state.room_address is None:
            return _error("join first: say is for members of the room", say.id), state
        if not self.rooms.says.take(state.peer, trio.current_time()):
            return _error(TOO_MANY_FROM_ADDRESS, say.id), state
        if say.id is not None:
            if say.id in state.unconfirmed:
                return _error("this id is already waiting for the room", say.id), state
            timer = actors.start_timer(self.rooms.settings.say_timeout, ("say", say.id))
            state.unconfirmed[say.id] = Unconfirmed(say.text, timer)
        if actors.cast(state.room_address, Say(actors.self_address(), say.text, say.id)):
            return None, state
        if _ended(state.room_address):
            # The room ended (its supervisor gave up): open it again; the new room finds this
            # connection in presence and sends Rejoined, and an unconfirmed say goes to it then.
            with contextlib.suppress(RoomUnavailable):
                await self.rooms.open(state.room, state.peer)
            if say.id is not None:
                return None, state
        if say.id is not None:
            actors.cancel_timer(state.unconfirmed.pop(say.id).timer)
        return _error("message not sent: the room is busy, send it again", say.id), state

    async def websocket_info(self, message: Any, state: Session) -> tuple[list[Text], Session]:
        if isinstance(message, presence.PresenceDiff):
            return _arrivals(message), state
        if isinstance(message, Lagged) and state.nick is not None:
            follow(state.room, None, message.position)  # it fell behind: the rest from history
            return [], state
        if isinstance(message, Rejoined) and state.nick is not None:
            return [], self._in_room(message.room, state)
        if isinstance(message, Heard):
            return self._heard(message, state)
        if isinstance(message, Down) and message.ref == state.room_monitor:
            # The room ended (its node died, say): open it again; the new room finds this
            # connection in presence and sends it Rejoined.
            with contextlib.suppress(RoomUnavailable):
                await self.rooms.open(state.room, state.peer, gone=message.address)
            return [], attrs.evolve(state, room_monitor=None)
        if isinstance(message, Timeout) and isinstance(message.msg, tuple):
            _, say_id = message.msg
            if state.unconfirmed.pop(say_id, None) is not None:
                reason = "message not sent: the room did not answer in time, send it again"
                return [_error(reason, say_id)], state
        return [], state

    def _heard(self, heard: Heard, state: Session) -> tuple[list[Text], Session]:
        unconfirmed = state.unconfirmed.pop(heard.id, None)
        if unconfirmed is None:
            return [], state  # answered already (or given up on)
        actors.cancel_timer(unconfirmed.timer)
        if heard.problem is not None:
            return [_error(heard.problem, heard.id)], state
        return [Text(protocol.sent(heard.id))], state

    def terminate(self, reason: TerminateReason, request: Request, state: Session) -> None:
        if state.counted:
            self.rooms.members.release(state.peer)
        if state.room_address is not None:
            actors.cast(state.room_address, Leave(actors.self_address()))
        if state.nick is not None:
            unfollow(state.room)

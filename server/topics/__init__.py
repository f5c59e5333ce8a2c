"""Topics for WebSocket connections: posts written straight to clients, resumed after a drop.

A handler subscribes its connection from any callback, ``websocket_init`` included:
``actors.topics.subscribe(topic, after)`` delivers ``Subscribed``/``Unrecoverable`` and each
``Post`` (with its position) to ``websocket_info``; ``subscribe_frames(topic, after)`` writes
them to the client as frames instead (the wire format, ``wire``), each post's frame encoded
once for all its subscribers on the node, as ``broadcast`` does. ``TopicsHandler`` serves the
wire format as it stands (clients subscribe to what ``allow`` lets them), ``client_script``
serves the browser client, and ``server.topics.client.TopicClient`` is the Python one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources

import attrs

import actors
from actors import topics
from actors.topics import Deliver, Lagged, Position, Post, Subscribed, TopicEvent

from ..app import http_route
from ..commands import Commands, Frame, Text
from ..engine.connection import Connection, EncodedFrame, connection_of
from ..front.http import Request, Response
from ..front.router import Route
from ..handler import Result, Upgrade, WebSocketHandler
from . import wire

CLIENT_SCRIPT = "corral-topics.js"


PostRender = Callable[[Post], str]
"""How a post becomes a frame's text (default: the wire format's ``post`` frame). An app may
render its posts its own way (the chat's ``said``): the frame should carry ``topic``, ``epoch``
and ``offset`` so that clients can resume (docs/topics.md)."""


def subscribe_frames(
    topic: str,
    after: Position | None = None,
    *,
    render: PostRender = wire.encode_post,
    announce: bool = True,
) -> None:
    """Subscribe the calling connection to ``topic``, resuming after ``after``: its events
    go to the client as frames, each post's ``render``-ed once for all its subscribers (a
    ``Lagged`` still comes to ``websocket_info``). ``announce=False`` leaves out the
    ``subscribed`` frame (an app that told its client where it is already)."""
    connection = connection_of(actors.current_actor())
    if connection is None:
        raise TypeError("subscribe_frames is for a WebSocket connection's callbacks")
    topics.subscribe(topic, after, deliver=_frames_to(connection, render, announce))


def _frames_to(connection: Connection, render: PostRender, announce: bool) -> Deliver:
    push = connection.push

    def deliver(event: TopicEvent) -> bool:
        if not announce and type(event) is Subscribed:
            return True
        return push(frame_of(event, render))

    return deliver


_post_frames: dict[tuple[int, PostRender], tuple[Post, EncodedFrame]] = {}
_MEMO = 256
"""Posts whose frames are kept for replays (a reconnect storm replays the same few posts)."""


class _Latest:
    """The last post encoded, how, and its frame."""

    post: Post | None = None
    render: PostRender = wire.encode_post
    frame: EncodedFrame = EncodedFrame.of("")


_latest = _Latest()


def frame_of(event: TopicEvent, render: PostRender = wire.encode_post) -> EncodedFrame:
    """The frame for ``event``; a post's is encoded once while it is being delivered (and
    replayed), whoever it goes to."""
    if event is _latest.post and render is _latest.render:  # one post, many subscribers
        return _latest.frame
    if type(event) is not Post:
        return EncodedFrame.of(wire.encode(event))
    key = (id(event), render)
    hit = _post_frames.get(key)
    if hit is not None and hit[0] is event:
        return hit[1]
    frame = EncodedFrame.of(render(event))
    if len(_post_frames) >= _MEMO:
        _post_frames.clear()
    _post_frames[key] = (event, frame)
    _latest.post, _latest.render, _latest.frame = event, render, frame
    return frame


def _anyone(request: Request, topic: str) -> bool:
    return True


@attrs.define
class TopicSession:
    """A ``TopicsHandler`` connection's state: its request and the topics it follows."""

    request: Request
    topics: set[str] = attrs.field(factory=set)


class TopicsHandler(WebSocketHandler[TopicSession]):
    """The wire format as a route: clients ``subscribe`` (with a position to resume) and
    ``unsubscribe``; ``allow(request, topic)`` says who may follow what (default: anyone,
    anything), at most ``max_topics`` per connection. Posting is the server's."""

    def __init__(
        self, allow: Callable[[Request, str], bool] = _anyone, *, max_topics: int = 64
    ) -> None:
        self.allow = allow
        self.max_topics = max_topics

    def init(self, request: Request) -> Upgrade[TopicSession]:
        return Upgrade(TopicSession(request))

    def websocket_handle(self, frame: Frame, state: TopicSession) -> Result[TopicSession]:
        if not isinstance(frame, Text):
            return Text(wire.error("requests are text frames")), state
        return self.handle_request(wire.parse(frame.data), state), state

    def handle_request(self, request: wire.Request, state: TopicSession) -> Commands:
        """Carry out one client request (a handler speaking more than topics calls this)."""
        if isinstance(request, wire.BadRequest):
            return Text(wire.error(request.why))
        if isinstance(request, wire.Unsubscribe):
            topics.unsubscribe(request.topic)
            state.topics.discard(request.topic)
            return None
        if not self.allow(state.request, request.topic):
            return Text(wire.error(f"topic {request.topic!r} is not allowed"))
        if request.topic not in state.topics and len(state.topics) >= self.max_topics:
            return Text(wire.error(f"at most {self.max_topics} topics per connection"))
        state.topics.add(request.topic)
        subscribe_frames(request.topic, request.after)
        return None

    def websocket_info(self, message: object, state: TopicSession) -> Result[TopicSession]:
        if isinstance(message, Lagged) and message.topic in state.topics:
            subscribe_frames(message.topic, message.position)  # the rest, from history
        return None, state


def client_script(path: str = "/" + CLIENT_SCRIPT) -> Route:
    """A route serving the browser client (a JavaScript module, no build step)."""
    return http_route(path, _serve_script)


def _serve_script(request: Request) -> Response:
    headers = [("Content-Type", "text/javascript; charset=utf-8"), ("Cache-Control", "no-cache")]
    return Response(200, headers, script())


@functools.cache
def script() -> bytes:
    """The browser client's source, read once."""
    return resources.files(__package__).joinpath("static", CLIENT_SCRIPT).read_bytes()


__all__ = [
    "CLIENT_SCRIPT",
    "PostRender",
    "TopicSession",
    "TopicsHandler",
    "client_script",
    "frame_of",
    "script",
    "subscribe_frames",
    "wire",
]

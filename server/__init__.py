"""corral's WebSocket server: Cowboy's handler lifecycle on trio streams, with its own
Sans-I/O frame parser and websockets' frame records and compression.

Every connection is an actor.

A handler subclasses ``WebSocketHandler``; an ``App`` maps routes to handler objects; ``corral
serve module:app`` runs it under a supervisor and drains it on SIGTERM, and
``async with serving(app, port=0) as running`` runs it inside your own trio program.
``server.testing`` tests handlers, in process on virtual time or over a real socket.
"""

from actors import Timeout

from . import topics
from .app import App, http_route, static, websocket
from .commands import Binary, Close, Command, Commands, Frame, Ping, Pong, SetOptions, Stop, Text
from .engine.fanout import broadcast, send_frame, send_frames
from .front.files import health_check
from .front.http import Request, Response
from .front.rate_limit import TokenBucket
from .handler import InitResult, Result, Upgrade, WebSocketHandler
from .ops.metrics_endpoint import metrics_route
from .options import ConnectionOptions, OutboxPolicy, ServerOptions
from .run.embed import Running, serving
from .termination import (
    ClientClosed,
    HandlerCrashed,
    HandlerStopped,
    IdleTimeout,
    ProtocolError,
    ServerShutdown,
    SlowClient,
    TerminateReason,
)

__all__ = [
    "App",
    "Binary",
    "Close",
    "Command",
    "Commands",
    "ConnectionOptions",
    "HandlerCrashed",
    "Frame",
    "IdleTimeout",
    "InitResult",
    "HandlerStopped",
    "OutboxPolicy",
    "SlowClient",
    "Ping",
    "Pong",
    "ProtocolError",
    "ClientClosed",
    "Request",
    "Response",
    "Result",
    "Running",
    "ServerOptions",
    "SetOptions",
    "ServerShutdown",
    "Stop",
    "TerminateReason",
    "Text",
    "Timeout",
    "TokenBucket",
    "Upgrade",
    "WebSocketHandler",
    "broadcast",
    "send_frame",
    "send_frames",
    "serving",
    "topics",
    "health_check",
    "http_route",
    "metrics_route",
    "static",
    "websocket",
]

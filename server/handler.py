"""The WebSocket handler contract: Cowboy's callbacks, in Python terms.

One handler object serves every connection of its route, as a Cowboy module does: it holds
no per-connection data. ``init`` decides on the upgrade from the request and gives the
connection its first state; the other callbacks receive the state and return ``(commands,
state)``. Callbacks may be plain functions or coroutines.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeAlias, TypeVar

import attrs

from .commands import Commands, Frame
from .front.http import Request, Response
from .options import ConnectionOptions
from .termination import TerminateReason

State = TypeVar("State")
"""A connection's state: what ``init`` starts it with and each callback takes and returns."""

_Initial = TypeVar("_Initial", covariant=True)

Result: TypeAlias = tuple[Commands, State]
"""What websocket_init/handle/info return: ``(commands, new_state)``."""


@attrs.frozen
class Upgrade(Generic[_Initial]):
    """``init``'s yes: switch to WebSocket with this initial state (``Upgrade[State]``)."""

    state: _Initial = None  # type: ignore[assignment]  # Upgrade() starts with None
    subprotocol: str | None = None
    """One of ``request.subprotocols`` (None: answer without one)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers for the 101 response (Set-Cookie, say)."""
    options: ConnectionOptions | None = None
    """Per-connection options replacing the route's."""


InitResult: TypeAlias = Upgrade[State] | Response
"""``init`` upgrades, or refuses with an HTTP response (401, 403...)."""


class WebSocketHandler(Generic[State]):
    """Base class with Cowboy's defaults: upgrade, ignore every frame and message.

    Subclass it, override what you need, and give the route one object:
    ``websocket("/", MyWsHandler())``. That object serves all the route's connections, at
    once, so a connection's data lives in its state, never on ``self``: ``init`` puts what
    it needs from the request there (``terminate`` gets the request again). Attributes set
    in ``__init__`` are for what every connection shares (settings, a registry of rooms).
    """

    def init(self, request: Request) -> InitResult[State] | Awaitable[InitResult[State]]:
        """Before the upgrade: return ``Upgrade(state)`` or a refusing ``Response``.

        This default upgrades with the state None: a handler whose state is anything else
        overrides it (mypy cannot tell that a default's None is not your State)."""
        return Upgrade()

    def websocket_init(self, state: State) -> Result[State] | Awaitable[Result[State]]:
        """Right after the upgrade, inside the connection's actor (start timers, join groups)."""
        return None, state

    def websocket_handle(
        self, frame: Frame, state: State
    ) -> Result[State] | Awaitable[Result[State]]:
        """A text or binary message from the client."""
        return None, state

    def websocket_info(
        self, message: Any, state: State
    ) -> Result[State] | Awaitable[Result[State]]:
        """A message from anywhere in the system: a timer, a room, another connection."""
        return None, state

    def terminate(
        self, reason: TerminateReason, request: Request, state: State
    ) -> None | Awaitable[None]:
        """Once, whatever ended the connection after the upgrade."""
        return None

    def code_change(self, old_version: str, state: Any, extra: Any) -> State | Awaitable[State]:
        """After a hot upgrade (``corral upgrade``, SIGHUP), on the new code, before the
        connection's next event: return ``state`` as the new code wants it. ``old_version`` is
        the version the connection ran (the class's ``version``, or its module's source hash).
        If it raises, this connection stays on its old code. This default keeps the state."""
        return state  # type: ignore[no-any-return]


def handler_object(handler: object, taker: str) -> WebSocketHandler[Any]:
    """Check ``handler`` is a handler object; if not, the TypeError says what ``taker`` (the
    function given it) wants instead."""
    if isinstance(handler, WebSocketHandler):
        return handler
    if isinstance(handler, type) and issubclass(handler, WebSocketHandler):
        name = handler.__name__
        raise TypeError(
            f"{taker} takes a handler object, not a class: pass {name}(), not {name} (one "
            "object serves every connection of a route; each connection's data is its state)"
        )
    raise TypeError(
        f"{taker} takes a WebSocketHandler object (an instance of a subclass), not {handler!r}"
    )


async def call(callback: Callable[..., Any], *args: Any) -> Any:
    """Call a callback that may be sync or async."""
    result = callback(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def unpack_result(name: str, result: Any) -> Result[Any]:
    """Check a callback returned ``(commands, state)``; say so plainly if not."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(f"{name} must return (commands, state), not {result!r}")
    return result[0], result[1]

"""Why a connection ended: the reason ``terminate`` receives, and the close code it means."""

from __future__ import annotations

import attrs


@attrs.frozen
class TerminateReason:
    """Base of every reason a WebSocket connection ends."""

    @property
    def close_code(self) -> int:
        """The close code the server sends for this reason (or received, for ClientClosed)."""
        return 1000

    @property
    def kind(self) -> str:
        """The reason's class in snake case (``client_closed``): a metrics label."""
        name = type(self).__name__
        return "".join(
            "_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name)
        )

    def __str__(self) -> str:
        return self.kind.replace("_", " ")


@attrs.frozen(str=False)
class HandlerStopped(TerminateReason):
    """The handler stopped (Stop, or Close with its own code)."""


@attrs.frozen(str=False)
class ClientClosed(TerminateReason):
    """The client closed: with a close frame (its code), or by dropping TCP (1006)."""

    code: int = attrs.field(default=1006, converter=int)
    reason: str = ""

    @property
    def close_code(self) -> int:
        return self.code

    @property
    def abrupt(self) -> bool:
        """True when the client vanished without a close frame."""
        return self.code == 1006

    def __str__(self) -> str:
        return f"client closed {self.code}" + (f" {self.reason!r}" if self.reason else "")


@attrs.frozen(str=False)
class IdleTimeout(TerminateReason):
    """No data from the client within the idle timeout, or no pong within its deadline."""


@attrs.frozen(str=False)
class ProtocolError(TerminateReason):
    """The client broke the protocol: bad frame (1002), bad UTF-8 (1007), too big (1009)."""

    code: int = attrs.field(default=1002, converter=int)
    detail: str = ""

    @property
    def close_code(self) -> int:
        return self.code

    def __str__(self) -> str:
        return f"protocol error {self.code}" + (f" ({self.detail})" if self.detail else "")


@attrs.frozen(str=False)
class HandlerCrashed(TerminateReason):
    """A callback raised; the client got 1011."""

    exception: BaseException = attrs.field(eq=False)

    @property
    def close_code(self) -> int:
        return 1011

    def __str__(self) -> str:
        return f"handler crashed {self.exception!r}"


@attrs.frozen(str=False)
class ServerShutdown(TerminateReason):
    """The server is stopping; the client got 1001."""

    @property
    def close_code(self) -> int:
        return 1001


@attrs.frozen(str=False)
class SlowClient(TerminateReason):
    """The client could not keep up: outbox full (1013/1008), or a write stuck past the
    send timeout (1006: TCP aborted, no close frame)."""

    detail: str = ""
    code: int = 1013

    @property
    def close_code(self) -> int:
        return self.code

    def __str__(self) -> str:
        return f"slow client {self.code} ({self.detail})"

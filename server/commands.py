"""Frames and commands: what callbacks receive from the client and return to the loop.

Callbacks never touch the socket (Cowboy's rule): they return ``(commands, state)``
and the connection loop carries the commands out in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import attrs

_FORBIDDEN_CLOSE_CODES = {1004, 1005, 1006, 1015}


@attrs.frozen
class Text:
    """A text frame (to or from the client)."""

    data: str = attrs.field(validator=attrs.validators.instance_of(str))


@attrs.frozen
class Binary:
    """A binary frame (to or from the client)."""

    data: bytes = attrs.field(converter=bytes)


@attrs.frozen
class Ping:
    """Send a ping (the client's pong is answered by the protocol layer)."""

    data: bytes = attrs.field(default=b"", converter=bytes)

    def __attrs_post_init__(self) -> None:
        if len(self.data) > 125:
            raise ValueError("a ping payload is at most 125 bytes (RFC 6455 §5.5)")


@attrs.frozen
class Pong:
    """Send an unsolicited pong (a heartbeat that expects no answer)."""

    data: bytes = attrs.field(default=b"", converter=bytes)

    def __attrs_post_init__(self) -> None:
        if len(self.data) > 125:
            raise ValueError("a pong payload is at most 125 bytes (RFC 6455 §5.5)")


@attrs.frozen
class Close:
    """Close the connection with ``code`` and ``reason``; later frames are not sent."""

    code: int = 1000
    reason: str = ""

    def __attrs_post_init__(self) -> None:
        if not (1000 <= self.code <= 4999) or self.code in _FORBIDDEN_CLOSE_CODES:
            raise ValueError(
                f"close code {self.code} cannot be sent: use 1000-4999, not 1004/1005/1006/1015"
            )
        if len(self.reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5)")


@attrs.frozen
class Stop:
    """Stop the handler: close with 1000; terminate runs with reason ``Normal``."""


_UNSET: Any = object()


@attrs.frozen
class SetOptions:
    """Change this connection's options from now on (unset fields stay as they are)."""

    idle_timeout: float | None = _UNSET
    max_message_size: int = _UNSET

    def changes(self) -> dict[str, Any]:
        """The fields that were given."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not _UNSET}


def wire_text(data: str) -> Text:
    """A ``Text`` for data the server decoded itself: no checks (they cost on every message)."""
    frame: Text = _new(Text)
    _set(frame, "data", data)
    return frame


def wire_binary(data: bytes) -> Binary:
    """A ``Binary`` for data the server decoded itself: no conversion, no checks."""
    frame: Binary = _new(Binary)
    _set(frame, "data", data)
    return frame


_new, _set = object.__new__, object.__setattr__


Frame: TypeAlias = Text | Binary
"""What websocket_handle receives."""

Command: TypeAlias = Text | Binary | Ping | Pong | Close | Stop | SetOptions
"""What callbacks return for the loop to carry out."""

Commands: TypeAlias = Command | Sequence[Command] | None
"""One command, several, or none."""


def as_command_list(commands: Commands) -> Sequence[Command]:
    """Normalise a callback's commands to a sequence, refusing what is not a command."""
    if commands is None:
        return ()
    if type(commands) in _COMMAND_TYPES:  # the common case: one command, checked at once
        return (commands,)  # type: ignore[return-value]
    listed = (commands,) if isinstance(commands, _COMMAND_TYPES) else commands
    if not isinstance(listed, Sequence) or isinstance(listed, (str, bytes)):
        raise TypeError(f"commands must be a command or a list of commands, not {commands!r}")
    for command in listed:
        if not isinstance(command, _COMMAND_TYPES):
            raise TypeError(
                f"{command!r} is not a command: return Text, Binary, Ping, Pong, Close, "
                "Stop or SetOptions"
            )
    return listed


_COMMAND_TYPES = (Text, Binary, Ping, Pong, Close, Stop, SetOptions)

"""The runtime's exceptions: each one means one thing and says what to do about it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .address import Address
    from .reasons import ExitReason


class ActorError(Exception):
    """Base of every corral runtime error."""


class NoSuchActor(ActorError):
    """No live actor answers: none is registered under a name, or an address has ended.

    ``name`` is the name looked up (None when an address was given); ``address`` the ended
    actor's (None when a name was looked up).
    """

    def __init__(
        self, message: str, *, name: str | None = None, address: Address | None = None
    ) -> None:
        super().__init__(message)
        self.name = name
        self.address = address

    @classmethod
    def unregistered(cls, name: str) -> NoSuchActor:
        """Nothing is registered as ``name`` (a send or lookup by name)."""
        return cls(
            f"no actor is registered as {name!r}; register it first, or send to its address",
            name=name,
        )

    @classmethod
    def not_registered_within(cls, name: str, timeout: float) -> NoSuchActor:
        """``wait_for(name, timeout)`` gave up."""
        return cls(f"no actor was registered as {name!r} within {timeout} s", name=name)

    @classmethod
    def ended(
        cls, operation: str, address: Address, why: str = "that actor has ended"
    ) -> NoSuchActor:
        """``operation`` (``join group 'g'``, ``register 'n'``) needs a live actor, and the
        one at ``address`` is not (``why``)."""
        return cls(f"cannot {operation} for {address}: {why}", address=address)


class NameTaken(ActorError):
    """The name is already registered to another live actor."""

    def __init__(self, name: str, holder: Address) -> None:
        self.name = name
        self.holder = holder
        super().__init__(f"name {name!r} is already registered to {holder}")


class RemoteError(ActorError):
    """An exception raised on another node, as it arrived here: exceptions cross the cluster
    wire as their type's name and text (``type_name``, ``text``), never as objects."""

    def __init__(self, type_name: str, text: str = "") -> None:
        self.type_name = type_name
        self.text = text
        super().__init__(f"{type_name}: {text}" if text else type_name)


class BrokerUnreachable(ActorError):
    """The cluster's broker did not answer at start-up within the wait allowed for it."""

    def __init__(self, url: str, cause: BaseException) -> None:
        self.url = url
        self.cause = cause
        super().__init__(
            f"Redis at {url} is unreachable at start-up ({cause or type(cause).__name__})"
        )


class MailboxFull(ActorError):
    """The destination's mailbox is full and its overflow policy is ``fail``."""

    def __init__(self, address: Address, capacity: int) -> None:
        self.address = address
        self.capacity = capacity
        super().__init__(
            f"mailbox of {address} is full ({capacity} messages); "
            "retry later, or use send_wait() to wait for room"
        )


class NotInActor(ActorError):
    """An actor-only operation (timers, monitors, links, self) was called outside an actor."""


class NoNode(ActorError):
    """No node is running in this task's context."""

    def __init__(self) -> None:
        super().__init__(
            "no corral node is running here: wrap your program in "
            "`async with actors.open_node():` (the server does this for you)"
        )


class RestartIntensityExceeded(ActorError):
    """A supervisor restarted children more often than its intensity allows, and gave up."""


class ActorExit(BaseException):
    """Raised inside an actor to stop it with a given reason (see ``Actor.exit``).

    A BaseException, like SystemExit: stopping is control flow, and ``except Exception``
    in the actor's own code must not swallow it.
    """

    def __init__(self, reason: ExitReason) -> None:
        self.reason = reason
        super().__init__(str(reason))

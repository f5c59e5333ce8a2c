"""Why an actor ended: values, not strings, so code can match on them."""

from __future__ import annotations

import attrs


@attrs.frozen
class ExitReason:
    """Base of every exit reason."""

    @property
    def is_abnormal(self) -> bool:
        """True for reasons that a transient child is restarted for (not normal, not shutdown)."""
        return not isinstance(self, (Normal, Shutdown))

    def __str__(self) -> str:
        return type(self).__name__.lower()


@attrs.frozen(str=False)
class Normal(ExitReason):
    """The actor's function returned, or it chose to stop."""


@attrs.frozen(str=False)
class Shutdown(ExitReason):
    """Its supervisor (or the node) asked it to stop."""


@attrs.frozen(str=False)
class Killed(ExitReason):
    """It was cancelled without a chance to clean up by message (after a shutdown timeout)."""


@attrs.frozen(str=False)
class MailboxOverflow(ExitReason):
    """Its mailbox filled up and its overflow policy is ``exit``."""

    def __str__(self) -> str:
        return "mailbox_overflow"


@attrs.frozen(str=False)
class NoProc(ExitReason):
    """There was no such actor (monitoring or linking an actor that had already ended)."""


@attrs.frozen(str=False)
class NoConnection(ExitReason):
    """The actor's node stopped answering (it died, or the network or broker failed)."""


@attrs.frozen(str=False)
class Crash(ExitReason):
    """An exception escaped the actor's function."""

    exception: BaseException = attrs.field(eq=False)

    def __str__(self) -> str:
        return f"crash({self.exception!r})"


NORMAL = Normal()
SHUTDOWN = Shutdown()
KILLED = Killed()
MAILBOX_OVERFLOW = MailboxOverflow()
NOPROC = NoProc()
NOCONNECTION = NoConnection()

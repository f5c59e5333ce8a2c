"""A gen_server-style behaviour: callbacks the runtime calls one message at a time.

Subclass ``GenServer``, override the callbacks you need, and start it with ``spawn`` or under
a supervisor with ``child_spec``. Its loop, an ordinary actor, threads the state through the
callbacks as a connection's loop does through a handler's: ``init`` makes the first state, a
``Call`` (from ``call``) goes to ``handle_call``, which returns ``(answer, state)``, a ``Cast``
to ``handle_cast`` and anything else (timers, ``Down``, plain messages) to ``handle_info``,
both returning the new state. Any callback may return ``StopServer`` instead; ``terminate``
runs whenever the server stops short of being killed: by ``StopServer``, a crash in a
callback, or an exit signal such as its supervisor's shutdown. Callbacks may be plain
functions or ``async def``.
"""

from __future__ import annotations

from types import CoroutineType
from typing import Any, ClassVar, Generic, TypeVar

import attrs
import trio

from .actor import Actor
from .address import Address
from .calls import Call, Caller, Cast, reply
from .code import CODE
from .code_change import change_code
from .errors import ActorExit
from .mailbox import DEFAULT_CAPACITY, MailboxPolicy
from .messages import Exit
from .node import current_node
from .reasons import NORMAL, Crash, ExitReason
from .specs import DEFAULT_SHUTDOWN, ChildSpec, Restart

S = TypeVar("S")
"""A server's state: what ``init`` returns and every callback takes and returns."""

NO_REPLY: Any = type("NoReply", (), {"__repr__": lambda self: "NO_REPLY"})()
"""``handle_call``'s answer when it answers later, with ``reply(caller, answer)``."""


@attrs.frozen
class StopServer(Generic[S]):
    """A callback's way to stop the server: ``terminate(reason, state)`` runs, then it ends
    with ``reason``; from ``handle_call``, ``answer`` (unless NO_REPLY) goes to the caller
    first."""

    state: S
    reason: ExitReason = NORMAL
    answer: Any = NO_REPLY


class GenServer(Generic[S]):
    """Base class of a behaviour: defaults that keep the state and answer nothing.

    One object may serve several actors (a child spec restarts it with the same object), so
    per-actor data lives in the state; attributes set in ``__init__`` are settings.
    """

    trap_exits: ClassVar[bool] = False
    """False: an exit signal other than normal (a linked actor's crash, the supervisor's
    shutdown) stops the server, after ``terminate``. True: it arrives in ``handle_info`` as
    ``Exit`` (only ``killed`` still stops it at once)."""

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """The first state, from the arguments given to ``spawn`` or ``child_spec``; raise (or
        return ``StopServer``) to refuse to start."""
        return None

    def handle_call(self, request: Any, caller: Caller, state: S) -> Any:
        """A ``call``: return ``(answer, state)``, or ``(NO_REPLY, state)`` and answer later
        with ``reply(caller, answer)``, or ``StopServer``. This default crashes: a server that takes
        calls overrides it."""
        raise NotImplementedError(f"{type(self).__qualname__} takes no calls: {request!r}")

    def handle_cast(self, message: Any, state: S) -> Any:
        """A ``cast``: return the new state, or ``StopServer``. This default ignores it."""
        return state

    def handle_info(self, message: Any, state: S) -> Any:
        """Any other message (a timer, a ``Down``, a plain ``send``): return the new state,
        or ``StopServer``. This default ignores it."""
        return state

    def terminate(self, reason: ExitReason, state: S) -> Any:
        """The server is stopping with ``reason``: let go of what the state holds."""
        return None

    def code_change(self, old_version: str, state: S, extra: Any) -> Any:
        """Called on the new code, before the first message after an upgrade that changed this
        class: return ``state`` as the new code wants it (``old_version``: the version it ran,
        see ``actors.code.version_of``). If it raises, the server stays on its old code."""
        return state

    # ---- starting -------------------------------------------------------------------

    def spawn(
        self,
        nursery: trio.Nursery,
        *args: Any,
        name: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        overflow: MailboxPolicy = MailboxPolicy.DROP_NEWEST,
        link: bool = False,
    ) -> Address:
        """Start this server as an actor in ``nursery`` with ``init(*args)``; its address."""
        return current_node().spawn(
            nursery,
            self.run,
            *args,
            name=name,
            capacity=capacity,
            overflow=overflow,
            kind=self.kind(),
            trap_exits=True,
            link=link,
        )

    def child_spec(
        self,
        id: str,
        *args: Any,
        restart: Restart = Restart.PERMANENT,
        shutdown: float = DEFAULT_SHUTDOWN,
        name: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        overflow: MailboxPolicy = MailboxPolicy.DROP_NEWEST,
    ) -> ChildSpec:
        """A spec that runs this server under a supervisor with ``init(*args)``."""
        return ChildSpec(
            id,
            self.run,
            args=args,
            restart=restart,
            shutdown=shutdown,
            name=name,
            capacity=capacity,
            overflow=overflow,
            trap_exits=True,
            kind=self.kind(),
        )

    def kind(self) -> str:
        """What introspection calls its actors: the class's name."""
        return type(self).__qualname__

    async def run(self, actor: Actor, *args: Any) -> None:
        """The actor's body (what ``spawn`` and ``child_spec`` start)."""
        actor.trap_exits = True  # the loop decides what an exit signal does: see trap_exits
        state = await _settled(self.init(*args))
        if type(state) is StopServer:
            actor.exit(state.reason)
        await _Loop(self, actor, state).run()


class _Loop:
    """One running server: its callbacks object, its actor and its state, message by message;
    before the first message after an upgrade, ``code_change`` (see ``actors.code_change``)."""

    __slots__ = ("server", "actor", "state", "generation")

    def __init__(self, server: GenServer[Any], actor: Actor, state: Any) -> None:
        self.server = server
        self.actor = actor
        self.state = state
        self.generation = CODE.generation

    async def run(self) -> None:
        reason: ExitReason = NORMAL
        try:
            mailbox = self.actor.mailbox
            while True:
                message = await mailbox.get()
                if self.generation != CODE.generation:
                    await self._change_code()
                stop = await self._handle(message)
                if stop is not None:
                    reason = stop
                    break
        except ActorExit as exc:
            reason = exc.reason
        except Exception as exc:  # not Cancelled (killed, the node going): no terminate then
            await self._terminate(Crash(exc))
            raise
        await self._terminate(reason)
        if reason != NORMAL:
            self.actor.exit(reason)

    async def _handle(self, message: Any) -> ExitReason | None:
        """Hand one message to its callback, keep the new state; a reason means stop."""
        server = self.server
        kind = type(message)
        if kind is Call:
            result = server.handle_call(message.request, message, self.state)
            if type(result) is CoroutineType:
                result = await result
            if type(result) is StopServer:
                _answer(self.actor, message, result.answer)
                self.state = result.state
                return result.reason
            if type(result) is not tuple or len(result) != 2:
                raise TypeError(
                    f"handle_call must return (answer, state) or StopServer, not {result!r}"
                )
            answer, self.state = result
            _answer(self.actor, message, answer)
            return None
        if kind is Cast:
            result = await _settled(server.handle_cast(message.message, self.state))
        elif kind is Exit and not server.trap_exits:
            reason: ExitReason = message.reason
            return None if reason == NORMAL else reason
        else:
            result = await _settled(server.handle_info(message, self.state))
        if type(result) is StopServer:
            self.state = result.state
            return result.reason
        self.state = result
        return None

    async def _change_code(self) -> None:
        since, self.generation = self.generation, CODE.generation
        self.server, self.state = await change_code(
            self.server, self.state, since, self.actor.address
        )

    async def _terminate(self, reason: ExitReason) -> None:
        if self.generation != CODE.generation:  # terminate is new code: convert the state
            await self._change_code()
        await _settled(self.server.terminate(reason, self.state))


def _answer(actor: Actor, caller: Caller, answer: Any) -> None:
    if answer is not NO_REPLY:
        reply(actor.node, caller, answer)


async def _settled(result: Any) -> Any:
    """A callback's result, awaited if it is a coroutine (an ``async def`` callback's)."""
    if type(result) is CoroutineType:
        return await result
    return result

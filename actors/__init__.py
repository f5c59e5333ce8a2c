"""corral's actor runtime: mailboxes, names, groups, timers, monitors, links, supervisors.

Inside ``async with open_node():`` any code can ``send`` to an address or a name, ``call``
one and wait for its answer, and ``publish`` to a group; inside an actor, ``start_timer``,
``monitor`` and ``link`` act on the current actor (Erlang's ``self()``), which
``self_address()`` returns.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Unpack

import trio

from . import presence, topics
from .actor import Actor, ActorArgs, ActorFunction, current_actor
from .address import Address
from .backend import Backend, ClusterStatistics, LocalBackend, PeerInfo
from .calls import (
    DEFAULT_CALL_TIMEOUT,
    Call,
    CalleeExited,
    Caller,
    CallTimeout,
    Cast,
)
from .calls import reply as _reply
from .children import ChildInfo
from .dynamic import DynamicSupervisor, SupervisorNotRunning, TooManyChildren
from .errors import (
    ActorError,
    BrokerUnreachable,
    MailboxFull,
    NameTaken,
    NoNode,
    NoSuchActor,
    NotInActor,
    RemoteError,
    RestartIntensityExceeded,
)
from .extras import MissingExtra
from .gen_server import NO_REPLY, GenServer, StopServer
from .mailbox import DEFAULT_CAPACITY, MailboxPolicy, MailboxStatistics
from .messages import Down, Exit, MonitorRef, Timeout, TimerRef
from .node import (
    ActorInfo,
    Census,
    Destination,
    Node,
    NodeStatistics,
    SpawnOptions,
    SupervisorView,
    current_node,
    open_node,
)
from .reasons import (
    KILLED,
    MAILBOX_OVERFLOW,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    Crash,
    ExitReason,
    Killed,
    MailboxOverflow,
    NoConnection,
    NoProc,
    Normal,
    Shutdown,
)
from .specs import ChildSpec, Restart, Strategy
from .supervisor import Supervisor, supervise
from .wire_codec import NotPortable, wire_type


def self_address() -> Address:
    """The calling actor's own address (Erlang's ``self()``)."""
    return current_actor().address


def spawn(
    nursery: trio.Nursery,
    fn: Callable[[Actor, *ActorArgs], Awaitable[None]],
    *args: *ActorArgs,
    **options: Unpack[SpawnOptions],
) -> Address:
    """Start ``fn(actor, *args)`` as an actor in ``nursery`` (see Node.spawn for options);
    mypy checks ``args`` against ``fn``'s parameters."""
    return current_node().spawn(nursery, fn, *args, **options)


def send(dest: Destination, msg: Any) -> bool:
    """Queue ``msg`` for an address or registered name without waiting (see Node.send)."""
    return current_node().send(dest, msg)


async def call(dest: Destination, request: Any, timeout: float = DEFAULT_CALL_TIMEOUT) -> Any:
    """Send ``request`` to a behaviour (an address or a registered name) and return its answer.

    The callee is monitored meanwhile: CalleeExited as soon as it ends or its node goes away,
    CallTimeout after ``timeout`` seconds (a late answer is dropped, never left in a mailbox),
    NoSuchActor for a name nobody holds, MailboxFull if its mailbox refused the request.
    """
    return await current_node().call(dest, request, timeout)


def cast(dest: Destination, message: Any) -> bool:
    """Send ``message`` to a behaviour's ``handle_cast`` without waiting (as ``send`` does)."""
    return current_node().send(dest, Cast(message))


def reply(caller: Caller, answer: Any) -> None:
    """Answer a call that ``handle_call`` kept waiting (returned NO_REPLY); dropped if the
    call is over."""
    _reply(current_node(), caller, answer)


async def send_wait(dest: Destination, msg: Any) -> bool:
    """Queue ``msg``, waiting for room in the destination's mailbox."""
    return await current_node().send_wait(dest, msg)


def register(name: str, address: Address | None = None) -> None:
    """Register ``name`` for ``address`` (default: the calling actor)."""
    current_node().register(name, address or self_address())


def unregister(name: str) -> None:
    """Remove a registered name."""
    current_node().unregister(name)


def whereis(name: str) -> Address | None:
    """The address registered as ``name``, or None."""
    return current_node().whereis(name)


async def wait_for(name: str, timeout: float = math.inf) -> Address:
    """Wait until ``name`` is registered (NoSuchActor after ``timeout``)."""
    return await current_node().wait_for(name, timeout)


def join(group: str, address: Address | None = None) -> None:
    """Join ``group`` (default: the calling actor)."""
    current_node().join(group, address or self_address())


def leave(group: str, address: Address | None = None) -> None:
    """Leave ``group`` (default: the calling actor)."""
    current_node().leave(group, address or self_address())


def members(group: str) -> list[Address]:
    """Members of ``group``."""
    return current_node().members(group)


def which_groups() -> list[str]:
    """Groups that have members."""
    return current_node().which_groups()


def publish(group: str, msg: Any) -> int:
    """Offer ``msg`` to every member of ``group``; return how many took it."""
    return current_node().publish(group, msg)


def cluster() -> ClusterStatistics:
    """The cluster as this node sees it: nodes, liveness, cross-node traffic and losses."""
    return current_node().cluster()


def send_exit(address: Address, reason: ExitReason) -> None:
    """Send an exit signal to ``address`` (Erlang's exit/2; ``KILLED`` cannot be trapped)."""
    current_node().exit(address, reason)


_DEPRECATED = {"exit": ("send_exit", send_exit)}
"""Old public names kept for one release (0.2.0), each warning with its new name."""


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new_name, value = _DEPRECATED[name]
        warnings.warn(
            f"actors.{name} is deprecated (it shadowed a builtin): use actors.{new_name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value
    raise AttributeError(f"module 'actors' has no attribute {name!r}")


def start_timer(seconds: float, msg: Any) -> TimerRef:
    """Deliver ``Timeout(ref, msg)`` to the calling actor after ``seconds``."""
    return current_actor().start_timer(seconds, msg)


def send_after(seconds: float, dest: Destination, msg: Any) -> TimerRef:
    """Deliver ``msg`` to ``dest`` after ``seconds`` (dies with the calling actor)."""
    return current_actor().send_after(seconds, dest, msg)


def cancel_timer(ref: TimerRef) -> float | None:
    """Cancel a timer; its message is never received afterwards. Returns time left or None."""
    return current_actor().cancel_timer(ref)


def read_timer(ref: TimerRef) -> float | None:
    """Seconds left on a timer, or None."""
    return current_actor().read_timer(ref)


def monitor(address: Address) -> MonitorRef:
    """Monitor ``address`` from the calling actor; a ``Down`` arrives when it ends."""
    return current_actor().monitor(address)


def demonitor(ref: MonitorRef) -> None:
    """Remove a monitor (a queued Down is never received)."""
    current_actor().demonitor(ref)


def link(address: Address) -> None:
    """Link the calling actor with ``address``."""
    current_actor().link(address)


def unlink(address: Address) -> None:
    """Remove a link."""
    current_actor().unlink(address)


__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CAPACITY",
    "NO_REPLY",
    "KILLED",
    "MAILBOX_OVERFLOW",
    "NOCONNECTION",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "Actor",
    "ActorError",
    "BrokerUnreachable",
    "ActorFunction",
    "ActorInfo",
    "Census",
    "ChildInfo",
    "Address",
    "Backend",
    "Call",
    "CallTimeout",
    "CalleeExited",
    "Caller",
    "Cast",
    "ChildSpec",
    "ClusterStatistics",
    "Crash",
    "Destination",
    "Down",
    "DynamicSupervisor",
    "Exit",
    "GenServer",
    "ExitReason",
    "Killed",
    "LocalBackend",
    "MailboxFull",
    "MailboxOverflow",
    "MailboxStatistics",
    "MissingExtra",
    "MonitorRef",
    "NameTaken",
    "NoConnection",
    "NoNode",
    "NoProc",
    "NoSuchActor",
    "Node",
    "NodeStatistics",
    "SupervisorView",
    "Normal",
    "NotInActor",
    "NotPortable",
    "MailboxPolicy",
    "PeerInfo",
    "RemoteError",
    "Restart",
    "RestartIntensityExceeded",
    "Shutdown",
    "StopServer",
    "Strategy",
    "Supervisor",
    "SupervisorNotRunning",
    "Timeout",
    "TimerRef",
    "TooManyChildren",
    "call",
    "cancel_timer",
    "cast",
    "cluster",
    "current_actor",
    "current_node",
    "demonitor",
    "join",
    "leave",
    "link",
    "members",
    "monitor",
    "open_node",
    "publish",
    "read_timer",
    "register",
    "reply",
    "send",
    "send_after",
    "send_exit",
    "send_wait",
    "spawn",
    "start_timer",
    "supervise",
    "topics",
    "unlink",
    "unregister",
    "wait_for",
    "whereis",
    "which_groups",
    "self_address",
    "presence",
    "wire_type",
]

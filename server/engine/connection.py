"""One WebSocket connection, run as an actor: the handler's callbacks in order, I/O kept thin.

A connection is one task, the actor's own. It takes, in arrival order, the client's frames and
its mailbox's messages, and calls the handler one event at a time, Cowboy's way. Every rule
(what a callback's commands mean, whether a push is taken, the close handshake, liveness)
is the ``ConnectionCore``'s, a sans-I/O object: this module moves bytes between it and the
``Transport`` (a socket's descriptor, or a TLS or test stream: the same loop over both).

With nothing to do the loop waits for the client, a wait that a mailbox arrival interrupts,
so a frame from an idle client is handled by the task the socket woke. A synchronous
``websocket_info`` may even run in the sender's task, as this connection's actor (see
``_on_mail``), without waking this one.

The bytes reach the transport through one writer, the core's ``write_to`` (called by ``_write_out``,
and inline by ``_apply``): from this task after each
callback, and from the node's timers (liveness pings, and the frames other actors pushed,
written together once the pushing task step is over: a burst broadcast in one step is one
write per client). It writes only what the socket takes at once; once the socket takes less
than it was given (``core.blocked``), only this task's ``_flush``, which waits for it, writes
on, so frames never interleave. The core gives whole frames in order, nothing after a close
frame, and nothing once the transport is closed. A flush stuck past the send timeout aborts
TCP. Reading only when the handler is done gives backpressure: the client's TCP window fills;
the loop also waits for room before its next event whenever the outbox is full.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from time import perf_counter
from typing import Any

import attrs
import trio

import actors
from actors import Actor, TimerRef
from actors.code import CODE
from actors.code_change import change_code, change_code_now

from ..commands import Binary, Commands, Text
from ..front.access_log import peer_text
from ..front.http import Request
from ..handler import WebSocketHandler, call, unpack_result
from ..ops.stats import stats_of
from ..options import ConnectionOptions
from ..termination import (
    ClientClosed,
    HandlerCrashed,
    ProtocolError,
    ServerShutdown,
    SlowClient,
    TerminateReason,
)
from .close_pacing import wait_closing_turn
from .core import ABORTED, ENDING, OPEN, ConnectionCore
from .session import NEED_DATA, Session, encode_message
from .step_writes import step_writes_of
from .transport import RECEIVE_SIZE, Transport, transport_of

logger = logging.getLogger("corral.server")

_EVENTS_PER_CHECKPOINT = 64
"""Client messages handled back to back before other tasks get a turn."""

_TIMED_MASK = 63
"""Metrics: websocket_handle is timed on a connection's 1st, 65th, 129th... message."""

_live: weakref.WeakKeyDictionary[Actor, Connection] = weakref.WeakKeyDictionary()


def connection_of(actor: Actor) -> Connection | None:
    """The upgraded WebSocket connection an actor runs, if it runs one."""
    return _live.get(actor)


@attrs.frozen
class EncodedFrame:
    """A frame built once and pushed to many connections' outboxes (fan-out).

    Uncompressed, so that it suits every connection: permessage-deflate lets a message go
    uncompressed (RSV1 clear) without touching the compression context.
    """

    message: str | bytes
    data: bytes

    @classmethod
    def of(cls, message: str | bytes) -> EncodedFrame:
        """Encode ``message`` as one unmasked, uncompressed server frame."""
        return cls(message, encode_message(message))


class _Inline:
    """Whether a synchronous websocket_info runs inline now (in some sender's task): one at
    a time, so a message sent from inside it is queued for its receiver, never nested."""

    running = False


_inline = _Inline()


async def _raise(exc: BaseException) -> Any:
    """What an inline callback raised, for the connection's loop to raise in its own task."""
    raise exc


class Connection:
    """One upgraded connection: its handler, its core and its transport; ``run`` drives it
    to its end."""

    # Slots: thousands of idle connections each keep one of these.
    __slots__ = (
        "actor",
        "handler",
        "request",
        "transport",
        "core",
        "state",
        "frames_in",
        "bytes_in",
        "bytes_out",
        "_write_due",
        "_waiting",
        "_inline_info",
        "_info_pending",
        "_liveness_timer",
        "_exit_on_crash",
        "_generation",
    )

    def __init__(
        self,
        actor: Actor,
        handler: WebSocketHandler[Any],
        request: Request,
        options: ConnectionOptions,
        stream: trio.abc.Stream,
        session: Session,
        state: Any,
        *,
        exit_on_crash: bool = False,
    ) -> None:
        self.actor = actor
        self.handler = handler
        self.request = request
        self.transport: Transport = transport_of(stream)
        self.state = state
        # The run's clock itself: trio.current_time reaches it through three calls, and the
        # core reads the time on every message (activity, for liveness).
        clock = trio.lowlevel.current_clock().current_time
        self.core = ConnectionCore(session, options, clock, self)
        # Metrics (server.ops.stats): plain ints, read when scraped. Bytes are the socket's.
        self.frames_in = self.bytes_in = self.bytes_out = 0
        self._exit_on_crash = exit_on_crash  # a crashed handler ends the actor as a crash
        self._write_due = False  # _write_held is scheduled for the end of the task step
        self._waiting: trio.CancelScope | None = None  # set while waiting for the client
        # A synchronous websocket_info can take a message in the sender's task (see _on_mail).
        self._inline_info = not inspect.iscoroutinefunction(handler.websocket_info)
        self._info_pending: Any = None  # an awaitable such a callback returned: the loop's
        self._liveness_timer: TimerRef | None = None
        self._generation = CODE.generation  # the code it runs (see actors.code)

    # ---- from other actors ----------------------------------------------------------

    def push(self, frame: EncodedFrame) -> bool:
        """Queue a pre-encoded frame without waiting, written once this task step is over;
        a full outbox applies the policy. Refused once either side has closed."""
        core = self.core
        taken = core.push(frame.data)
        if taken is None:  # a burst bigger than the outbox: write what is held now
            self._write_out()
            taken = core.push(frame.data)
        if taken:
            if not self._write_due:
                self._write_soon()
            return True
        if core.reason is not None:  # it overflowed, or the end was decided: the loop ends it
            self._wake()
        return False

    def _wake(self) -> None:
        """Interrupt the loop's wait for the client: a message, a flush or the end is due."""
        if self._waiting is not None:
            self._waiting.cancel()

    def _on_mail(self) -> None:
        """A message arrived while the loop waits for the client.

        If websocket_info is synchronous and nothing else is pending, the message is handled
        here, in the sender's task, as this connection's actor: the same call the loop would
        make, in the same order (nothing is queued before it), without waking a task; its
        frames are written once the sender's task step is over. Else, or if more is left to
        do, the loop is woken.

        Erlang's ``!`` still holds: whatever the callback raises (``BaseException`` included)
        is raised again in the connection's own task, never in the sender's; a message sent
        from inside the callback is queued, never handled in a nested inline call; and every
        path either wakes the loop or asks to be called at the next arrival.
        """
        core = self.core
        if (
            _inline.running
            or not (self._inline_info and core.phase is OPEN and not core.blocked)
            or (self._generation != CODE.generation and not self._change_code_now())
        ):
            self._wake()
            return
        mailbox = self.actor.mailbox
        try:
            message = mailbox.get_nowait()
        except trio.WouldBlock:  # only revoked messages came
            mailbox.wake_on_arrival(self._on_mail)
            return
        except trio.ClosedResourceError:  # the actor is ending: the loop finds out
            self._wake()
            return
        if _is_shutdown(message):
            core.fail(ServerShutdown())
            self._wake()
            return
        _inline.running = True
        try:
            result = self.actor.run_inline(self.handler.websocket_info, message, self.state)
            if type(result) is not tuple and inspect.isawaitable(result):  # a coroutine returned
                self._info_pending = result
            else:
                commands, self.state = unpack_result("websocket_info", result)
                core.apply(commands)
        except BaseException as exc:  # the callback's outcome: the connection's own task raises it
            self._info_pending = _raise(exc)
        finally:
            _inline.running = False
        if not self._write_due and core.queued_bytes:
            self._write_soon()
        if core.phase is not OPEN or self._info_pending is not None or len(mailbox) or core.blocked:
            self._wake()
        else:
            mailbox.wake_on_arrival(self._on_mail)

    # ---- the connection's life ------------------------------------------------------

    async def run(self) -> TerminateReason:
        """Serve the connection until it ends, close it properly and run ``terminate``, once,
        on every path; return why it ended (with ``exit_on_crash``, a crash ends the actor).

        The loop is inline, not split into helpers, because each coroutine frame on an idle
        connection's stack is memory held per connection.
        """
        _live[self.actor] = self
        self._schedule_liveness(self.core.next_check(trio.current_time()))
        mailbox, core = self.actor.mailbox, self.core
        reason: TerminateReason | None = None
        try:
            try:
                result = await call(self.handler.websocket_init, self.state)
                reason = self._apply(unpack_result("websocket_init", result))
                handled = streak = 0  # client messages handled; mailbox messages in a row
                while reason is None:  # one scope until a mailbox arrival interrupts a wait
                    with trio.CancelScope() as interrupt:
                        while reason is None:
                            if self._generation != CODE.generation:
                                await self.change_code()
                            if self._info_pending is not None:  # an inline call's end
                                pending, self._info_pending = self._info_pending, None
                                reason = self._apply(unpack_result("websocket_info", await pending))
                                continue
                            if core.phase is not OPEN:  # ended outside the loop
                                reason = core.reason
                                break
                            if core.blocked and not core.has_room_for(0):
                                await self._flush()  # the outbox is full: wait for room
                                continue
                            event = core.next_event() if core.input_pending else NEED_DATA
                            if event is not NEED_DATA:
                                if type(event) is not Text and type(event) is not Binary:
                                    assert isinstance(event, TerminateReason)
                                    reason = event  # the client's side ended
                                    break
                                handled += 1
                                if handled % _EVENTS_PER_CHECKPOINT == 0:
                                    await trio.lowlevel.checkpoint()
                                self.frames_in += 1
                                timed = (self.frames_in & _TIMED_MASK) == 1  # metrics: a sample
                                started = perf_counter() if timed else 0.0
                                core.handling = True
                                try:
                                    result = self.handler.websocket_handle(event, self.state)
                                    if type(result) is not tuple and inspect.isawaitable(result):
                                        result = await result
                                finally:
                                    if timed:
                                        stats_of(self.actor.node).handler_seconds.observe(
                                            perf_counter() - started
                                        )
                                    if core.checked_while_handling:
                                        core.handling_ended()
                                    else:
                                        core.handling = False
                                if type(result) is not tuple or len(result) != 2:
                                    result = unpack_result("websocket_handle", result)
                                reason = self._apply(result)
                                continue
                            if len(mailbox):
                                streak += 1
                                if streak > 1 and await self._poll(streak):
                                    continue  # the client's frames came first: they go first
                                try:
                                    message = mailbox.get_nowait()
                                except trio.WouldBlock:  # only revoked messages were waiting
                                    continue
                                if _is_shutdown(message):
                                    reason = ServerShutdown()
                                else:
                                    result = await call(
                                        self.handler.websocket_info, message, self.state
                                    )
                                    reason = self._apply(unpack_result("websocket_info", result))
                                continue
                            if core.blocked:
                                await self._flush()
                                continue
                            if core.session.inflating:  # a step at a time: let the others run
                                await trio.lowlevel.checkpoint()
                                continue
                            if core.next_chunk is not None or core.outbox is not None:
                                # the protocol's answers (pongs), frames held for the step's end
                                self._write_out()
                                continue
                            # Not held while waiting: an idle connection keeps no message (nor
                            # the result of the callback that handled it) for the collector to
                            # walk at every full pass.
                            result = message = None
                            await self._receive(interrupt)
                            streak = 0
                            if interrupt.cancel_called:
                                # Cut short after the wait had ended anyway: renew the scope
                                # before any checkpoint in it could raise Cancelled.
                                break
            except Exception as exc:
                reason = self._crashed(exc)
            await wait_closing_turn()  # a burst of closes is spread over scheduler passes
            await self._close_for(reason)
        finally:
            _live.pop(self.actor, None)
            self._cancel_liveness()
            if inspect.iscoroutine(self._info_pending):  # cancelled before the loop took it
                self._info_pending.close()
            self._info_pending = None
            with trio.CancelScope(shield=True) as cleanup:
                cleanup.deadline = trio.current_time() + self.core.options.close_timeout
                core.closed()  # nothing is written once the socket is closed (its number reused)
                await self.transport.aclose()
                await _terminate(self, reason or ServerShutdown())  # None: cancelled by shutdown
        if self._exit_on_crash and isinstance(reason, HandlerCrashed):
            self.actor.exit(actors.Crash(reason.exception))  # its supervisor sees the crash
        return reason

    async def change_code(self) -> None:
        """Move to the code loaded since this connection's last event (``code_change``)."""
        self.adopt(*await change_code(self.handler, self.state, self._generation, self))

    def _change_code_now(self) -> bool:
        """``change_code`` inline, as this connection's actor (after an upgrade, 10,000
        connections' first messages would otherwise wake 10,000 tasks at once); False if the
        handler's ``code_change`` is ``async def``: the loop awaits it."""
        moved = self.actor.run_inline(
            change_code_now, self.handler, self.state, self._generation, self
        )
        if moved is None:
            return False
        self.adopt(*moved)
        return self._inline_info  # the new websocket_info may be async: then the loop runs it

    def adopt(self, handler: WebSocketHandler[Any], state: Any) -> None:
        """Run ``handler`` with ``state`` from the next event on, as today's code (the test
        kit's ``Driven.change_code``; an upgrade goes through ``change_code``)."""
        self.handler, self.state = handler, state
        self._inline_info = not inspect.iscoroutinefunction(handler.websocket_info)
        self._generation = CODE.generation

    def on_old_code(self) -> bool:
        """Whether an upgrade happened since this connection's last event."""
        return self._generation != CODE.generation

    def __str__(self) -> str:
        return f"{self.actor.address} {peer_text(self.request.peer)} {self.request.path}"

    async def _receive(self, interrupt: trio.CancelScope | None = None) -> None:
        """Wait for bytes from the client and feed them to the core.

        With ``interrupt`` (the loop's scope), a mailbox arrival or a frame to flush cuts the
        wait short by cancelling it, and the loop renews its scope: one scope serves every
        wait until then, where a scope per wait would cost as much as the wait itself.
        """
        if interrupt is not None:
            self._waiting = interrupt
            self.actor.mailbox.wake_on_arrival(self._on_mail)
        try:
            await self.transport.readable()
        finally:
            if interrupt is not None:
                self._waiting = None
                self.actor.mailbox.wake_on_arrival(None)
        data = self.transport.read_nowait()
        if data is not None:  # None: readable, then not (it happens): wait again
            self.bytes_in += len(data)  # _take's work, inline: a call less per message
            self.core.receive_data(data)

    async def _poll(self, streak: int) -> bool:
        """Take what the client already sent, without waiting; True if bytes came.

        Called between mailbox messages, so that a busy mailbox never starves the client's
        frames (its close, say).
        """
        data = await self.transport.poll(streak)
        if data is None:
            return False
        self._take(data)
        return True

    def _take(self, data: bytes) -> None:
        """Bytes the client sent (``b""``: it closed TCP), for the core to parse."""
        self.bytes_in += len(data)
        self.core.receive_data(data)

    def _crashed(self, exc: Exception) -> HandlerCrashed:
        logger.error(
            "%s: handler %s crashed on %s %s",
            self.actor.address,
            type(self.handler).__qualname__,
            peer_text(self.request.peer),
            self.request.path,
            exc_info=exc,
        )
        return HandlerCrashed(exc)

    def _apply(self, result: tuple[Commands, Any]) -> TerminateReason | None:
        """Carry out a callback's result in the loop: its commands, then write them
        (``_write_out``'s body, inline: this is every message's path)."""
        commands, self.state = result
        core = self.core
        reason = core.apply(commands)
        self.bytes_out += core.write_to(self.transport.write_nowait, RECEIVE_SIZE)
        if core.blocked:
            self._wake()  # the loop flushes the rest, waiting for the client
        return reason

    # ---- writing --------------------------------------------------------------------

    def _write_out(self) -> None:
        """The writer: hand the transport what the core has queued, as much as it takes
        now, from any task (``ConnectionCore.write_to`` keeps the rule: whole chunks, nothing
        while ``blocked``, when the loop's ``_flush`` writes on)."""
        core = self.core
        self.bytes_out += core.write_to(self.transport.write_nowait, RECEIVE_SIZE)
        if core.blocked:
            self._wake()  # the loop flushes the rest, waiting for the client

    def _write_soon(self) -> None:
        """``_write_out`` once the current task step is over (for other tasks' frames);
        the caller checked that it is not due already."""
        self._write_due = True
        node = self.actor.node
        step_writes_of(node).add(self._write_held, node.timers)

    def _write_held(self) -> None:
        self._write_due = False
        self._write_out()

    async def _flush(self) -> None:
        """Write everything queued, waiting for the client to take it; a client that takes
        nothing for send_timeout is aborted."""
        core = self.core
        while data := core.data_to_send(RECEIVE_SIZE):
            with trio.move_on_after(self.core.options.send_timeout) as timer:
                try:
                    sent = await self.transport.send_some(data)
                except trio.BrokenResourceError:
                    core.lose_output()
                    core.fail(ClientClosed(1006))
                    return
            if timer.cancelled_caught:
                core.fail(SlowClient("send timed out: the client stopped reading", 1006))
                await self._abort()
                return
            self.bytes_out += sent
            core.sent(sent, len(data))

    async def _abort(self) -> None:
        """Drop TCP with a reset: the client gets no more bytes, and no close frame."""
        self.core.abort()
        await self.transport.aclose(reset=True)

    # ---- closing --------------------------------------------------------------------

    async def _close_for(self, reason: TerminateReason) -> None:
        """Finish the connection the way ``reason`` calls for, within the close timeout.

        The core queues what the end owes (our close frame, or the reply to the client's);
        flush it, then wait for the client's close reply; the caller closes TCP.
        """
        core = self.core
        core.end(reason)
        if core.phase is ABORTED:
            await self.transport.aclose(reset=True)
            return
        self._write_out()
        if not (core.blocked or core.awaits_close):
            return  # all written, nothing to wait for (the client closed first)
        with trio.move_on_after(self.core.options.send_timeout + self.core.options.close_timeout):
            await self._flush()
            if not core.awaits_close:
                return
            with trio.move_on_after(self.core.options.close_timeout):
                while core.awaits_close:
                    await self._receive()
                    while isinstance(core.next_event(), (Text, Binary)):
                        pass  # data after our close frame is discarded

    # ---- liveness -------------------------------------------------------------------

    def _schedule_liveness(self, due: float) -> None:
        if due == float("inf"):
            return
        self._liveness_timer = TimerRef()
        delay = due - trio.current_time()
        self.actor.node.timers.schedule(self._liveness_timer, delay, self._check_liveness)

    def _cancel_liveness(self) -> None:
        if self._liveness_timer is not None:
            self.actor.node.timers.cancel(self._liveness_timer)
            self._liveness_timer = None

    def timing_changed(self) -> None:
        """SetOptions changed the idle timeout: schedule the next liveness check again."""
        self._cancel_liveness()
        self._schedule_liveness(self.core.next_check(trio.current_time()))

    def _check_liveness(self) -> None:
        core = self.core
        due = core.tick(trio.current_time())
        if core.phase is ENDING:
            self._wake()  # idle: the loop ends the connection
            return
        self._write_out()  # a keepalive ping, if one is due
        self._schedule_liveness(due)


async def _terminate(connection: Connection, reason: TerminateReason) -> None:
    """Run the handler's terminate once, log the close line, never raise."""
    request = connection.request
    duration = trio.current_time() - connection.core.opened_at
    code = _close_summary(connection, reason)
    number = code.split()[0]
    stats_of(connection.actor.node).connection_closed(connection, reason, number)
    peer = peer_text(request.peer)
    logger.info(
        "closed %s %s code=%s reason=%s after %.3f s",
        peer,
        request.path,
        code,
        reason,
        duration,
        extra={  # --log-format json: the same fields, one per key
            "peer": peer,
            "path": request.path,
            "code": int(number),
            "aborted": connection.core.phase is ABORTED,
            "reason": str(reason),
            "duration": round(duration, 3),
        },
    )
    try:
        if connection.on_old_code():  # terminate is new code: it wants the state converted
            await connection.change_code()
        await call(connection.handler.terminate, reason, request, connection.state)
    except Exception as exc:
        logger.error(
            "%s: terminate of %s crashed",
            connection.actor.address,
            type(connection.handler).__qualname__,
            exc_info=exc,
        )


def _close_summary(connection: Connection, reason: TerminateReason) -> str:
    """What the client really got: the close frame's code, or how TCP ended without one."""
    core = connection.core
    if core.phase is ABORTED:
        return "1006 (TCP aborted)"
    if core.close_code_sent is not None:
        return str(core.close_code_sent)
    if isinstance(reason, (ClientClosed, ProtocolError)):
        return str(reason.close_code)
    return "1006"  # cancelled before a close frame could go out


def _is_shutdown(message: Any) -> bool:
    return isinstance(message, actors.Exit) and message.reason == actors.SHUTDOWN

"""One WebSocket connection, run as an actor: the handler's callbacks in order, I/O kept thin.

A connection is one task, the actor's own. It takes, in arrival order, the client's frames
(parsed by ``Session``, the pure protocol state) and its mailbox's messages, and calls the
handler one event at a time, Cowboy's way. With nothing to do it waits for the socket, a wait
that a mailbox arrival interrupts, so a frame from an idle client is handled by the task the
socket woke: no hop through a queue or another task.

Writes go straight to the socket when it takes them at once (a non-blocking write, no task
switch); what it does not take waits in a bounded ``Outbox`` that this task flushes before it
reads again, so a slow client slows only its own connection: other actors pushing frames to
it never wait, and its overflow policy applies when the outbox is full. A flush stuck past
the send timeout aborts TCP. Frames that other tasks push are held until their task step is
over (``passwrites``), then written together: a burst broadcast in one step is one write per
client, not one per frame; the connection's own writes take what is held along, first.
Liveness checks (idle timeout, pings) run on the node's timers. Reading only when the handler
is done gives backpressure: the client's TCP window fills.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import struct
import weakref
from time import perf_counter
from typing import Any

import attrs
import trio

import actors
from actors import Actor, TimerRef

from .commands import Binary, Close, Commands, Ping, Pong, SetOptions, Stop, Text, as_command_list
from .handler import WebSocketHandler, call, unpack_result
from .http import Request
from .liveness import Liveness, Verdict
from .options import ConnectionOptions, OutboxPolicy
from .outbox import Outbox
from .pacing import take_turn
from .passwrites import pass_writes_of
from .rawio import socket_fd
from .session import NEED_DATA, Session, encode_message, encode_ping, encode_pong
from .tally import tally_of
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

logger = logging.getLogger("corral.server")

RECEIVE_SIZE = 64 * 1024
"""Most bytes read from the client at once."""

_EVENTS_PER_CHECKPOINT = 64
"""Client messages handled back to back before other tasks get a turn."""

_TLS_POLL_EVERY = 16
"""Mailbox messages in a row between two looks at a TLS client's stream."""

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


@attrs.frozen
class _Ended:
    """Mailbox notice: something outside the loop ended the connection (see ``_failure``)."""

    reason: TerminateReason


class Connection:
    """The state of one upgraded connection; ``run`` drives it to its end."""

    # Slots: thousands of idle connections each keep one of these.
    __slots__ = (
        "actor",
        "handler",
        "request",
        "options",
        "stream",
        "session",
        "state",
        "started_at",
        "dropped",
        "frames_in",
        "frames_out",
        "bytes_in",
        "bytes_out",
        "close_code_sent",
        "aborted",
        "_fd",
        "_handling",
        "_handled_at",
        "_checked_while_handling",
        "_received_at",
        "_failure",
        "_outbox",
        "_held",
        "_flushing",
        "_close_pending",
        "_waiting",
        "_inline_info",
        "_info_pending",
        "_liveness",
        "_liveness_timer",
        "_exit_on_crash",
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
        self.options = options
        self.stream = stream
        self.session = session
        self.state = state
        self.started_at = trio.current_time()
        self.dropped = 0
        """Frames pushed by other actors and dropped because the outbox was full."""
        # Metrics (server.tally): plain ints, read when scraped. Bytes are the socket's.
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self.close_code_sent: int | None = None
        """The code of the close frame the client was sent in full, if one was."""
        self.aborted = False
        """Whether TCP was aborted (RST) rather than closed after a close frame."""
        self._fd = socket_fd(stream)
        self._exit_on_crash = exit_on_crash  # a crashed handler ends the actor as a crash
        self._handling = False
        self._handled_at = self.started_at
        self._checked_while_handling = False
        self._received_at = self.started_at
        self._failure: TerminateReason | None = None
        self._outbox: Outbox | None = None  # made when the socket does not take a write
        self._held: Outbox | None = None  # frames pushed in this task step (see _write_soon)
        self._flushing = False
        self._close_pending: int | None = None  # a close frame queued, not yet written
        self._waiting: trio.CancelScope | None = None  # set while waiting for the client
        # A synchronous websocket_info can take a message in the sender's task (see _on_mail).
        self._inline_info = not inspect.iscoroutinefunction(handler.websocket_info)
        self._info_pending: Any = None  # an awaitable such a callback returned: the loop's
        self._liveness = Liveness(
            options.idle_timeout, options.ping_interval, options.pong_timeout, self.started_at
        )
        self._liveness_timer: TimerRef | None = None

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in the outbox for the client to take them (or held to be written)."""
        return sum(queue.size for queue in (self._outbox, self._held) if queue is not None)

    # ---- from other actors ----------------------------------------------------------

    def push(self, frame: EncodedFrame) -> bool:
        """Queue a pre-encoded frame without waiting; a full outbox applies the policy.
        Refused once either side has closed: nothing may follow a close frame."""
        session = self.session
        if session.closing or session.ended is not None or self._failure is not None:
            return False
        if self._write_soon(frame.data):
            self.frames_out += 1
            return True
        self.dropped += 1
        policy = self.options.outbox_overflow
        if policy is not OutboxPolicy.DROP:
            code = 1013 if policy is OutboxPolicy.CLOSE_1013 else 1008
            self._fail(SlowClient("outbox full: the client is not keeping up", code))
        return False

    def _fail(self, reason: TerminateReason) -> None:
        """End the connection soon for ``reason`` (from a task other than the loop)."""
        if self._failure is None:
            self._failure = reason
            self.actor.mailbox.put_system(_Ended(reason))  # the loop checks _failure first

    def _wake(self) -> None:
        """Interrupt the loop's wait for the client: a message or a flush is due."""
        if self._waiting is not None:
            self._waiting.cancel()

    def _on_mail(self) -> None:
        """A message arrived while the loop waits for the client.

        If websocket_info is synchronous and nothing else is pending, the message is handled
        here, in the sender's task, as this connection's actor: the same call the loop would
        make, in the same order (nothing is queued before it), without waking a task. Else,
        or if more is left to do, the loop is woken.

        Erlang's ``!`` still holds: whatever the callback raises (``BaseException`` included)
        is raised again in the connection's own task, never in the sender's; a message sent
        from inside the callback is queued, never handled in a nested inline call; and every
        path either wakes the loop or asks to be called at the next arrival.
        """
        if _inline.running or not (
            self._inline_info and self._outbox is None and self._failure is None
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
        if type(message) is _Ended:
            self._wake()  # _failure is set: the loop ends the connection
            return
        if _is_shutdown(message):
            self._fail(ServerShutdown())
            self._wake()
            return
        _inline.running = True
        try:
            result = self.actor.run_inline(self.handler.websocket_info, message, self.state)
            if type(result) is not tuple and inspect.isawaitable(result):  # a coroutine returned
                self._info_pending = result
                reason = None
            else:
                reason = self._apply_now(unpack_result("websocket_info", result))
        except BaseException as exc:  # the callback's outcome: the connection's own task raises it
            self._info_pending = _raise(exc)
            reason = None
        finally:
            _inline.running = False
        if reason is not None:
            self._fail(reason)
        if (
            reason is not None
            or self._info_pending is not None
            or len(mailbox)
            or self._outbox is not None
        ):
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
        self._schedule_liveness()
        handler, mailbox, session = self.handler, self.actor.mailbox, self.session
        reason: TerminateReason | None = None
        try:
            try:
                result = await call(handler.websocket_init, self.state)
                reason = await self._apply(unpack_result("websocket_init", result))
                handled = streak = 0  # client messages handled; mailbox messages in a row
                while reason is None:  # one scope until a mailbox arrival interrupts a wait
                    with trio.CancelScope() as interrupt:
                        while reason is None:
                            if self._failure is not None:
                                reason = self._failure
                                break
                            if self._info_pending is not None:
                                pending, self._info_pending = self._info_pending, None
                                reason = await self._apply(
                                    unpack_result("websocket_info", await pending)
                                )
                                continue
                            event = session.next_event()
                            if event is not NEED_DATA:
                                if isinstance(event, TerminateReason):
                                    reason = event  # _close_for writes what the session owes
                                    break
                                if session.owes:
                                    self._write_protocol_data()
                                handled += 1
                                if handled % _EVENTS_PER_CHECKPOINT == 0:
                                    await trio.lowlevel.checkpoint()
                                self.frames_in += 1
                                timed = (self.frames_in & _TIMED_MASK) == 1  # metrics: a sample
                                started = perf_counter() if timed else 0.0
                                self._handling = True
                                try:
                                    result = handler.websocket_handle(event, self.state)
                                    if type(result) is not tuple and inspect.isawaitable(result):
                                        result = await result
                                finally:
                                    if timed:
                                        tally_of(self.actor.node).handler_seconds.observe(
                                            perf_counter() - started
                                        )
                                    self._handling = False
                                    if self._checked_while_handling:  # a slow callback: it counts
                                        self._checked_while_handling = False
                                        self._handled_at = trio.current_time()
                                reason = await self._apply(
                                    unpack_result("websocket_handle", result)
                                )
                                continue
                            if session.owes:
                                self._write_protocol_data()
                            if len(mailbox):
                                streak += 1
                                if streak > 1 and await self._poll(streak):
                                    continue  # the client's frames came first: they go first
                                try:
                                    message = mailbox.get_nowait()
                                except trio.WouldBlock:  # only revoked messages were waiting
                                    continue
                                if type(message) is _Ended:
                                    reason = self._failure or message.reason
                                elif _is_shutdown(message):
                                    reason = ServerShutdown()
                                else:
                                    result = await call(handler.websocket_info, message, self.state)
                                    reason = await self._apply(
                                        unpack_result("websocket_info", result)
                                    )
                                continue
                            if self._outbox is not None:
                                await self._flush()
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
            await take_turn()  # a burst of closes is spread over scheduler passes
            await self._close_for(reason)
        finally:
            _live.pop(self.actor, None)
            self._held = None  # never written once the socket is closed (its number reused)
            self._cancel_liveness()
            with trio.CancelScope(shield=True) as cleanup:
                cleanup.deadline = trio.current_time() + self.options.close_timeout
                await trio.aclose_forcefully(self.stream)
                await _terminate(self, reason or ServerShutdown())  # None: cancelled by shutdown
        if self._exit_on_crash and isinstance(reason, HandlerCrashed):
            self.actor.exit(actors.Crash(reason.exception))  # its supervisor sees the crash
        return reason

    async def _receive(self, interrupt: trio.CancelScope | None = None) -> None:
        """Wait for bytes from the client and feed them to the session.

        With ``interrupt`` (the loop's scope), a mailbox arrival or a frame to flush cuts the
        wait short by cancelling it, and the loop renews its scope: one scope serves every
        wait until then, where a scope per wait would cost as much as the wait itself.
        """
        if interrupt is not None:
            self._waiting = interrupt
            self.actor.mailbox.wake_on_arrival(self._on_mail)
        try:
            if self._fd is None:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            else:
                await trio.lowlevel.wait_readable(self._fd)
                data = os.read(self._fd, RECEIVE_SIZE)
        except BlockingIOError:
            return  # readable, then not (it happens): wait again
        except (OSError, trio.BrokenResourceError):
            data = b""  # reset by the peer: the same as its vanishing
        finally:
            if interrupt is not None:
                self._waiting = None
                self.actor.mailbox.wake_on_arrival(None)
        self._take(data)

    async def _poll(self, streak: int) -> bool:
        """Take what the client already sent, without waiting; True if bytes came.

        Called between mailbox messages, so that a busy mailbox never starves the client's
        frames (its close, say). A TLS stream cannot be read without waiting: it is given
        a millisecond every ``_TLS_POLL_EVERY`` messages instead.
        """
        data: bytes | bytearray
        if self._fd is not None:
            try:
                data = os.read(self._fd, RECEIVE_SIZE)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
        elif streak % _TLS_POLL_EVERY == 0:
            data = b""
            with trio.move_on_after(0.001) as timer:  # cancel-safe after the TLS handshake
                try:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                except trio.BrokenResourceError:
                    pass  # as if it closed
            if timer.cancelled_caught:
                return False
        else:
            return False
        self._take(data)
        return True

    def _take(self, data: bytes | bytearray) -> None:
        """Bytes the client sent (``b""``: it closed TCP), for the session to parse."""
        self._received_at = trio.current_time()
        self.bytes_in += len(data)
        if data:
            self.session.receive_data(bytes(data))
        else:
            self.session.receive_eof()

    def _crashed(self, exc: Exception) -> HandlerCrashed:
        logger.error(
            "%s: handler %s crashed on %s %s",
            self.actor.address,
            type(self.handler).__qualname__,
            _peer(self.request),
            self.request.path,
            exc_info=exc,
        )
        return HandlerCrashed(exc)

    async def _apply(self, result: tuple[Commands, Any]) -> TerminateReason | None:
        commands, self.state = result
        if commands is None:
            return None
        if type(commands) is Text and not self.session.closing:  # the common case, directly
            self.frames_out += 1
            data = self.session.encode_text(commands.data)
            if not self._write_nowait(data):
                await self._send(data)
            return self._failure
        for command in as_command_list(commands):
            if self.session.closing:
                break  # frames after a close are not sent
            if isinstance(command, (Text, Binary, Ping, Pong)):
                await self._send(self._encode(command))
            elif isinstance(command, Close):
                self._queue_close(command.code, command.reason)
                return HandlerStopped()
            elif isinstance(command, Stop):
                self._queue_close(1000, "")
                return HandlerStopped()
            elif isinstance(command, SetOptions):
                self._set_options(command)
            if self._failure is not None:
                return self._failure
        return None

    def _apply_now(self, result: tuple[Commands, Any]) -> TerminateReason | None:
        """``_apply`` without waiting, for ``_on_mail``: frames are held for the end of the
        task step, and join the outbox whatever its bounds (one callback's worth) if it is full
        or the socket does not take them; the loop flushes it."""
        commands, self.state = result
        if type(commands) is Text and not self.session.closing:  # the common case, directly
            self.frames_out += 1
            self._write_owed(self.session.encode_text(commands.data), soon=True)
            return None
        for command in as_command_list(commands):
            if self.session.closing:
                break
            if isinstance(command, (Text, Binary, Ping, Pong)):
                self._write_owed(self._encode(command), soon=True)
            elif isinstance(command, (Close, Stop)):
                code, why = (
                    (command.code, command.reason) if isinstance(command, Close) else (1000, "")
                )
                self._queue_close(code, why)
                return HandlerStopped()
            elif isinstance(command, SetOptions):
                self._set_options(command)
        return None

    def _encode(self, command: Text | Binary | Ping | Pong) -> bytes:
        if isinstance(command, Ping):
            return encode_ping(command.data)
        if isinstance(command, Pong):
            return encode_pong(command.data)
        self.frames_out += 1
        return self.session.encode(command)

    def _set_options(self, command: SetOptions) -> None:
        changes = command.changes()
        self.options = attrs.evolve(self.options, **changes)
        if "max_message_size" in changes:
            self.session.max_message_size = self.options.max_message_size
        if "idle_timeout" in changes:
            self._liveness.idle_timeout = self.options.idle_timeout
            self._cancel_liveness()
            self._schedule_liveness()

    # ---- writing --------------------------------------------------------------------

    def _write_nowait(self, data: bytes) -> bool:
        """Write ``data`` now, or queue what the socket does not take; False if full.

        Bytes go straight to the socket only when nothing is queued or being flushed, so
        frames never interleave; frames held for the end of the task step go first, in the
        same write if they leave room.
        """
        held = self._held
        if held is not None:
            if held.has_room_for(len(data)):
                held.append(data)
                self._write_held()
                return True
            self._write_held()
        outbox = self._outbox
        if outbox is None and not self._flushing:
            sent = 0
            if self._fd is not None:
                try:
                    sent = os.write(self._fd, data)
                except BlockingIOError:
                    pass
                except OSError:
                    return True  # the connection is broken; reading will say how it ended
                self.bytes_out += sent
                if sent == len(data):
                    return True
            outbox = self._outbox = Outbox(self.options.outbox_capacity, self.options.outbox_bytes)
            outbox.append(data)
            outbox.discard(sent)
            self._wake()
            return True
        if outbox is None:
            outbox = self._outbox = Outbox(self.options.outbox_capacity, self.options.outbox_bytes)
        if not outbox.has_room_for(len(data)):
            return False
        outbox.append(data)
        return True

    def _write_soon(self, data: bytes) -> bool:
        """``_write_nowait`` once the current task step is over, in one write with whatever
        else the step pushes to this client; False if full. The outbox's bounds apply to what
        is held as to what is queued, and a full hold is written at once to make room.

        For frames from other tasks; the loop's own writes go at once (``_write_nowait``).
        """
        held = self._held
        if held is not None and not held.has_room_for(len(data)):
            self._write_held()
            held = None
        if held is None:
            if self._outbox is not None or self._flushing or self._fd is None:
                return self._write_nowait(data)  # queued anyway, or TLS: the loop writes it
            held = self._held = Outbox(self.options.outbox_capacity, self.options.outbox_bytes)
            node = self.actor.node
            pass_writes_of(node).add(self._write_held, node.timers)
        held.append(data)
        return True

    def _write_held(self) -> None:
        """Write the held frames in one go; what the socket does not take becomes the outbox,
        which the loop flushes."""
        held, self._held = self._held, None
        if held is None:
            return
        assert self._fd is not None and self._outbox is None and not self._flushing
        while held:
            data = held.peek(RECEIVE_SIZE)
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # the connection is broken; reading will say how it ended
            self.bytes_out += sent
            held.discard(sent)
            if sent < len(data):
                break
        if held:
            self._outbox = held
            self._wake()

    async def _send(self, data: bytes) -> None:
        """Write one of the handler's frames, first waiting for room if the outbox is full."""
        if not self._write_nowait(data):
            await self._flush()
            if self._failure is None:
                self._write_nowait(data)

    def _write_protocol_data(self) -> None:
        """Write what the protocol owes the client (pongs, a close reply)."""
        data = self.session.data_to_send()
        if data:
            self._write_owed(data)

    def _write_owed(self, data: bytes, *, soon: bool = False) -> None:
        """Write ``data`` now (``soon``: at the end of the task step) or queue it, past the
        outbox's bounds if need be: it is owed (by the protocol, or by a callback that cannot
        wait), so it is never dropped."""
        written = self._write_soon(data) if soon else self._write_nowait(data)
        if not written and self._outbox is not None:
            self._outbox.append(data)

    async def _flush(self) -> None:
        """Write everything queued; a client that takes nothing for send_timeout is aborted."""
        outbox = self._outbox
        if outbox is None or self._flushing:
            return
        self._flushing = True
        try:
            while outbox:
                data = outbox.take(RECEIVE_SIZE)
                with trio.move_on_after(self.options.send_timeout) as timer:
                    await self.stream.send_all(data)
                outbox.written(len(data))
                self.bytes_out += len(data)
                if timer.cancelled_caught:
                    self._fail(SlowClient("send timed out: the client stopped reading", 1006))
                    await self._abort()
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._fail(ClientClosed(1006))
            return
        finally:
            self._flushing = False
            if not outbox or self.aborted or self._failure is not None:
                self._outbox = None
        if self._close_pending is not None:
            self.close_code_sent, self._close_pending = self._close_pending, None

    async def _abort(self) -> None:
        """Drop TCP with a reset: the client gets no more bytes, and no close frame."""
        self.aborted = True
        self._outbox = self._held = None
        if isinstance(self.stream, trio.SocketStream):
            self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        await trio.aclose_forcefully(self.stream)

    # ---- closing --------------------------------------------------------------------

    def _queue_close(self, code: int, reason: str) -> None:
        """Queue the close frame behind what is queued (if the outbox is full, behind only the
        end of a frame begun: the frames not begun are dropped)."""
        data = self.session.close(code, reason)
        if not data:
            return
        outbox = self._outbox
        if outbox is not None and not outbox.has_room_for(len(data)):
            self.dropped += outbox.clear()
        self._write_owed(data)  # past the bounds if the end of a frame begun fills them
        if self._outbox is None and not self._flushing:
            self.close_code_sent = code
        else:
            self._close_pending = code

    async def _close_for(self, reason: TerminateReason) -> None:
        """Finish the connection the way ``reason`` calls for, within the close timeout.

        Send the close frame the server owes (if any), flush, then wait for the client's
        close reply; the caller closes TCP.
        """
        self._inline_info = False  # the handler is done: no callback runs after this
        if self.aborted:
            return
        if _server_closes(reason):
            self._queue_close(reason.close_code, "")
        elif isinstance(reason, SlowClient):
            await self._abort()
            return
        self._write_held()
        self._write_protocol_data()
        if self._outbox is None and (self.session.transport_done or not self.session.closing):
            return  # all written, nothing to wait for (the client closed first)
        with trio.move_on_after(self.options.send_timeout + self.options.close_timeout):
            await self._flush()
            if self.aborted or self.session.transport_done or not self.session.closing:
                return
            with trio.move_on_after(self.options.close_timeout):
                while not (self.session.transport_done or self.session.ended):
                    await self._receive()
                    while isinstance(self.session.next_event(), (Text, Binary)):
                        pass  # data after our close frame is discarded

    # ---- liveness -------------------------------------------------------------------

    def _schedule_liveness(self) -> None:
        now = trio.current_time()
        due = self._liveness.next_check(now)
        if due == float("inf"):
            return
        self._liveness_timer = TimerRef()
        self.actor.node.timers.schedule(self._liveness_timer, due - now, self._check_liveness)

    def _cancel_liveness(self) -> None:
        if self._liveness_timer is not None:
            self.actor.node.timers.cancel(self._liveness_timer)
            self._liveness_timer = None

    def _check_liveness(self) -> None:
        now = trio.current_time()
        if self._handling:
            # The client is not idle, we are (Cowboy restarts its idle timer when a frame
            # is handled, not when it arrives): the loop notes when this callback ends.
            self._handled_at = now
            self._checked_while_handling = True
        self._liveness.last_received = max(self._received_at, self._handled_at)
        verdict = self._liveness.check(now)
        if verdict is Verdict.IDLE or verdict is Verdict.NO_PONG:
            self._fail(IdleTimeout())
            return
        if verdict is Verdict.SEND_PING:
            self._write_nowait(encode_ping(b"corral"))  # full: send_timeout's business
        self._schedule_liveness()


async def _terminate(connection: Connection, reason: TerminateReason) -> None:
    """Run the handler's terminate once, log the close line, never raise."""
    request = connection.request
    duration = trio.current_time() - connection.started_at
    code = _close_summary(connection, reason)
    tally_of(connection.actor.node).connection_closed(connection, reason, code.split()[0])
    peer = _peer(request)
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
            "code": code,
            "reason": str(reason),
            "duration": round(duration, 3),
        },
    )
    try:
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
    if connection.aborted:
        return "1006 (TCP aborted)"
    if connection.close_code_sent is not None:
        return str(connection.close_code_sent)
    if isinstance(reason, (ClientClosed, ProtocolError)):
        return str(reason.close_code)
    return "1006"  # cancelled before a close frame could go out


_LINGER_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on, zero seconds: close() sends RST instead of FIN."""


def _is_shutdown(message: Any) -> bool:
    return isinstance(message, actors.Exit) and message.reason == actors.SHUTDOWN


def _server_closes(reason: TerminateReason) -> bool:
    """Whether the server still owes the client a close frame for this reason."""
    if isinstance(reason, (ClientClosed, ProtocolError)):
        return False
    return not (isinstance(reason, SlowClient) and reason.code == 1006)


def _peer(request: Request) -> str:
    return f"{request.peer[0]}:{request.peer[1]}" if request.peer else "?"

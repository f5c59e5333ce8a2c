"""One WebSocket connection, run as an actor: the handler's callbacks in order, and I/O apart.

The loop reads one queue, the actor's mailbox, in arrival order: messages for
``websocket_info``, and the client's messages, which small tasks beside it put there:
- the *drain* (trio-websocket's own reader, through ``wire.MessageSink``) reads the client
  ahead of the handler (up to 16 messages queued, as mailbox inputs), so control frames keep
  flowing while a callback works; past that, backpressure reaches the client's TCP window,
  as in Cowboy; frames waiting for the handler count as activity for the idle timeout,
  which restarts when they are handled (Cowboy's rule);
- the *writer* sends from a bounded outbox, so no other actor ever waits on a slow client;
  a write stuck past the send timeout aborts TCP (a half-written stream is never reused);
  it starts only when a write cannot go straight to the socket;
- liveness checks (idle timeout, keepalive pings) run on the node's timer service.
The loop calls the handler one event at a time and carries out the commands it returns.
An idle connection is two waiting tasks: the loop and the drain.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed

import actors
from actors import Actor, TimerRef
from actors.messages import Input

from . import wire
from .commands import (
    Binary,
    Close,
    Commands,
    Frame,
    Ping,
    Pong,
    SetOptions,
    Stop,
    Text,
    as_command_list,
)
from .handler import Upgrade, WebSocketHandler, call, unpack_result
from .http import Request
from .liveness import Liveness, Verdict
from .options import ConnectionOptions, OutboxOverflow
from .termination import (
    Crash,
    IdleTimeout,
    Normal,
    Overflow,
    ProtocolError,
    Remote,
    Shutdown,
    TerminateReason,
)
from .upgrade import ReplayStream, accept_websocket, client_stream

logger = logging.getLogger("corral.server")

_live: weakref.WeakKeyDictionary[Actor, Connection] = weakref.WeakKeyDictionary()


def connection_of(actor: Actor) -> Connection | None:
    """The upgraded WebSocket connection an actor runs, if it runs one."""
    return _live.get(actor)


@attrs.frozen
class EncodedFrame:
    """A frame built once and pushed to many connections' outboxes (fan-out)."""

    message: str | bytes
    data: bytes

    @classmethod
    def of(cls, message: str | bytes) -> EncodedFrame:
        """Encode ``message`` as one unmasked server frame."""
        return cls(message, wire.encode_message(message))


@attrs.frozen
class _Ended:
    reason: TerminateReason


_FLUSH = EncodedFrame("", b"")
"""Outbox marker: write the tail of a frame that ``_write_now`` started."""

_Outgoing = Text | Binary | Ping | Pong | Close | EncodedFrame


class Connection:
    """The state of one upgraded connection; ``run`` drives it to its end."""

    # Slots: thousands of idle connections each keep one of these.
    __slots__ = (
        "actor",
        "handler",
        "request",
        "options",
        "websocket",
        "stream",
        "state",
        "started_at",
        "dropped",
        "close_code_sent",
        "_closing",
        "_handling",
        "_serving",
        "_handled_at",
        "_failure",
        "_raw_frames",
        "_outbox_send",
        "_outbox",
        "_tasks",
        "_writer_done",
        "_liveness",
        "_liveness_timer",
        "_writing",
        "_queued",
        "_fd",
    )

    def __init__(
        self,
        actor: Actor,
        handler: WebSocketHandler[Any],
        request: Request,
        options: ConnectionOptions,
        websocket: wire.CorralWebSocket,
        state: Any,
    ) -> None:
        self.actor = actor
        self.handler = handler
        self.request = request
        self.options = options
        self.websocket = websocket
        self.stream: ReplayStream = client_stream(websocket)
        self.state = state
        self.started_at = trio.current_time()
        self.dropped = 0
        self.close_code_sent: int | None = None
        self._closing = False
        self._handling = False
        self._serving = True  # the loop still takes events
        self._handled_at = self.started_at
        self._failure: TerminateReason | None = None
        self._raw_frames = not wire.is_compressed(websocket)
        self._outbox_send: trio.MemorySendChannel[_Outgoing] | None = None
        self._outbox: trio.MemoryReceiveChannel[_Outgoing] | None = None
        self._tasks: trio.Nursery | None = None
        self._writer_done: trio.Event | None = None  # made with the writer
        self._liveness = Liveness(
            options.idle_timeout,
            options.ping_interval,
            options.pong_timeout,
            self.stream.last_received,
        )
        self._liveness_timer: TimerRef | None = None
        self._writing = False
        self._queued = 0  # items in the outbox or handed to the writer, not yet taken
        self._fd = wire.socket_fd(self.stream.inner) if self._raw_frames else None

    # ---- from other actors ----------------------------------------------------------

    def push(self, frame: EncodedFrame) -> bool:
        """Queue a pre-encoded frame without waiting; a full outbox applies the policy."""
        if self._closing:
            return False
        if self._write_now(frame.data):
            return True
        try:
            self._queue_nowait(frame)
        except trio.WouldBlock:
            self._outbox_full()
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def _write_now(self, data: bytes) -> bool:
        """Put a frame straight on the socket if nothing is queued or being written.

        This skips the writer task's wake-up for each frame (most frames, on a healthy
        connection); a tail the socket does not take at once is flushed by the writer.
        """
        if self._fd is None or self._writing or self._queued:
            return False
        if not wire.write_now(self.websocket, self._fd, data):
            return False
        if self.websocket.pending:
            self._queue_nowait(_FLUSH)
        return True

    def _queue_nowait(self, item: _Outgoing) -> None:
        """Put ``item`` in the outbox or raise trio.WouldBlock (or a closed-channel error)."""
        self._writable_outbox().send_nowait(item)
        self._queued += 1

    async def _queue(self, item: _Outgoing) -> None:
        """Put ``item`` in the outbox, waiting for room (counted before, so nothing overtakes)."""
        outbox = self._writable_outbox()
        self._queued += 1
        try:
            await outbox.send(item)
        except BaseException:
            self._queued -= 1
            raise

    def _writable_outbox(self) -> trio.MemorySendChannel[_Outgoing]:
        """The outbox, its writer task started on first use: a connection whose frames all
        went straight to the socket never needs either (most idle connections)."""
        if self._outbox_send is None:
            if self._tasks is None:
                raise trio.ClosedResourceError("the connection has ended")
            self._outbox_send, self._outbox = trio.open_memory_channel[_Outgoing](
                self.options.outbox_capacity
            )
            self._writer_done = trio.Event()
            self._tasks.start_soon(self._write, self._outbox, self._writer_done)
        return self._outbox_send

    def _outbox_full(self) -> None:
        self.dropped += 1
        policy = self.options.outbox_overflow
        if policy is not OutboxOverflow.DROP:
            code = 1013 if policy is OutboxOverflow.CLOSE_1013 else 1008
            self._fail(Overflow("outbox full: the client is not keeping up", code))

    def _fail(self, reason: TerminateReason) -> None:
        """End the connection soon for ``reason`` (from a task other than the loop)."""
        if self._failure is None:
            self._failure = reason
            self.actor.mailbox.put_system(_Ended(reason))  # the loop checks _failure first

    # ---- the connection's life ------------------------------------------------------

    async def run(self, tasks: trio.Nursery) -> TerminateReason:
        """Serve the connection until it ends; return why (terminate is the caller's).

        The writer runs in ``tasks`` (the nursery of trio-websocket's reader); the caller
        cancels it once this returns. The loop is inline, not a helper, because each
        coroutine frame on an idle connection's stack is memory held per connection.
        """
        _live[self.actor] = self
        self._tasks = tasks
        self._schedule_liveness()
        handler, mailbox = self.handler, self.actor.mailbox
        try:
            try:
                result = await call(handler.websocket_init, self.state)
                reason = await self._apply(unpack_result("websocket_init", result))
                while reason is None:
                    if self._failure is not None:
                        reason = self._failure
                        break
                    event = await mailbox.get()
                    kind = type(event)
                    if kind is Input:
                        self._handling = True
                        try:
                            result = await call(
                                handler.websocket_handle, _as_frame(event.data), self.state
                            )
                        finally:
                            self._handling = False
                            self._handled_at = trio.current_time()
                        reason = await self._apply(unpack_result("websocket_handle", result))
                    elif kind is _Ended:
                        reason = self._failure or event.reason
                    elif _is_shutdown(event):
                        reason = Shutdown()
                    else:
                        result = await call(handler.websocket_info, event, self.state)
                        reason = await self._apply(unpack_result("websocket_info", result))
            except Exception as exc:
                reason = self._crashed(exc)
            self._serving = False
            # The drain may wait for room: it must go on, to read the client's close reply.
            mailbox.discard_inputs()
            await self._close_for(reason)
        finally:
            _live.pop(self.actor, None)
            self._cancel_liveness()
            self._tasks = None
        return reason

    def _crashed(self, exc: Exception) -> Crash:
        logger.error(
            "%s: handler %s crashed on %s %s",
            self.actor.address,
            type(self.handler).__qualname__,
            _peer(self.request),
            self.request.path,
            exc_info=exc,
        )
        return Crash(exc)

    async def _apply(self, result: tuple[Commands, Any]) -> TerminateReason | None:
        commands, self.state = result
        for command in as_command_list(commands):
            if self._closing:
                break  # frames after a close are not sent
            if isinstance(command, (Text, Binary, Ping, Pong)):
                if self._write_now(_encode(command)):
                    continue
                try:
                    await self._queue(command)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    # The writer is gone: it recorded why, or the drain is about to say how
                    # the connection closed (a protocol error, the client leaving...).
                    return self._failure
            elif isinstance(command, Close):
                self._queue_close(command.code, command.reason)
                return Normal()
            elif isinstance(command, Stop):
                self._queue_close(1000, "")
                return Normal()
            elif isinstance(command, SetOptions):
                self._set_options(command)
        return None

    def _set_options(self, command: SetOptions) -> None:
        changes = command.changes()
        self.options = attrs.evolve(self.options, **changes)
        if "max_message_size" in changes:
            wire.set_max_message_size(self.websocket, self.options.max_message_size)
        if "idle_timeout" in changes:
            self._liveness.idle_timeout = self.options.idle_timeout
            self._cancel_liveness()
            self._schedule_liveness()

    # ---- closing --------------------------------------------------------------------

    def _queue_close(self, code: int, reason: str) -> None:
        """Queue the close frame behind what is already queued (or alone, if full)."""
        self._closing = True
        close = Close(code, reason)
        try:
            self._queue_nowait(close)
        except trio.WouldBlock:
            if self._outbox is not None:
                self._queued -= _discard_queued(self._outbox)
            self._queue_nowait(close)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _close_for(self, reason: TerminateReason) -> None:
        """Send the close frame ``reason`` calls for, then wait (bounded) for the writer."""
        if not self._closing and _server_closes(reason):
            self._queue_close(reason.close_code, "")
        if self._closing and self._writer_done is not None:
            with trio.move_on_after(self.options.send_timeout + self.options.close_timeout):
                await self._writer_done.wait()

    # ---- the tasks around the loop --------------------------------------------------

    async def _client_message(self, message: str | bytes) -> None:
        """From trio-websocket's reader (our drain): a whole message, in order.

        Once the loop has stopped, messages are dropped: they must not hold up the close.
        """
        if self._serving:
            await self.actor.mailbox.put_input(message)

    async def _client_side_ended(self) -> None:
        """From trio-websocket's reader: its side closed; tell the loop how."""
        self.actor.mailbox.put_system(_Ended(self._reason_for_close()))

    async def _write(self, outbox: trio.MemoryReceiveChannel[_Outgoing], done: trio.Event) -> None:
        """Send queued frames; abort TCP if the client accepts nothing for send_timeout."""
        try:
            async for item in outbox:
                self._queued -= 1
                if isinstance(item, Close):
                    await self._send_close(item)
                    return
                self._writing = True
                try:
                    with trio.move_on_after(self.options.send_timeout) as timer:
                        await self._send(item)
                finally:
                    self._writing = False
                if timer.cancelled_caught:
                    self._fail(Overflow("send timed out: the client stopped reading", 1006))
                    await trio.aclose_forcefully(self.stream)
                    return
        except ConnectionClosed:
            return  # the client is gone; the drain reports how
        finally:
            outbox.close()
            done.set()

    async def _send(self, item: _Outgoing) -> None:
        if item is _FLUSH:
            await wire.send_encoded(self.websocket, b"")
        elif isinstance(item, EncodedFrame):
            if self._raw_frames:
                await wire.send_encoded(self.websocket, item.data)
            else:
                await self.websocket.send_message(item.message)
        elif isinstance(item, Ping):
            await wire.send_encoded(self.websocket, wire.encode_ping(item.data))
        elif isinstance(item, Pong):
            await self.websocket.pong(item.data)
        elif isinstance(item, (Text, Binary)):
            await self.websocket.send_message(item.data)

    async def _send_close(self, close: Close) -> None:
        self.close_code_sent = close.code
        with trio.move_on_after(self.options.close_timeout) as timer:
            await self.websocket.aclose(close.code, close.reason or None)
        if timer.cancelled_caught:
            await trio.aclose_forcefully(self.stream)

    def _reason_for_close(self) -> TerminateReason:
        error = self.websocket.protocol_error
        if error is not None:
            return ProtocolError(error.code, error.reason or "")
        closed = self.websocket.closed
        if closed is None or closed.code == 1006:
            return Remote(1006, "")
        return Remote(int(closed.code), closed.reason or "")

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
        if self._handling or self.actor.mailbox.inputs_waiting:
            # Frames wait for the handler: the client is not idle, we are (Cowboy restarts
            # its idle timer when a frame is handled, not when it arrives).
            self._handled_at = now
        self._liveness.last_received = max(self.stream.last_received, self._handled_at)
        verdict = self._liveness.check(now)
        if verdict is Verdict.IDLE or verdict is Verdict.NO_PONG:
            self._fail(IdleTimeout())
            return
        if verdict is Verdict.SEND_PING:
            try:
                self._queue_nowait(Ping(b"corral"))
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # a full outbox is the send timeout's business
        self._schedule_liveness()


async def serve_connection(
    actor: Actor,
    stream: trio.abc.Stream,
    head_bytes: bytes,
    request: Request,
    handler: WebSocketHandler[Any],
    upgrade: Upgrade,
    options: ConnectionOptions,
) -> TerminateReason:
    """Accept the upgrade ``init`` chose and run the connection; then terminate, once."""
    sink = wire.MessageSink()
    reason: TerminateReason = Shutdown()
    connection: Connection | None = None
    try:
        async with trio.open_nursery() as protocol:
            try:
                websocket = await accept_websocket(
                    protocol,
                    stream,
                    head_bytes,
                    subprotocol=upgrade.subprotocol,
                    extra_headers=upgrade.headers,
                    max_message_size=options.max_message_size,
                    compression=options.compression,
                    sink=sink,
                )
            except ConnectionClosed:  # not upgraded: no terminate, and nothing to report
                logger.debug("%s left before the 101 for %s", _peer(request), request.path)
                protocol.cancel_scope.cancel()
                return Remote(1006)
            connection = Connection(actor, handler, request, options, websocket, upgrade.state)
            sink.bind(connection._client_message, connection._client_side_ended)
            reason = await connection.run(protocol)
            protocol.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True) as cleanup:
            cleanup.deadline = trio.current_time() + options.close_timeout
            await trio.aclose_forcefully(stream)
            if connection is not None:
                await _terminate(connection, reason)
    return reason


async def _terminate(connection: Connection, reason: TerminateReason) -> None:
    """Run the handler's terminate once, log the close line, never raise."""
    request = connection.request
    duration = trio.current_time() - connection.started_at
    code = connection.close_code_sent
    logger.info(
        "closed %s %s code=%s reason=%s after %.3f s",
        _peer(request),
        request.path,
        code if code is not None else _code_on_the_wire(reason),
        reason,
        duration,
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


def _encode(command: Text | Binary | Ping | Pong) -> bytes:
    """The bytes of an unmasked, uncompressed server frame for ``command``."""
    if isinstance(command, Ping):
        return wire.encode_ping(command.data)
    if isinstance(command, Pong):
        return wire.encode_pong(command.data)
    return wire.encode_message(command.data)


def _code_on_the_wire(reason: TerminateReason) -> int:
    """The close code that reached the client when the server sent no close frame itself."""
    if isinstance(reason, (Remote, ProtocolError)):
        return reason.close_code
    return 1006  # killed or aborted: TCP closed without a close frame


def _as_frame(message: str | bytes) -> Frame:
    return Text(message) if isinstance(message, str) else Binary(message)


def _is_shutdown(message: Any) -> bool:
    return isinstance(message, actors.Exit) and message.reason == actors.SHUTDOWN


def _server_closes(reason: TerminateReason) -> bool:
    """Whether the server still owes the client a close frame for this reason."""
    if isinstance(reason, (Remote, ProtocolError)):
        return False
    return not (isinstance(reason, Overflow) and reason.code == 1006)


def _discard_queued(outbox: trio.MemoryReceiveChannel[_Outgoing]) -> int:
    """Empty the outbox; return how many items were dropped."""
    dropped = 0
    while True:
        try:
            outbox.receive_nowait()
        except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
            return dropped
        dropped += 1


def _peer(request: Request) -> str:
    return f"{request.peer[0]}:{request.peer[1]}" if request.peer else "?"

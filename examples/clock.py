"""A ticker per connection, built on the connection's own timers.

    corral serve examples.clock:app --port 8080     # then connect to ws://127.0.0.1:8080/

The client sends ``{"type": "start", "every": s}`` (0.01 <= s <= 3600; a running ticker is
replaced) and gets ``{"type": "started", "every": s}`` then ``{"type": "tick", "seq": n}`` every
``s`` seconds, ``seq`` counting from 1. ``{"type": "stop"}`` answers ``{"type": "stopped", "seq":
last}``, and after it no tick ever arrives: ``cancel_timer`` revokes the pending timeout even if
it is already queued. Ticks are scheduled from their due times, so they do not drift. Bad input
gets ``{"type": "error", "reason": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio

import actors
from actors import Timeout, TimerRef
from server import (
    App,
    ConnectionOptions,
    Frame,
    Request,
    Text,
    Upgrade,
    WebSocketHandler,
    websocket,
)

MIN_EVERY = 0.01
MAX_EVERY = 3600.0
_TICK = "tick"


@attrs.frozen
class Ticker:
    """A connection's ticker: its period and pending timer while running, and the last seq."""

    every: float | None = None
    timer: TimerRef | None = None
    due: float = 0.0
    seq: int = 0


def every_problem(every: Any) -> str | None:
    """Why ``every`` is not a valid period, or None."""
    if isinstance(every, bool) or not isinstance(every, (int, float)):
        return '"every" must be a number of seconds'
    if not MIN_EVERY <= every <= MAX_EVERY:  # NaN fails too
        return f'"every" must be between {MIN_EVERY:g} and {MAX_EVERY:g} seconds'
    return None


def _frame(kind: str, **fields: Any) -> Text:
    return Text(json.dumps({"type": kind, **fields}, separators=(",", ":")))


def _cancel(ticker: Ticker) -> None:
    if ticker.timer is not None:
        actors.cancel_timer(ticker.timer)


def _start(ticker: Ticker, every: float) -> Ticker:
    _cancel(ticker)
    due = trio.current_time() + every
    return Ticker(every=every, timer=actors.start_timer(every, _TICK), due=due, seq=0)


def _next(ticker: Ticker) -> Ticker:
    """Schedule the tick after the one due now, from its due time (no drift)."""
    assert ticker.every is not None
    due = ticker.due + ticker.every
    delay = max(0.0, due - trio.current_time())
    timer = actors.start_timer(delay, _TICK)
    return attrs.evolve(ticker, timer=timer, due=due, seq=ticker.seq + 1)


class Clock(WebSocketHandler[Ticker]):
    """Starts, stops and runs one connection's ticker."""

    def init(self, request: Request) -> Upgrade[Ticker]:
        return Upgrade(Ticker())

    def websocket_handle(self, frame: Frame, state: Ticker) -> tuple[Text, Ticker]:
        try:
            message = json.loads(frame.data) if isinstance(frame, Text) else None
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            return _frame("error", reason='send a JSON object with a "type"'), state
        kind = message.get("type")
        if kind == "start":
            every: Any = message.get("every")
            problem = every_problem(every)
            if problem is not None:
                return _frame("error", reason=problem), state
            return _frame("started", every=every), _start(state, float(every))
        if kind == "stop":
            _cancel(state)
            return _frame("stopped", seq=state.seq), Ticker(seq=state.seq)
        return _frame("error", reason='unknown type: use "start" or "stop"'), state

    def websocket_info(self, message: Any, state: Ticker) -> tuple[Text | None, Ticker]:
        if isinstance(message, Timeout) and state.timer is not None and message.ref is state.timer:
            ticker = _next(state)
            return _frame("tick", seq=ticker.seq), ticker
        return None, state  # not ours, or a timeout from before a stop or restart: ignored


OPTIONS = ConnectionOptions(idle_timeout=90.0, ping_interval=30.0, max_message_size=4096)
"""The client may only listen: pings (answered by any client) keep it from looking idle."""

app = App([websocket("/", Clock(), options=OPTIONS)])

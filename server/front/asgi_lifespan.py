"""An ASGI application's lifespan scope, run by an actor beside the server's connections.

The actor starts after the app's own actors and before the listener, which waits for
``lifespan.startup.complete`` before it accepts; it traps exit signals, so the server's
drain (connections first, in reverse start order) reaches it as ``lifespan.shutdown``. An
app that does not speak lifespan (it raises before answering startup) is served all the same.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio

import actors

from .asgi_rules import ASGI_VERSION, AsgiApp, LifespanOutcome, Message, lifespan_outcome

logger = logging.getLogger("corral.server")


class LifespanFailed(Exception):
    """The ASGI app's lifespan startup failed: the server does not start."""


@attrs.define(eq=False)
class Lifespan:
    """One ASGI app's lifespan: ``child_spec`` runs it; ``ready`` tells the listener when
    (and whether) startup completed; ``state`` is the scope's state, shared with requests."""

    app: AsgiApp
    state: dict[str, Any] = attrs.field(factory=dict)
    failure: LifespanFailed | None = attrs.field(default=None, init=False)
    _started: trio.Event = attrs.field(factory=trio.Event, init=False)
    _answered_startup: bool = attrs.field(default=False, init=False)

    def child_spec(self, shutdown: float) -> actors.ChildSpec:
        """The actor that runs the lifespan scope; ``shutdown`` bounds the app's shutdown."""
        return actors.ChildSpec(
            "asgi-lifespan",
            self._run,
            restart=actors.Restart.TEMPORARY,  # startup runs once, never again
            shutdown=shutdown,
            trap_exits=True,
            kind="asgi-lifespan",
        )

    async def ready(self) -> None:
        """Wait until startup completed (or the app turned out not to do lifespan);
        LifespanFailed if the app reported or raised a failure."""
        await self._started.wait()
        if self.failure is not None:
            raise self.failure

    async def _run(self, actor: actors.Actor) -> None:
        stage = "startup"

        async def receive() -> Message:
            nonlocal stage
            if stage == "startup":
                return {"type": "lifespan.startup"}
            while not isinstance(await actor.receive(), actors.Exit):
                pass
            stage = "shutdown"
            return {"type": "lifespan.shutdown"}

        async def send(message: Message) -> None:
            nonlocal stage
            outcome, text = lifespan_outcome(message, stage)
            if stage == "startup":
                self._answered_startup = True
                if outcome is LifespanOutcome.FAILED:
                    if "\n" in text.strip():  # a traceback (Starlette's): logged whole
                        logger.error("the ASGI app's startup failed:\n%s", text)
                    last = text.strip().splitlines()[-1] if text.strip() else "(no reason)"
                    self.failure = LifespanFailed(f"the ASGI app's startup failed: {last}")
                stage = "running"
                self._started.set()
            elif outcome is LifespanOutcome.FAILED:
                logger.error("the ASGI app's shutdown failed: %s", text)

        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if not self._answered_startup:
                logger.info("the ASGI app does not do lifespan (%r): serving it without", exc)
            elif self.failure is None:
                logger.exception("the ASGI app's lifespan failed")
        finally:
            self._started.set()

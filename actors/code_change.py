"""Moving one long-lived object to the code loaded since it last ran: its ``code_change``.

A GenServer's loop and a WebSocket connection call ``change_code`` before their next event
once an upgrade has happened (``code.CODE.generation`` moved on): the object's new
``code_change(old_version, state, extra)`` turns the state into what the new code expects. If it
raises, the object stays on the code it ran (a copy of it with the old methods), with its state
untouched: counted and logged, never dropped. ``change_code_now`` does the same without
awaiting, for a caller that must not (a connection taking a message inline), unless the
``code_change`` is a coroutine function.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from .code import CODE, ClassChange, fall_back

logger = logging.getLogger("corral.upgrade")


def change_code_now(obj: Any, state: Any, since: int, who: object) -> tuple[Any, Any] | None:
    """``change_code`` for a plain ``code_change``; None if it is ``async def`` (await
    ``change_code`` then)."""
    change = CODE.change_for(type(obj), since)
    if change is None:
        return obj, state
    if inspect.iscoroutinefunction(obj.code_change):
        return None
    try:
        new_state = obj.code_change(change.old_version, state, CODE.extra)
    except Exception as exc:
        return _stays(obj, state, change, who, exc)
    CODE.code_changes += 1
    return obj, new_state


async def change_code(obj: Any, state: Any, since: int, who: object) -> tuple[Any, Any]:
    """``(obj, state)`` moved from the code of generation ``since`` to today's: the same
    object with the state its ``code_change`` returned, or, if that raised, an object on the
    old code with ``state`` as it was. ``who`` names the actor or connection in the log."""
    moved = change_code_now(obj, state, since, who)
    if moved is not None:
        return moved
    change = CODE.change_for(type(obj), since)
    assert change is not None  # change_code_now answered None: there is one
    try:
        new_state = await obj.code_change(change.old_version, state, CODE.extra)
    except Exception as exc:
        return _stays(obj, state, change, who, exc)
    CODE.code_changes += 1
    return obj, new_state


def _stays(
    obj: Any, state: Any, change: ClassChange, who: object, exc: Exception
) -> tuple[Any, Any]:
    CODE.code_change_failures += 1
    logger.error(
        "%s stays on version %s: code_change to %s raised",
        who,
        change.old_version,
        change.new_version,
        exc_info=exc,
    )
    return fall_back(obj, change), state

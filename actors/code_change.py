"""Moving one long-lived object to the code loaded since it last ran: its ``code_change``.

A GenServer's loop and a WebSocket connection call ``change_code`` before their next event
once an upgrade has happened (``code.CODE.generation`` moved on): the object's new
``code_change(old_version, state, extra)`` turns the state into what the new code expects. If it
raises, the object stays on the code it ran (a copy of it with the old methods), with its state
untouched: counted and logged, never dropped.
"""

from __future__ import annotations

import logging
from types import CoroutineType
from typing import Any

from .code import CODE, fall_back

logger = logging.getLogger("corral.upgrade")


async def change_code(obj: Any, state: Any, since: int, who: object) -> tuple[Any, Any]:
    """``(obj, state)`` moved from the code of generation ``since`` to today's: the same
    object with the state its ``code_change`` returned, or, if that raised, an object on the
    old code with ``state`` as it was. ``who`` names the actor or connection in the log."""
    change = CODE.change_for(type(obj), since)
    if change is None:
        return obj, state
    try:
        new_state = obj.code_change(change.old_version, state, CODE.extra)
        if type(new_state) is CoroutineType:
            new_state = await new_state
    except Exception as exc:
        CODE.code_change_failures += 1
        logger.error(
            "%s stays on version %s: code_change to %s raised",
            who,
            change.old_version,
            change.new_version,
            exc_info=exc,
        )
        return fall_back(obj, change), state
    CODE.code_changes += 1
    return obj, new_state

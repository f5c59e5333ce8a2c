"""The small FastAPI app the ASGI benchmark serves (``asgi.py``), and corral's echo with it
mounted (``echo_app``, for the WebSocket figures with and without an ASGI app beside them).

``GET /items/{item_id}?q=...`` answers ``{"item_id": 3, "q": "x"}``: routing, a path and a
query parameter validated by FastAPI, a JSON body; what a typical small endpoint does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.echo import app as plain_echo  # noqa: E402

api = FastAPI()


@api.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None) -> dict[str, int | str | None]:
    """One item, as JSON."""
    return {"item_id": item_id, "q": q}


echo_app = attrs.evolve(plain_echo, asgi=api)
"""corral's echo example with ``api`` answering every other HTTP request."""

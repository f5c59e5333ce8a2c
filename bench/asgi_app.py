"""The small FastAPI app the ASGI benchmark serves (``asgi.py``), and corral's echo and fan-out
servers as ``corral serve`` runs them, without and with it mounted (``echo_app``,
``fanout_app``, ``fanout_asgi_app``: the WebSocket figures with and without an ASGI app).

``GET /items/{item_id}?q=...`` answers ``{"item_id": 3, "q": "x"}``: routing, a path and a
query parameter validated by FastAPI, a JSON body; what a typical small endpoint does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout_server import corral_app  # noqa: E402

from examples.echo import app as plain_echo  # noqa: E402

api = FastAPI()


@api.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None) -> dict[str, int | str | None]:
    """One item, as JSON."""
    return {"item_id": item_id, "q": q}


echo_app = attrs.evolve(plain_echo, asgi=api)
"""corral's echo example with ``api`` answering every other HTTP request."""

fanout_app = corral_app(20_000)
"""``fanout_server.py corral``'s app: subscribers at ``/sub``, a publisher at ``/pub``."""
fanout_asgi_app = attrs.evolve(fanout_app, asgi=api)
"""The same with ``api`` mounted."""

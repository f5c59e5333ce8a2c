"""The chat and a FastAPI app on one port, started with one command:

    corral serve examples.fastapi_chat:app --port 8080

corral serves the chat (its page at ``/chat/``, its WebSocket at ``/ws/<room>``) and
``/healthz``; FastAPI answers every other HTTP request: ``POST /api/rooms/<room>/messages``
with ``{"nick": ..., "text": ...}`` says the text to everyone in the room now,
``GET /api/rooms/<room>`` tells how many are connected, ``/docs`` documents both.

State goes both ways in one process: the FastAPI endpoints reach corral's actors (``broadcast``
to a room's group, ``actors.members``; from ``async def`` endpoints, which run on corral's
trio loop), and corral's ``/healthz`` reads the FastAPI app's own ``api.state``.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

import actors
from server import App, Request, Response, broadcast, http_route, static

from .chat import make_app, protocol
from .chat.app import STATIC
from .chat.room import group_of

api = FastAPI(title="chat API")
api.state.posts = 0
"""Messages posted through the API since start-up (corral's ``/healthz`` reports them)."""


class Post(BaseModel):
    """A message to say in a room."""

    nick: str
    text: str


def _checked_room(room: str) -> str:
    try:
        return protocol.room_name(room)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@api.post("/api/rooms/{room}/messages", status_code=202)
async def post_message(room: str, post: Post) -> dict[str, int]:
    """Say ``post.text`` as ``post.nick`` to everyone in ``room`` now (an announcement:
    the room's history does not keep it); answers how many connections took it."""
    problem = protocol.nick_problem(post.nick) or protocol.text_problem(post.text)
    if problem is not None:
        raise HTTPException(422, problem)
    said = protocol.Said(post.nick, post.text, protocol.now())
    delivered = broadcast(group_of(_checked_room(room)), protocol.said(said))
    api.state.posts += 1
    return {"delivered": delivered}


@api.get("/api/rooms/{room}")
async def room_info(room: str) -> dict[str, str | int]:
    """How many connections are in ``room`` now."""
    return {"room": room, "connected": len(actors.members(group_of(_checked_room(room))))}


@api.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/chat/")


def health(request: Request) -> Response:
    """corral's own route, reading the FastAPI app's state."""
    return Response.text(200, f"ok: {api.state.posts} messages posted through the API")


def make_combined_app() -> App:
    """The chat's WebSocket route and its page under ``/chat/``, with ``api`` beside them."""
    chat = make_app()
    sockets = [route for route in chat.routes if route.kind == "websocket"]
    return App(
        [*sockets, http_route("/healthz", health), static("/chat", STATIC)],
        children=chat.children,
        options=chat.options,
        asgi=api,
    )


app = make_combined_app()

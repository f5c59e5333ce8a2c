"""A plain Starlette app for ``corral serve tests.server.asgi_site:app`` (its lifespan says
so in the log; ``broken`` fails its startup)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

logger = logging.getLogger("corral.server")


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    logger.warning("site startup")
    yield
    logger.warning("site shutdown")


@asynccontextmanager
async def _failing(app: Starlette) -> AsyncIterator[None]:
    raise RuntimeError("no database")
    yield


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello {request.query_params.get('name', '')}")


app = Starlette(routes=[Route("/hello", _hello)], lifespan=_lifespan)
broken = Starlette(routes=[Route("/hello", _hello)], lifespan=_failing)

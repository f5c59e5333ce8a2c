"""HTTP handlers for files under a directory and for a health check.

``StaticFiles`` is meant for a route ending in ``[...]`` (``/static/[...]``): the router has
already percent-decoded the remaining segments into ``request.path_info``, so an encoded slash
arrives inside one segment, where it is refused. Every candidate path is resolved (symlinks
followed) and must stay under the resolved root; hidden names (leading ``.``) are never served.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

import attrs
import trio

from .http import Request, Response, method_not_allowed, not_found

_READ_METHODS = ("GET", "HEAD")


def _resolved_directory(value: str | Path) -> Path:
    return Path(value).resolve()


@attrs.frozen
class StaticFiles:
    """Serve files from ``root``; a directory serves its ``index`` file; 404 for anything else."""

    root: Path = attrs.field(converter=_resolved_directory)
    index: str = "index.html"

    async def __call__(self, request: Request) -> Response:
        """GET/HEAD the file named by ``request.path_info`` (the root's index when empty)."""
        if request.method not in _READ_METHODS:
            return method_not_allowed(_READ_METHODS)
        segments = request.path_info or ()
        if not all(_safe_segment(segment) for segment in segments):
            return not_found()
        found = await trio.to_thread.run_sync(self._read, segments)
        if found is None:
            return not_found()
        path, body = found
        return Response(
            200, [("Content-Type", content_type(path)), ("X-Content-Type-Options", "nosniff")], body
        )

    def _read(self, segments: tuple[str, ...]) -> tuple[Path, bytes] | None:
        """The resolved file and its bytes, or None if missing or outside the root (blocking)."""
        candidate = self.root.joinpath(*segments)
        try:
            resolved = candidate.resolve(strict=True)
            if resolved.is_dir():
                resolved = (resolved / self.index).resolve(strict=True)
            if not resolved.is_relative_to(self.root) or not resolved.is_file():
                return None
            return resolved, resolved.read_bytes()
        except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
            return None


def _safe_segment(segment: str) -> bool:
    """Refuse empty, hidden (``.``, ``..``, dotfiles) and separator- or NUL-bearing segments."""
    return bool(segment) and not segment.startswith(".") and not any(c in segment for c in "/\\\0")


def content_type(path: Path) -> str:
    """The ``Content-Type`` for ``path`` by extension; text types are declared UTF-8."""
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "image/svg+xml"):
        return f"{guessed}; charset=utf-8"
    return guessed


def health_check(request: Request) -> Response:
    """``GET /healthz`` → 200 ``ok``: the process accepts and answers connections."""
    if request.method not in _READ_METHODS:
        return method_not_allowed(_READ_METHODS)
    return Response.text(200, "ok")

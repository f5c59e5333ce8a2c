"""A fast path for the plain request heads nearly every client sends, h11 keeping the rest.

``parse_simple_head`` takes a complete head only when every line is strictly simple: an
HTTP/1.1 request line, ``name: value`` fields of visible ASCII, exactly one ``Host``, and no
``Content-Length`` or ``Transfer-Encoding`` (framing is h11's business). Each of those heads
is one h11 parses the same way, into the same fields: anything else (obsolete folding,
bytes outside ASCII, bare line feeds, a body, an error to report) returns None, and the
caller asks h11. No socket here: bytes in, fields out.
"""

from __future__ import annotations

import re

import attrs

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?)[ \t]*")
_FRAMING = frozenset((b"content-length", b"transfer-encoding"))
"""Fields h11 interprets (a body's length): their heads always go to h11."""


@attrs.frozen
class SimpleHead:
    """A request head's fields as h11 would give them: names lower-cased, values without
    their surrounding whitespace; ``rest`` is what came after the head."""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    rest: bytes


def parse_simple_head(data: bytes | bytearray) -> SimpleHead | None:
    """The head at the start of ``data`` if it is complete and strictly simple, else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(data[:end]).split(b"\r\n")
    request = _REQUEST_LINE.fullmatch(lines[0])
    if request is None:
        return None
    headers = []
    hosts = 0
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:
            return None
        name = field[1].lower()
        if name in _FRAMING:
            return None
        hosts += name == b"host"
        headers.append((name, field[2]))
    if hosts != 1:
        return None
    return SimpleHead(request[1], request[2], tuple(headers), bytes(data[end + 4 :]))

"""What holds a server process's memory, read from inside it (the server side of the benches).

``heap_report()`` is one JSON-ready record: the RSS split by kind of mapping (/proc/self/smaps:
the brk heap, anonymous mappings, which hold pymalloc's arenas, glibc's mmapped chunks and
thread arenas, and files), glibc malloc's own account (``mallinfo2``: bytes in use, bytes free
it keeps), Python's live small-object blocks (``sys.getallocatedblocks``), and the live objects
of corral's and trio's classes by type (after the collector's full pass: a Connection or
Session left here after every client has gone would be a leak). Linux and glibc only.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import time
from collections import Counter
from typing import Any

from server.ops.heap_trim import resident_bytes

TRACKED_PACKAGES = ("server", "actors", "examples", "trio", "wsproto")
"""Packages whose live objects the report counts by type."""
PER_CONNECTION = ("server.engine.connection.Connection", "server.engine.session.Session")
"""Types one per WebSocket connection: none may outlive its connection."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_account() -> dict[str, int]:
    """glibc's ``mallinfo2``: heap bytes from the system (brk and thread arenas), mmapped
    chunks, bytes in use, bytes free inside the heap, and the releasable top."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {
        "heap": info.arena,
        "mmapped": info.hblkhd,
        "in_use": info.uordblks,
        "free": info.fordblks,
        "top": info.keepcost,
    }


def resident_by_mapping() -> dict[str, int]:
    """Resident bytes by kind of mapping: ``heap`` ([heap]), ``anonymous``, ``files``, ``other``."""
    totals: Counter[str] = Counter()
    kind = "other"
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(maxsplit=6)
            if "-" in first[0] and len(first) >= 5 and not first[0].endswith(":"):
                name = first[5].strip() if len(first) > 5 else ""
                kind = (
                    "heap"
                    if name == "[heap]"
                    else "anonymous"
                    if not name
                    else "files"
                    if name.startswith("/")
                    else "other"
                )
            elif first[0] == "Rss:":
                totals[kind] += int(first[1]) * 1024
    return dict(totals)


def live_objects() -> dict[str, int]:
    """Live objects of ``TRACKED_PACKAGES``' classes by qualified type name (those the
    collector tracks and ``gc.freeze`` has not set aside), most first."""
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        if kind.__module__.split(".", 1)[0] in TRACKED_PACKAGES:
            counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return dict(counts.most_common())


def heap_report(*, collect: bool = True) -> dict[str, Any]:
    """The whole record; with ``collect``, after a full ``gc.collect()`` (timed)."""
    started = time.perf_counter()
    if collect:
        gc.collect()
    gc_seconds = time.perf_counter() - started
    objects = live_objects()
    return {
        "rss": resident_bytes(),
        "mappings": resident_by_mapping(),
        "malloc": malloc_account(),
        "python_blocks": sys.getallocatedblocks(),
        "gc_seconds": gc_seconds,
        "objects": objects,
        "per_connection_left": {name: objects.get(name, 0) for name in PER_CONNECTION},
    }

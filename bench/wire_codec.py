"""The cluster wire's own cost: encoding and decoding one envelope, data-only against pickle.

Three envelopes a cluster sends most: a broadcast frame for another node's group (what
``server.broadcast`` publishes once per node), a send of a small tuple to an address, and a
send of an app's registered attrs message (the chat's ``Say``). For each, microseconds per
encode and per decode (framed, checked against the envelope shapes) on the wire as it is, and
the same envelope through ``pickle`` (what the wire used to do, with no checks) for reference.
Median of ``--rounds`` timings of ``--count`` envelopes each, in this one process.

Run: ``python bench/wire_codec.py [--count N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Address  # noqa: E402
from actors import backend_wire as wire  # noqa: E402
from examples.chat.room import Say  # noqa: E402

_LENGTH = struct.Struct(">I")
ROOM = Address("node-a:1234:abcdef", 42, "room")
ENVELOPES: dict[str, tuple[Any, ...]] = {
    "broadcast frame": (wire.PUBLISH, "corral.frames", "chat:lobby", '{"type":"said"}' + "x" * 90),
    "send tuple": (wire.SEND, ROOM, ("n", 12345)),
    "send attrs Say": (wire.SEND, ROOM, Say(Address("node-b:99:fedcba", 7), "hello " * 10)),
}


def _pickled(envelope: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _unpickled(chunk: bytes) -> Any:
    return pickle.loads(memoryview(chunk)[_LENGTH.size :])


def _per_call_us(call: Callable[[], Any], count: int, rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            call()
        timings.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(timings)


def _line(name: str, envelope: tuple[Any, ...], count: int, rounds: int) -> str:
    chunk, old = wire.encode(envelope), _pickled(envelope)
    assert list(wire.decode(chunk, wire.ENVELOPES)) == [envelope]
    encode = _per_call_us(lambda: wire.encode(envelope), count, rounds)
    encode_old = _per_call_us(lambda: _pickled(envelope), count, rounds)
    decode = _per_call_us(lambda: list(wire.decode(chunk, wire.ENVELOPES)), count, rounds)
    decode_old = _per_call_us(lambda: _unpickled(old), count, rounds)
    return (
        f"{name:<16} {len(chunk):>8} / {len(old):<6} "
        f"{encode:>8.2f} / {encode_old:.2f} ({encode / encode_old:.2f}x)  "
        f"{decode:>8.2f} / {decode_old:.2f} ({decode / decode_old:.2f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(
        f"{'envelope':<16} {'bytes new/pickle':>17} {'encode us new/pickle':>24} "
        f"{'decode us new/pickle':>24}"
    )
    for name, envelope in ENVELOPES.items():
        print(_line(name, envelope, args.count, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The client frames' parse cost in ``Session`` alone, per message, on one checkout or A/B.

No socket and no scheduler: each tree's ``server.engine.session`` in a fresh process is fed 32-byte
masked text frames (one per read, and 50 per read) and a text message in 12 two-byte
fragments, then asked for its events. Each figure is the best of 300 short batches, so the
time slices other processes take on a shared machine mostly drop out; trees alternate, round
after round, in one sitting.

    python bench/session_parse.py --trees /path/to/main . --rounds 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

_BATCHES = 300


def _frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    key = b"\x01\x02\x03\x04"
    head = bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)])
    return head + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def _measure(tree: str) -> str:
    """Run in the child process: the three figures for ``tree``'s Session."""
    sys.path.insert(0, tree)
    from server.engine.session import NEED_DATA, Session

    def best(data: bytes, reads: int, messages: int) -> float:
        times = []
        for _ in range(_BATCHES):
            session = Session(max_message_size=2**20)
            started = time.perf_counter()
            for _ in range(reads):
                session.receive_data(data)
                while session.next_event() is not NEED_DATA:
                    pass
            times.append(time.perf_counter() - started)
        return min(times) / messages * 1e9

    one = _frame(0x1, b"x" * 32)
    fragments = _frame(0x1, b"ab", fin=False) + _frame(0x0, b"cd", fin=False) * 10
    fragments += _frame(0x0, b"ef")
    return (
        f"{Path(tree).name:>14}: one frame per read {best(one, 500, 500):6.0f} ns/message; "
        f"50 per read {best(one * 50, 10, 500):6.0f}; "
        f"a message in 12 fragments {best(fragments, 50, 50):8.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trees", nargs="+", type=Path, default=[Path(__file__).parents[1]])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(_measure(args.child), flush=True)
        return 0
    for _ in range(args.rounds):
        for tree in args.trees:
            child = [sys.executable, __file__, "--child", str(tree.resolve())]
            subprocess.run(child, check=True, cwd=tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())

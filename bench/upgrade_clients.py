"""The upgrade benchmark's stream clients: plain sockets and epoll, no trio, no wsproto.

A process opens ``--count`` WebSocket connections to ``/stream`` (``BATCH`` handshakes at a
time), prints ``ready``, then reads until a line arrives on stdin, keeping each read with its
time. Each frame is ``<version> <tick> <count>``: the code version that sent it, the ticker's
sequence number and the connection's own count of ticks (its state, which must survive
``code_change``). Once the reading is over it checks, per connection, that ticks follow one
another (a gap is a lost message) and that the count goes up by one each time, and notes the
time of its first frame from version 2. It prints one JSON line: connections, frames, gaps,
count breaks, sockets the server closed, the first-version-2 times (monotonic ns) and its CPU
seconds from ``ready`` on (the handshakes not counted).

Run (by bench/upgrade.py): ``python bench/upgrade_clients.py --port N --count K``.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time

from wsclient import BenchError, connect, handshake, split_frames

BATCH = 200


class Stream:
    """One connection: what it read, with each read's time, checked once the run is over (a
    read costs the client little more than its syscall)."""

    __slots__ = ("sock", "reads", "upgraded", "tick", "count", "frames", "gaps", "breaks", "v2")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads: list[tuple[int, bytes]] = []
        self.upgraded = False
        self.tick = self.count = -1
        self.frames = self.gaps = self.breaks = 0
        self.v2 = 0

    def take_upgrade(self, data: bytes, now: int) -> None:
        """The handshake's answer (the 101), and whatever came after it in the same read."""
        end = data.find(b"\r\n\r\n")
        if not data.startswith(b"HTTP/1.1 101") or end < 0:
            raise BenchError(f"not upgraded: {data[:40]!r}")
        self.upgraded = True
        if len(data) > end + 4:
            self.reads.append((now, data[end + 4 :]))

    def check(self) -> None:
        """Split the reads into frames and check each (see the module docstring)."""
        buffer = bytearray()
        for now, data in self.reads:
            buffer += data
            for payload in split_frames(buffer):
                version, tick, count = payload.split()
                tick_n, count_n = int(tick), int(count)
                if self.tick >= 0 and tick_n != self.tick + 1:
                    self.gaps += 1
                if self.count >= 0 and count_n != self.count + 1:
                    self.breaks += 1
                self.tick, self.count = tick_n, count_n
                self.frames += 1
                if version == b"2" and not self.v2:
                    self.v2 = now
        self.reads.clear()


def run(port: int, count: int) -> dict[str, object]:
    poll = select.epoll()
    streams: dict[int, Stream] = {}
    for first in range(0, count, BATCH):
        for _ in range(min(BATCH, count - first)):
            sock = connect(port)
            sock.sendall(handshake(port, "/stream"))
            sock.setblocking(False)
            streams[sock.fileno()] = Stream(sock)
            poll.register(sock.fileno(), select.EPOLLIN)
        _read(poll, streams, lambda: all(s.upgraded for s in streams.values()), 60.0)
    print("ready", flush=True)
    start = time.process_time()
    stdin = sys.stdin.fileno()
    poll.register(stdin, select.EPOLLIN)
    closed = _read(poll, streams, None, None, stdin=stdin)
    cpu = time.process_time() - start
    for stream in streams.values():
        stream.sock.close()
        stream.check()
    values = list(streams.values())
    return {
        "connections": len(values),
        "frames": sum(s.frames for s in values),
        "gaps": sum(s.gaps for s in values),
        "breaks": sum(s.breaks for s in values),
        "closed": closed,
        "v2": [s.v2 for s in values],
        "cpu": cpu,
    }


def _read(
    poll: select.epoll,
    streams: dict[int, Stream],
    done: object,
    timeout: float | None,
    stdin: int = -1,
) -> int:
    """Read until ``done()`` (or a line on ``stdin``); the number of sockets that closed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    closed = 0
    clock = time.monotonic_ns
    while not (callable(done) and done()):
        if deadline is not None and time.monotonic() > deadline:
            raise BenchError("connections did not upgrade in time")
        for fd, _ in poll.poll(1.0):
            if fd == stdin:
                return closed
            stream = streams[fd]
            try:
                data = stream.sock.recv(262144)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                poll.unregister(fd)
                closed += 1
                continue
            if stream.upgraded:
                stream.reads.append((clock(), data))
            else:
                stream.take_upgrade(data, clock())
    return closed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.port, args.count)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

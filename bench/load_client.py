"""The load client every server is measured with: one process per role, driven over stdio.

Built on ``wsclient`` (plain sockets and epoll, masked frames prebuilt once), so a round trip
costs the client a syscall or two and a few microseconds of Python. A driver starts as many
of these processes as it needs; each prints one JSON line per event on stdout and takes
one-word commands on stdin.

- ``echo``: opens ``--connections`` upgraded connections (from ``--source`` if given) and says
  ``ready``; on ``go`` warms up, then keeps exactly ``--depth`` 32-byte text messages (default
  one) in flight per connection for ``--seconds`` (sleeping ``--nap`` s between passes over
  the ready connections, default none), checks every echo byte for byte, and reports its
  round trips and its own CPU seconds.
- ``hold``: opens ``--count`` connections in batches of 250 (each upgraded and echoing one
  message), optionally from a ``--source`` address, reports the handshakes' time and CPU, then
  holds them (a ping on each every 20 s, to stay under idle timeouts). Commands: ``check``
  (how many are still open), ``ping`` (ping them all now: the next keepalive is 20 s off),
  ``close`` (a close frame on each, then wait for the server to
  close them all), end of input (RST them all and exit).
- ``probe``: one connection echoing one message every ``--interval`` s, latency of each round
  trip noted, until ``stop``; then reports the latencies.

Run by the benches, e.g. ``python bench/load_client.py echo --port N --connections 50``.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from wsclient import (
    CLOSE_1000,
    PING,
    BenchError,
    abort,
    client_frame,
    connect,
    handshake,
    read_upgrade,
    send_and_expect,
    server_frame,
)

PAYLOAD = bytes(range(65, 97))
"""The 32-byte text message every echo carries."""
FRAME, REPLY = client_frame(PAYLOAD), server_frame(PAYLOAD)
BATCH = 250
"""Connections whose handshakes are in flight at once: well under any listen backlog."""
KEEPALIVE = 20.0
"""Seconds between pings on held connections (corral's idle timeout is 60 s)."""
HANDSHAKE_TIMEOUT = 30.0
"""A connection not upgraded within this long counts as failed."""
STALL_TIMEOUT = 120.0
"""How long a held connection waits for an answer (an echo, a pong) before the run fails: a
server on a busy machine answers thousands of pings slowly, and that is not a failure."""


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout for the driver."""
    print(json.dumps({"event": event, **fields}), flush=True)


def command(timeout: float | None) -> str | None:
    """The driver's next command ('' at end of input), or None if none came in ``timeout``."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return sys.stdin.readline().strip() if ready else None


# ---- echo ---------------------------------------------------------------------------------


class EchoLoad:
    """Upgraded sockets, each with ``depth`` echoes in flight, driven by one epoll.

    With ``depth`` above 1 the client sends that many frames in one write and answers each
    read's replies with as many frames in one write; with a ``nap`` (seconds slept after each
    pass over the ready connections) the replies pile up meanwhile and each read takes many:
    a round trip then costs the client a fraction of a syscall, so that the server, not the
    client, sets the rate.
    """

    def __init__(
        self,
        port: int,
        connections: int,
        *,
        depth: int = 1,
        source: str | None = None,
        path: str = "/",
        nap: float = 0.0,
    ) -> None:
        self.sockets: dict[int, socket.socket] = {}
        self.partial: dict[int, bytes] = {}
        self.trips = 0
        self.depth, self.nap = depth, nap
        self.poller = select.epoll()
        request = handshake(port, path)
        try:
            for _ in range(connections):
                sock = connect(port, source=source)
                sock.sendall(request)
                if read_upgrade(sock):
                    raise BenchError("the server sent a frame before the client did")
                sock.setblocking(False)
                self.sockets[sock.fileno()] = sock
                self.partial[sock.fileno()] = b""
                self.poller.register(sock.fileno(), select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        """Put ``depth`` messages in flight on every connection."""
        for sock in self.sockets.values():
            sock.send(FRAME * self.depth)

    def run_until(self, deadline: float) -> None:
        """Echo until the clock reaches ``deadline``; every reply checked byte for byte."""
        sockets, partial, poll, nap = self.sockets, self.partial, self.poller.poll, self.nap
        size, clock, trips = len(REPLY), time.perf_counter, 0
        replies = {n * size: REPLY * n for n in range(1, self.depth + 1)}
        frames = {n * size: FRAME * n for n in range(1, self.depth + 1)}
        try:
            while clock() < deadline:
                for fd, _ in poll(0.1):
                    sock = sockets[fd]
                    data = sock.recv(65536)
                    if partial[fd] or replies.get(len(data)) != data:  # the rare case
                        if not data:
                            raise BenchError("the server closed a connection mid-round")
                        got = partial[fd] + data
                        whole = len(got) - len(got) % size
                        partial[fd] = got[whole:]
                        data = got[:whole]
                        if not data:
                            continue
                        if replies.get(len(data)) != data:
                            raise BenchError(f"wrong echo: expected {REPLY!r}..., got {data!r}")
                    trips += len(data) // size
                    sock.send(frames[len(data)])
                if nap:
                    time.sleep(nap)
        finally:
            self.trips += trips

    def close(self) -> None:
        for sock in self.sockets.values():
            abort(sock)
        self.poller.close()


def run_echo(args: argparse.Namespace) -> None:
    load = EchoLoad(
        args.port,
        args.connections,
        depth=args.depth,
        source=args.source,
        path=args.path,
        nap=args.nap,
    )
    try:
        emit("ready")
        if command(60.0) != "go":
            raise BenchError("no go from the driver")
        load.start()
        load.run_until(time.perf_counter() + args.warmup)
        trips, cpu, start = load.trips, time.process_time(), time.perf_counter()
        load.run_until(start + args.seconds)
        wall = time.perf_counter() - start
        emit("done", trips=load.trips - trips, wall=wall, cpu=time.process_time() - cpu)
    finally:
        load.close()


# ---- hold ---------------------------------------------------------------------------------


class Holder:
    """Idle upgraded connections, opened in batches and kept alive with pings."""

    def __init__(self, port: int, source: str | None) -> None:
        self.port, self.source = port, source
        self.sockets: list[socket.socket] = []
        self.failed = 0
        self.pinged = time.monotonic()

    def open(self, count: int) -> tuple[float, float]:
        """Open ``count`` connections; return the seconds and client CPU their handshakes took.

        A connection the server does not upgrade (it is full, out of descriptors...) is
        counted in ``failed``; the rest of its batch goes on.
        """
        request, seconds, cpu = handshake(self.port), 0.0, 0.0
        for first in range(0, count, BATCH):
            start, cpu0 = time.perf_counter(), time.process_time()
            fresh = self._handshake_batch(request, min(BATCH, count - first))
            seconds += time.perf_counter() - start
            cpu += time.process_time() - cpu0
            send_and_expect(fresh, FRAME, REPLY)
            self.sockets += fresh
            if time.monotonic() - self.pinged > KEEPALIVE:
                self.ping()
        return seconds, cpu

    def _handshake_batch(self, request: bytes, size: int) -> list[socket.socket]:
        sent = []
        for _ in range(size):
            try:
                sock = connect(self.port, source=self.source, timeout=HANDSHAKE_TIMEOUT)
                sock.sendall(request)
                sent.append(sock)
            except OSError:
                self.failed += 1
        upgraded = []
        for sock in sent:
            try:
                if read_upgrade(sock):
                    raise BenchError("the server sent a frame before the client did")
                sock.settimeout(STALL_TIMEOUT)
                upgraded.append(sock)
            except (OSError, BenchError):
                abort(sock)
                self.failed += 1
        return upgraded

    def ping(self) -> None:
        """A ping on every connection, each pong read (the server must still answer)."""
        send_and_expect(self.sockets, PING, server_frame(b"", 0xA))
        self.pinged = time.monotonic()

    def still_open(self) -> int:
        """How many connections the server has not closed (nothing readable, no EOF)."""
        alive = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                alive += 1 if sock.recv(1) else 0  # a byte (a ping?) still means open
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return alive

    def close_all(self, timeout: float) -> int:
        """Send a close frame on every connection at once, then wait until the server has
        closed each (EOF); return how many it closed within ``timeout``."""
        poller = select.epoll()
        by_fd = {sock.fileno(): sock for sock in self.sockets}
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                sock.send(CLOSE_1000)
                poller.register(sock.fileno(), select.EPOLLIN)
            except OSError:
                pass
        closed, deadline = 0, time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and closed < len(by_fd):
            for fd, _ in poller.poll(min(left, 1.0)):
                try:
                    data = by_fd[fd].recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    poller.unregister(fd)
                    closed += 1
        poller.close()
        self.abort_all()
        return closed

    def abort_all(self) -> None:
        for sock in self.sockets:
            abort(sock)
        self.sockets = []


def run_hold(args: argparse.Namespace) -> None:
    holder = Holder(args.port, args.source)
    try:
        seconds, cpu = holder.open(args.count)
        holder.ping()
        emit("ready", opened=len(holder.sockets), failed=holder.failed, seconds=seconds, cpu=cpu)
        actions: dict[str, Callable[[], None]] = {
            "check": lambda: emit("alive", alive=holder.still_open()),
            "ping": lambda: (holder.ping(), emit("pinged")),
            "close": lambda: _close_and_report(holder, args.close_timeout),
        }
        while (line := command(max(1.0, KEEPALIVE - (time.monotonic() - holder.pinged)))) != "":
            if line is None:
                holder.ping()
            elif line in actions:
                actions[line]()
            else:
                raise BenchError(f"unknown command {line!r}")
    finally:
        holder.abort_all()


def _close_and_report(holder: Holder, timeout: float) -> None:
    count, start = len(holder.sockets), time.perf_counter()
    closed = holder.close_all(timeout)
    emit("closed", count=count, closed=closed, seconds=time.perf_counter() - start)


# ---- probe --------------------------------------------------------------------------------


def run_probe(args: argparse.Namespace) -> None:
    sock = connect(args.port, timeout=HANDSHAKE_TIMEOUT)
    try:
        sock.sendall(handshake(args.port))
        if read_upgrade(sock):
            raise BenchError("the server sent a frame before the client did")
        sock.settimeout(STALL_TIMEOUT)  # a stall is what is measured, not a failure
        emit("ready")
        latencies: list[float] = []
        clock = time.perf_counter
        while command(args.interval) is None:
            start = clock()
            send_and_expect([sock], FRAME, REPLY)
            latencies.append(clock() - start)
        emit("latencies", seconds=latencies)
    finally:
        abort(sock)


def main(argv: list[str] | None = None) -> int:
    """``load_client.py echo|hold|probe --port N [...]``; exit 1 if the load broke."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    echo = roles.add_parser("echo", help="closed-loop echo on N connections")
    echo.add_argument("--connections", type=int, default=1)
    echo.add_argument("--warmup", type=float, default=0.3)
    echo.add_argument("--seconds", type=float, default=2.0)
    echo.add_argument("--depth", type=int, default=1, help="messages in flight per connection")
    echo.add_argument("--source", help="local address to connect from (e.g. 127.0.0.2)")
    echo.add_argument("--path", default="/", help="the echo's path")
    echo.add_argument("--nap", type=float, default=0.0, help="seconds to sleep between passes")
    hold = roles.add_parser("hold", help="open N idle connections and hold them")
    hold.add_argument("--count", type=int, required=True)
    hold.add_argument("--source", help="local address to connect from (e.g. 127.0.0.2)")
    hold.add_argument("--close-timeout", type=float, default=60.0)
    probe = roles.add_parser("probe", help="one connection's echo latency, paced")
    probe.add_argument("--interval", type=float, default=0.005)
    for role in (echo, hold, probe):
        role.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    run = {"echo": run_echo, "hold": run_hold, "probe": run_probe}[args.role]
    try:
        run(args)
    except (BenchError, OSError) as exc:
        print(f"load_client {args.role}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fan-out benchmark's clients: plain sockets and epoll, no trio, no wsproto.

A subscriber process opens ``--count`` WebSocket connections to ``/sub`` (in batches, so the
listen backlog never overflows), waits for each one's ``joined`` frame, prints ``ready``, then
reads until every connection has ``--messages`` frames or ``--timeout`` passes. It notes the
monotonic time of each read (CLOCK_MONOTONIC is one clock for every process on the machine) and
decodes the frames only afterwards, so little work falls inside the measurement. It prints one
JSON line: frames per connection, whether each saw 0..M-1 in order, latencies in microseconds.

The publisher (``Publisher``) sends masked text frames carrying a sequence number and the
monotonic time just before the send. Sockets close with an RST (SO_LINGER 0) so that repeated
runs of 10,000 connections do not use up the loopback's ports with TIME_WAIT.

Run (by bench/fanout.py): ``python bench/fanout_clients.py --port N --count K --messages M``.
"""

from __future__ import annotations

import argparse
import base64
import json
import select
import socket
import struct
import sys
import time
from typing import Any

HOST = "127.0.0.1"
BATCH = 200
_KEY = base64.b64encode(b"corral-fanout-ky").decode()
_MASK = b"\x5a\x13\xc4\x07"
_LINGER_RESET = struct.pack("ii", 1, 0)


class BenchClientError(RuntimeError):
    """A connection did not upgrade or closed early."""


def handshake(path: str, port: int) -> bytes:
    """The bytes of a WebSocket upgrade request for ``path``."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def text_frame(payload: bytes) -> bytes:
    """One masked client text frame."""
    size = len(payload)
    if size < 126:
        head = bytes([0x81, 0x80 | size])
    elif size < 2**16:
        head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", size)
    masked = bytes(byte ^ _MASK[i % 4] for i, byte in enumerate(payload))
    return head + _MASK + masked


def split_frames(buffer: bytearray) -> list[bytes]:
    """Take every complete server frame's payload off the front of ``buffer``."""
    payloads = []
    while len(buffer) >= 2:
        size, start = buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                break
            size, start = struct.unpack_from("!H", buffer, 2)[0], 4
        elif size == 127:
            if len(buffer) < 10:
                break
            size, start = struct.unpack_from("!Q", buffer, 2)[0], 10
        if len(buffer) < start + size:
            break
        if buffer[0] & 0x0F == 0x1:  # text; pings and others are not counted
            payloads.append(bytes(buffer[start : start + size]))
        del buffer[: start + size]
    return payloads


def open_upgraded(port: int, path: str) -> socket.socket:
    """A blocking, upgraded connection (its 101 read off the socket)."""
    sock = socket.create_connection((HOST, port), timeout=30.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.sendall(handshake(path, port))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchClientError(f"{path}: closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise BenchClientError(f"{path}: not upgraded: {head.splitlines()[0]!r}")
    return sock


class Publisher:
    """The one publisher: stamped, numbered text frames to ``/pub``."""

    def __init__(self, port: int) -> None:
        self.sock = open_upgraded(port, "/pub")

    def publish(self, seq: int, padding: int) -> int:
        """Send message ``seq``; return the monotonic ns it was stamped with."""
        sent = time.monotonic_ns()
        body = {"type": "said", "nick": "bench", "seq": seq, "sent": sent, "text": "x" * padding}
        self.sock.sendall(text_frame(json.dumps(body, separators=(",", ":")).encode()))
        return sent

    def close(self) -> None:
        self.sock.close()


class Subscribers:
    """``count`` subscriber connections read with one epoll."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.socks: dict[int, socket.socket] = {}
        self.buffers: dict[int, bytearray] = {}
        self.received: dict[int, list[tuple[int, bytes]]] = {}
        self.poll = select.epoll()
        self._upgraded: set[int] = set()

    def connect_all(self) -> None:
        """Open every connection, ``BATCH`` handshakes at a time, each through ``joined``."""
        for first in range(0, self.count, BATCH):
            batch = [self._open() for _ in range(min(BATCH, self.count - first))]
            for fd in batch:
                self.poll.register(fd, select.EPOLLIN)
            self._read_until(lambda fd: len(self.received[fd]) >= 1, set(batch), 60.0)
            for fd in batch:
                if [payload for _, payload in self.received[fd]] != [b"joined"]:
                    raise BenchClientError(f"no joined frame: {self.received[fd][:2]!r}")
                self.received[fd].clear()

    def _open(self) -> int:
        sock = socket.create_connection((HOST, self.port), timeout=30.0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.sendall(handshake("/sub", self.port))
        sock.setblocking(False)
        fd = sock.fileno()
        self.socks[fd], self.buffers[fd], self.received[fd] = sock, bytearray(), []
        return fd

    def wait_for(self, messages: int, timeout: float) -> None:
        """Read until every connection has ``messages`` frames or ``timeout`` passes."""
        self._read_until(lambda fd: len(self.received[fd]) >= messages, set(self.socks), timeout)

    def _read_until(self, done: Any, pending: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {fd for fd in pending if not done(fd)}
        while pending and (left := deadline - time.monotonic()) > 0:
            for fd, _ in self.poll.poll(min(left, 1.0)):
                if not self._read(fd):
                    pending.discard(fd)
                elif done(fd):
                    pending.discard(fd)

    def _read(self, fd: int) -> bool:
        """Read what is there; False if the connection closed."""
        try:
            data = self.socks[fd].recv(262144)
        except BlockingIOError:
            return True
        except ConnectionError:
            data = b""
        if not data:
            self.poll.unregister(fd)
            return False
        now = time.monotonic_ns()
        buffer = self.buffers[fd]
        buffer += data
        if fd not in self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return True
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise BenchClientError(f"not upgraded: {bytes(buffer[:40])!r}")
            del buffer[: end + 4]
            self._upgraded.add(fd)
        self.received[fd].extend((now, payload) for payload in split_frames(buffer))
        return True

    def report(self, messages: int, cpu: float) -> dict[str, Any]:
        """Counts, order, latencies (us), the last read's time and CPU seconds used."""
        counts, in_order, latencies, last = [], 0, [], 0
        for frames in self.received.values():
            seqs = []
            for received_at, payload in frames:
                body = json.loads(payload)
                seqs.append(body["seq"])
                latencies.append((received_at - body["sent"]) // 1000)
                last = max(last, received_at)
            counts.append(len(frames))
            in_order += seqs == list(range(messages))
        return {
            "counts": counts,
            "in_order": in_order,
            "latencies_us": latencies,
            "last": last,
            "cpu": cpu,
        }

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.poll.close()


def main(argv: list[str] | None = None) -> int:
    """Connect, say ``ready``, wait for the messages, print the report as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    subscribers = Subscribers(args.port, args.count)
    try:
        subscribers.connect_all()
        print("ready", flush=True)
        cpu = time.process_time()
        subscribers.wait_for(args.messages, args.timeout)
        cpu = time.process_time() - cpu
        print(json.dumps(subscribers.report(args.messages, cpu)), flush=True)
    except (BenchClientError, OSError) as exc:
        print(f"subscribers failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        subscribers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

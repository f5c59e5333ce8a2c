"""The fan-out benchmark's clients: plain sockets and epoll, no trio, no wsproto.

A subscriber process opens ``--count`` WebSocket connections to ``/sub`` (from ``--source``
when given; in batches, so the
listen backlog never overflows), waits for each one's ``joined`` frame, prints ``ready``, then
reads until every connection has ``--messages`` frames or ``--timeout`` passes. It notes the
monotonic time of each read (CLOCK_MONOTONIC is one clock for every process on the machine),
keeps the bytes raw and splits and decodes the frames only afterwards, so that a read costs the
client little more than its syscall: a delivery is one read, and the client must spend well
under what the server spends on it. It prints one
JSON line: frames per connection, whether each saw 0..M-1 in order, latencies in microseconds.

The publisher (``Publisher``) sends masked text frames carrying a sequence number and the
monotonic time just before the send. Frames and sockets come from ``wsclient`` (sockets close
with an RST, so that repeated runs of 10,000 connections leave no TIME_WAIT behind).

Run (by bench/fanout.py): ``python bench/fanout_clients.py --port N --count K --messages M``.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
from typing import Any

from wsclient import BenchError, client_frame, connect, handshake, open_websocket, split_frames

BATCH = 200


class Publisher:
    """The one publisher: stamped, numbered text frames to ``/pub``."""

    def __init__(self, port: int) -> None:
        self.sock = open_websocket(port, "/pub")
        self.sock.settimeout(30.0)

    def members(self) -> int:
        """Ask a ``/pub`` that answers ``members`` (``bench/cluster_app.py``) how many members
        its node knows of."""
        self.sock.sendall(client_frame(b"members"))
        buffer = bytearray()
        while not (answers := split_frames(buffer)):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BenchError("the publisher's connection closed")
            buffer += chunk
        return int(answers[-1].split()[1])

    def publish(self, seq: int, padding: int) -> int:
        """Send message ``seq``; return the monotonic ns it was stamped with."""
        sent = time.monotonic_ns()
        body = {"type": "said", "nick": "bench", "seq": seq, "sent": sent, "text": "x" * padding}
        self.sock.sendall(client_frame(json.dumps(body, separators=(",", ":")).encode()))
        return sent

    def close(self) -> None:
        self.sock.close()


class Subscribers:
    """``count`` subscriber connections read with one epoll."""

    def __init__(self, port: int, count: int, source: str | None = None) -> None:
        self.port = port
        self.source = source
        self.count = count
        self.socks: dict[int, socket.socket] = {}
        self.buffers: dict[int, bytearray] = {}
        self.received: dict[int, list[tuple[int, bytes]]] = {}
        self.poll = select.epoll()
        self._upgraded: set[int] = set()
        self.reads = 0
        """Reads that ``wait_for`` made (each one syscall)."""
        self._reads: dict[int, list[tuple[int, bytes]]] = {}

    def connect_all(self) -> None:
        """Open every connection, ``BATCH`` handshakes at a time, each through ``joined``."""
        for first in range(0, self.count, BATCH):
            batch = [self._open() for _ in range(min(BATCH, self.count - first))]
            for fd in batch:
                self.poll.register(fd, select.EPOLLIN)
            self._read_until(lambda fd: len(self.received[fd]) >= 1, set(batch), 60.0)
            for fd in batch:
                if [payload for _, payload in self.received[fd]] != [b"joined"]:
                    raise BenchError(f"no joined frame: {self.received[fd][:2]!r}")
                self.received[fd].clear()

    def _open(self) -> int:
        sock = connect(self.port, source=self.source)
        sock.sendall(handshake(self.port, "/sub"))
        sock.setblocking(False)
        fd = sock.fileno()
        self.socks[fd], self.buffers[fd], self.received[fd] = sock, bytearray(), []
        self._reads[fd] = []
        return fd

    def wait_for(self, messages: int, timeout: float, nap: float = 0.0) -> None:
        """Read until every connection has ``messages`` text frames or ``timeout`` passes.

        ``nap``: seconds to sleep after each pass over the ready connections, so that the
        frames sent meanwhile are read together (a delivery is then noted up to ``nap`` late,
        and costs the client a fraction of a read).

        The loop does as little as it can per read: it keeps the bytes with their arrival
        time and counts text frames by their first byte (0x81: the payloads are ASCII JSON
        under 126 bytes, so the byte appears nowhere else). ``split_reads`` splits them
        after the round; a miscount could only end the wait early, and the check would then
        report the missing frames.
        """
        reads = self._reads
        seen = dict.fromkeys(self.socks, 0)
        recv = {fd: sock.recv for fd, sock in self.socks.items()}
        pending, clock, poll = set(self.socks), time.monotonic_ns, self.poll.poll
        deadline = time.monotonic() + timeout
        while pending and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poll(min(left, 1.0)):
                try:
                    data = recv[fd](65536)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    data = b""
                if not data:
                    self.poll.unregister(fd)
                    pending.discard(fd)
                    continue
                reads[fd].append((clock(), data))
                seen[fd] += data.count(0x81)
                if seen[fd] >= messages:
                    pending.discard(fd)
            if nap:
                time.sleep(nap)

    def split_reads(self) -> None:
        """Split what ``wait_for`` read into frames, each with the time of its last read."""
        for fd, chunks in self._reads.items():
            self.reads += len(chunks)
            for arrived, data in chunks:
                self.buffers[fd] += data
                self.received[fd].extend((arrived, p) for p in split_frames(self.buffers[fd]))
            chunks.clear()

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
                raise BenchError(f"not upgraded: {bytes(buffer[:40])!r}")
            del buffer[: end + 4]
            self._upgraded.add(fd)
        self.received[fd].extend((now, payload) for payload in split_frames(buffer))
        return True

    def report(self, messages: int, cpu: float) -> dict[str, Any]:
        """Counts, order, latencies (us), the last read's time, CPU seconds used, and per
        message (by seq) how many connections got it and when the last one did."""
        counts, in_order, latencies, last = [], 0, [], 0
        got_seq, last_seq = [0] * messages, [0] * messages
        for frames in self.received.values():
            seqs = []
            for received_at, payload in frames:
                body = json.loads(payload)
                seq = body["seq"]
                seqs.append(seq)
                latencies.append((received_at - body["sent"]) // 1000)
                last = max(last, received_at)
                if 0 <= seq < messages:
                    got_seq[seq] += 1
                    last_seq[seq] = max(last_seq[seq], received_at)
            counts.append(len(frames))
            in_order += seqs == list(range(messages))
        return {
            "counts": counts,
            "in_order": in_order,
            "latencies_us": latencies,
            "last": last,
            "cpu": cpu,
            "reads": self.reads,
            "got_by_seq": got_seq,
            "last_by_seq": last_seq,
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
    parser.add_argument("--source", help="local address to connect from (e.g. 127.0.0.2)")
    parser.add_argument("--nap", type=float, default=0.0, help="seconds to sleep between reads")
    args = parser.parse_args(argv)
    subscribers = Subscribers(args.port, args.count, args.source)
    try:
        subscribers.connect_all()
        print("ready", flush=True)
        cpu = time.process_time()
        subscribers.wait_for(args.messages, args.timeout, args.nap)
        cpu = time.process_time() - cpu
        subscribers.split_reads()
        print(json.dumps(subscribers.report(args.messages, cpu)), flush=True)
    except (BenchError, OSError) as exc:
        print(f"subscribers failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        subscribers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

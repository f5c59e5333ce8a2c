"""The benchmarks' WebSocket client primitives: plain sockets, frames as prebuilt bytes.

No trio, no wsproto: a handshake is a fixed request, a client frame is masked once and sent
over and over, a server frame is split off a buffer by its header. Every load client in
bench/ (echo, fan-out subscribers, idle holders, the latency prober) is built from these, so
the servers, not the client, are what gets measured.

Connections are closed with an RST (SO_LINGER 0) by ``abort``: thousands of runs' worth of
TIME_WAIT sockets would otherwise use up the loopback's ephemeral ports.
"""

from __future__ import annotations

import base64
import socket
import struct
from collections.abc import Sequence

HOST = "127.0.0.1"
TEXT, BINARY, CLOSE, PING_OPCODE, PONG_OPCODE = 0x1, 0x2, 0x8, 0x9, 0xA

_KEY = base64.b64encode(b"corral-bench-key").decode()  # any 16 bytes will do
_MASK = b"\x37\xfa\x21\x3d"
_LINGER_RESET = struct.pack("ii", 1, 0)


class BenchError(RuntimeError):
    """The benchmark could not run as intended (a server died, a reply was wrong...)."""


def handshake(port: int, path: str = "/") -> bytes:
    """The bytes of a WebSocket upgrade request (RFC 6455 §4.1)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _length(size: int, mask_bit: int) -> bytes:
    if size < 126:
        return bytes([mask_bit | size])
    if size < 2**16:
        return bytes([mask_bit | 126]) + struct.pack("!H", size)
    return bytes([mask_bit | 127]) + struct.pack("!Q", size)


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One complete masked client frame (FIN set) carrying ``payload``."""
    masked = bytes(byte ^ _MASK[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode]) + _length(len(payload), 0x80) + _MASK + masked


def server_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """The unmasked server frame (FIN set) an echo of ``payload`` arrives as."""
    return bytes([0x80 | opcode]) + _length(len(payload), 0) + payload


PING = client_frame(b"", PING_OPCODE)
"""A masked client ping with no payload."""
PONG = server_frame(b"", PONG_OPCODE)
"""The server's answer to ``PING``."""
CLOSE_1000 = client_frame(struct.pack("!H", 1000), CLOSE)
"""A masked client close frame, code 1000."""


def split_frames(buffer: bytearray, opcode: int = TEXT) -> list[bytes]:
    """Take every complete server frame off the front of ``buffer``; return the payloads of
    those with ``opcode`` (pings and others are dropped)."""
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
        if buffer[0] & 0x0F == opcode:
            payloads.append(bytes(buffer[start : start + size]))
        del buffer[: start + size]
    return payloads


def connect(port: int, *, source: str | None = None, timeout: float = 30.0) -> socket.socket:
    """A blocking TCP connection to ``HOST:port`` (from ``source`` when given), TCP_NODELAY,
    set to close with an RST."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        if source is not None:
            sock.bind((source, 0))
        sock.connect((HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


def open_websocket(port: int, path: str = "/", timeout: float = 30.0) -> socket.socket:
    """A connected, upgraded, blocking socket; BenchError unless the answer is a bare 101."""
    sock = connect(port, timeout=timeout)
    try:
        sock.sendall(handshake(port, path))
        extra = read_upgrade(sock)
        if extra:
            raise BenchError(f"unexpected bytes after the 101: {extra!r}")
    except BaseException:
        sock.close()
        raise
    return sock


def read_upgrade(sock: socket.socket) -> bytes:
    """Read the server's answer to the handshake; BenchError unless it is a 101. Returns
    the bytes that came after the head (the first frames, if the server sent any)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError(f"connection closed during the handshake after {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise BenchError(f"upgrade refused: {head.splitlines()[0]!r}")
    return head.partition(b"\r\n\r\n")[2]


def send_and_expect(sockets: Sequence[socket.socket], frame: bytes, reply: bytes) -> None:
    """Send ``frame`` on every (blocking) socket, then check each answers exactly ``reply``.

    All frames go out before any answer is read, so the server works on them together.
    """
    for sock in sockets:
        sock.sendall(frame)
    for sock in sockets:
        got = b""
        while len(got) < len(reply):
            chunk = sock.recv(len(reply) - len(got))
            if not chunk:
                raise BenchError("the server closed a connection instead of answering")
            got += chunk
        if got != reply:
            raise BenchError(f"wrong answer: expected {reply!r}, got {got!r}")


def abort(sock: socket.socket) -> None:
    """Close with an RST: no TIME_WAIT left behind on the client's port."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()

"""Bad clients by hand: raw sockets on 127.0.0.1 and hand-built frames.

The server under test runs with ``tests.server.serving.running``; ``RawClient`` speaks just
enough HTTP and RFC 6455 to misbehave on purpose (half frames, bad UTF-8, endless fragments,
TCP resets); ``assert_echoes`` is the well-behaved second client every test uses to show the
server goes on serving others.
"""

from __future__ import annotations

import base64
import os
import socket
import struct

import attrs
import trio
from trio_websocket import open_websocket_url
from wsproto.frame_protocol import Frame, FrameProtocol, Opcode

from server import TerminateReason

from ..server.serving import HOST, Served

STEP_TIMEOUT = 5.0
"""Upper bound for any single exchange in these tests: nothing here should take a second."""


# ---- the server ---------------------------------------------------------------------


async def wait_until_no_connections(served: Served, timeout: float = STEP_TIMEOUT) -> None:
    """Wait (bounded) until every connection actor has ended."""
    with trio.fail_after(timeout):
        while served.connections():
            await trio.sleep(0.01)


# ---- what the handler lived through -------------------------------------------------


@attrs.define
class Recorder:
    """Collects the reasons ``terminate`` was called with, across a test's connections."""

    reasons: list[TerminateReason] = attrs.Factory(list)
    _changed: trio.Event = attrs.Factory(trio.Event)

    def terminated(self, reason: TerminateReason) -> None:
        self.reasons.append(reason)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int, timeout: float = STEP_TIMEOUT) -> list[TerminateReason]:
        """The first ``count`` reasons, waiting (bounded) for them."""
        with trio.fail_after(timeout):
            while len(self.reasons) < count:
                await self._changed.wait()
        return self.reasons[:count]


# ---- the well-behaved client ----------------------------------------------------------


async def assert_echoes(url: str, message: str = "still here") -> None:
    """A fresh client connects to ``url``, sends ``message`` and gets it back, in bounded time."""
    with trio.fail_after(STEP_TIMEOUT):
        async with open_websocket_url(url) as ws:
            await ws.send_message(message)
            assert await ws.get_message() == message


# ---- frames by hand -------------------------------------------------------------------


def client_frame(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame, payload taken as is (so invalid UTF-8 in TEXT is possible)."""
    first = (0x80 if fin else 0) | int(opcode)
    size = len(payload)
    if size < 126:
        header = bytes([first, 0x80 | size])
    elif size < 2**16:
        header = bytes([first, 0x80 | 126]) + struct.pack("!H", size)
    else:
        header = bytes([first, 0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + masked


def upgrade_request(path: str = "/", *, extra: str = "", version: str | None = "13") -> bytes:
    """A client handshake; ``version=None`` leaves Sec-WebSocket-Version out."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {HOST}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
    ]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


@attrs.frozen
class HttpAnswer:
    """A parsed HTTP response head and whatever body came before the server closed."""

    status: int
    headers: dict[str, str]
    body: bytes


def parse_http_answer(data: bytes) -> HttpAnswer:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpAnswer(int(status_line.split()[1]), headers, body)


class RawClient:
    """A TCP client that speaks WebSocket by hand; each read is bounded by STEP_TIMEOUT."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._frames = FrameProtocol(client=True, extensions=[])
        self._pending: list[Frame] = []

    @classmethod
    async def connect(cls, port: int, *, receive_buffer: int | None = None) -> RawClient:
        """Open TCP to the server; ``receive_buffer`` shrinks SO_RCVBUF before connecting."""
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect((HOST, port))
        return cls(trio.SocketStream(sock))

    @classmethod
    async def upgraded(cls, port: int, path: str = "/", **kwargs: int) -> RawClient:
        """Connect and complete the handshake (101 expected)."""
        client = await cls.connect(port, **kwargs)
        await client.handshake(path)
        return client

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def handshake(self, path: str = "/") -> None:
        await self.send(upgrade_request(path))
        data = b""
        with trio.fail_after(STEP_TIMEOUT):
            while b"\r\n\r\n" not in data:
                chunk = await self.stream.receive_some()
                assert chunk, f"connection closed during the handshake: {data!r}"
                data += chunk
        answer = parse_http_answer(data)
        assert answer.status == 101, data
        self._frames.receive_bytes(answer.body)

    async def read_all(self, timeout: float = STEP_TIMEOUT) -> bytes:
        """Everything the server sends until it closes (EOF or reset)."""
        data = b""
        with trio.fail_after(timeout):
            while True:
                try:
                    chunk = await self.stream.receive_some()
                except trio.BrokenResourceError:
                    return data
                if not chunk:
                    return data
                data += chunk

    async def next_frame(self, timeout: float = STEP_TIMEOUT) -> Frame | None:
        """The next frame from the server; None when TCP ends (FIN or RST) first."""
        with trio.fail_after(timeout):
            while True:
                if not self._pending:
                    self._pending.extend(self._frames.received_frames())
                if self._pending:
                    return self._pending.pop(0)
                try:
                    chunk = await self.stream.receive_some()
                except trio.BrokenResourceError:
                    return None
                if not chunk:
                    return None
                self._frames.receive_bytes(chunk)

    async def close_code(self, timeout: float = STEP_TIMEOUT) -> int | None:
        """Skip data frames until the server's close frame: its code; None if TCP ends first."""
        with trio.fail_after(timeout):
            while True:
                frame = await self.next_frame()
                if frame is None:
                    return None
                if frame.opcode is Opcode.CLOSE:
                    assert isinstance(frame.payload, tuple)
                    code, _reason = frame.payload
                    return int(code)

    async def closed_by_server(self, timeout: float = STEP_TIMEOUT) -> bool:
        """Read on until TCP ends; True when it does within ``timeout``."""
        with trio.move_on_after(timeout):
            while await self.next_frame() is not None:
                pass
            return True
        return False

    def reset(self) -> None:
        """Vanish: abort TCP with RST (SO_LINGER 0), no close frame."""
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.stream.socket.close()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def http_exchange(port: int, request: bytes, timeout: float = STEP_TIMEOUT) -> HttpAnswer:
    """Send ``request`` as is and read the answer until the server closes."""
    client = await RawClient.connect(port)
    try:
        await client.send(request)
        return parse_http_answer(await client.read_all(timeout))
    finally:
        await client.aclose()

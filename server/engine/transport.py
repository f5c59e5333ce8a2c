"""The byte pipe under one connection: a plain TCP socket's file descriptor, or any trio stream
(TLS, the test kit's memory stream). The connection's loop is the same over both: only these
few methods differ.

A socket is read and written straight through its descriptor (no task switch when the kernel
has the bytes or takes them at once); a stream cannot be written without waiting, so
``write_nowait`` takes nothing from it and the connection's own task sends it all.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Awaitable
from typing import Protocol

import trio

RECEIVE_SIZE = 64 * 1024
"""Most bytes read from the client at once."""

_TLS_POLL_EVERY = 16
"""Polls in a row between two looks at a stream that cannot be read without waiting."""

_LINGER_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on, zero seconds: close() sends RST instead of FIN."""


class Transport(Protocol):
    """What a connection's loop needs from the bytes under it."""

    def write_nowait(self, data: bytes | memoryview) -> int:
        """Write what the peer takes at once; how many bytes (BrokenResourceError: gone)."""
        ...

    async def send_some(self, data: bytes | memoryview) -> int:
        """Wait until some of ``data`` is written; how many bytes (BrokenResourceError)."""
        ...

    def readable(self) -> Awaitable[None]:
        """Wait until ``read_nowait`` has something to give (bytes, or the peer's end)."""
        ...

    def read_nowait(self) -> bytes | None:
        """Bytes the peer sent (b"": it closed or vanished), or None if none came."""
        ...

    async def poll(self, attempt: int) -> bytes | None:
        """``read_nowait`` for a loop busy with other work (``attempt``: how many times in a
        row it asked): a stream is given a moment now and then instead."""
        ...

    async def aclose(self, *, reset: bool = False) -> None:
        """Close (``reset``: abort TCP with RST, so the peer gets no more bytes)."""
        ...


def transport_of(stream: trio.abc.Stream) -> Transport:
    """The transport for an accepted connection's stream: its socket if it is plain TCP."""
    if isinstance(stream, trio.SocketStream):
        return SocketTransport(stream)
    return StreamTransport(stream)


class SocketTransport:
    """A plain TCP socket, read and written through its file descriptor."""

    __slots__ = ("stream", "fd")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno()

    def write_nowait(self, data: bytes | memoryview) -> int:
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"writing to the socket failed: {exc}") from exc

    async def send_some(self, data: bytes | memoryview) -> int:
        while True:
            sent = self.write_nowait(data)
            if sent:
                return sent
            await trio.lowlevel.wait_writable(self.fd)

    def readable(self) -> Awaitable[None]:
        # A plain function returning trio's coroutine: no frame of its own on an idle
        # connection's stack.
        return trio.lowlevel.wait_readable(self.fd)

    def read_nowait(self) -> bytes | None:
        try:
            return os.read(self.fd, RECEIVE_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""  # reset by the peer: the same as its vanishing

    async def poll(self, attempt: int) -> bytes | None:
        return self.read_nowait()

    async def aclose(self, *, reset: bool = False) -> None:
        if reset and self.stream.socket.fileno() != -1:
            self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        await trio.aclose_forcefully(self.stream)


class StreamTransport:
    """Any trio stream (TLS, a memory stream): read and written through its own methods."""

    __slots__ = ("stream", "_received")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._received: bytes | None = None

    def write_nowait(self, data: bytes | memoryview) -> int:
        return 0  # a stream write may wait: the connection's own task sends

    async def send_some(self, data: bytes | memoryview) -> int:
        try:
            await self.stream.send_all(data)
        except trio.ClosedResourceError as exc:
            raise trio.BrokenResourceError("the stream is closed") from exc
        return len(data)

    async def readable(self) -> None:
        if self._received is None:
            try:
                self._received = bytes(await self.stream.receive_some(RECEIVE_SIZE))
            except trio.BrokenResourceError:
                self._received = b""  # as if it closed

    def read_nowait(self) -> bytes | None:
        received, self._received = self._received, None
        return received

    async def poll(self, attempt: int) -> bytes | None:
        if self._received is None and attempt % _TLS_POLL_EVERY == 0:
            with trio.move_on_after(0.001):  # cancel-safe after the TLS handshake
                await self.readable()
        return self.read_nowait()

    async def aclose(self, *, reset: bool = False) -> None:
        await trio.aclose_forcefully(self.stream)

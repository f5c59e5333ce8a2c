"""Eager reads and writes on a plain TCP stream's socket, for the opening of a connection.

trio's ``receive_some``/``send_all`` always pass through the scheduler, even when the kernel
already has the bytes or takes them at once: a task switch each, on every connection opened.
These try the socket first and wait only when it would block. A TLS (or any other) stream
goes through its own methods.
"""

from __future__ import annotations

import os

import trio


def socket_fd(stream: object) -> int | None:
    """The file descriptor of a plain TCP stream (None for TLS or anything else)."""
    return stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None


async def receive_eagerly(stream: trio.abc.ReceiveStream, max_bytes: int) -> bytes | bytearray:
    """``stream.receive_some(max_bytes)``, without a task switch when bytes are waiting.

    b"" when the peer closed; trio.BrokenResourceError when the connection broke.
    """
    fd = socket_fd(stream)
    if fd is None:
        return await stream.receive_some(max_bytes)
    while True:
        try:
            return os.read(fd, max_bytes)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(fd)
        except OSError as exc:
            raise trio.BrokenResourceError(f"reading from the socket failed: {exc}") from exc


async def receive_bytes(stream: trio.abc.ReceiveStream, max_bytes: int = 64 * 1024) -> bytes:
    """What the peer sent next (eagerly, as bytes); b"" once it closed or the connection broke."""
    try:
        data = await receive_eagerly(stream, max_bytes)
    except trio.BrokenResourceError:
        return b""
    return data if isinstance(data, bytes) else bytes(data)


async def send_eagerly(stream: trio.abc.SendStream, data: bytes) -> None:
    """``stream.send_all(data)``, without a task switch when the socket takes it all at once.

    trio.BrokenResourceError when the connection broke.
    """
    fd = socket_fd(stream)
    if fd is not None:
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"writing to the socket failed: {exc}") from exc
        if sent == len(data):
            return
        data = data[sent:]
    await stream.send_all(data)

"""The benchmarks' raw client (bench/wsclient.py) speaks valid WebSocket, checked against
wsproto (the quick runs of the benchmarks are in test_quick_runs.py)."""

from __future__ import annotations

from types import ModuleType

import wsproto.events
from wsproto import ConnectionType, WSConnection
from wsproto.frame_protocol import FrameProtocol

from .kit import BENCH, load_bench


def _load(name: str) -> ModuleType:
    return load_bench(BENCH / f"{name}.py")


def test_client_frames_are_masked_messages_a_server_accepts() -> None:
    client = _load("wsclient")
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.handshake(9001))
    request = next(server.events())
    assert isinstance(request, wsproto.events.Request) and request.target == "/"
    server.send(wsproto.events.AcceptConnection())
    long = "é" * 40_000
    frames = client.client_frame(b"x" * 32) + client.client_frame(b"y" * 32, client.BINARY)
    server.receive_data(frames + client.client_frame(long.encode()) + client.PING)
    text, binary, big, ping = list(server.events())
    assert isinstance(text, wsproto.events.TextMessage) and text.data == "x" * 32
    assert isinstance(binary, wsproto.events.BytesMessage) and binary.data == b"y" * 32
    assert isinstance(big, wsproto.events.TextMessage) and big.data == long
    assert isinstance(ping, wsproto.events.Ping) and ping.payload == b""
    server.receive_data(client.CLOSE_1000)
    (close,) = server.events()
    assert isinstance(close, wsproto.events.CloseConnection) and close.code == 1000


def test_server_frame_and_pong_are_what_wsproto_sends() -> None:
    client = _load("wsclient")
    server = FrameProtocol(client=False, extensions=[])
    assert client.server_frame(b"y" * 32) == server.send_data("y" * 32, fin=True)
    assert client.server_frame(b"z" * 300, client.BINARY) == server.send_data(b"z" * 300, fin=True)
    assert client.PONG == server.pong(b"")

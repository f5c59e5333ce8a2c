"""``corral serve --workers N`` as real processes: one port, restarts, signals, a cluster."""

from __future__ import annotations

import os
import re
import signal
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from server.run.workers import Backoff
from tests.server.corral_process import STARTUP, CorralProcess, corral_serve


def workers(tmp_path: Path, count: int, *args: str) -> AbstractAsyncContextManager[CorralProcess]:
    """``corral serve tests.cluster.apps:app --workers count *args``, once every worker listens."""
    return corral_serve(
        tmp_path, "tests.cluster.apps:app", "--workers", str(count), *args, listening=count
    )


async def _pid_of(ws: WebSocketConnection) -> int:
    return int((await ws.get_message()).split()[1])


async def _connections_on_distinct_workers(
    stack: AsyncExitStack, port: int, want: int
) -> list[tuple[WebSocketConnection, int]]:
    """Open connections until ``want`` different workers serve at least one (bounded);
    return every connection opened with the pid of its worker, in order."""
    opened: list[tuple[WebSocketConnection, int]] = []
    for _ in range(200):
        ws = await stack.enter_async_context(open_websocket_url(f"ws://127.0.0.1:{port}/"))
        opened.append((ws, await _pid_of(ws)))
        if len({pid for _, pid in opened}) == want:
            return opened
    raise AssertionError(f"200 connections all went to {opened[0][1]}")


def _first_per_worker(
    opened: list[tuple[WebSocketConnection, int]],
) -> list[tuple[WebSocketConnection, int]]:
    first: dict[int, WebSocketConnection] = {}
    for ws, pid in opened:
        first.setdefault(pid, ws)
    return [(ws, pid) for pid, ws in first.items()]


def test_backoff_doubles_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(first=0.1, most=0.5, stable_after=10)
    assert [backoff.after_exit(1) for _ in range(4)] == [0.1, 0.2, 0.4, 0.5]
    assert backoff.after_exit(60) == 0.1


@pytest.mark.slow
async def test_workers_share_one_port_restart_when_killed_and_drain_on_sigterm(
    tmp_path: Path,
) -> None:
    async with workers(tmp_path, 2) as parent:
        async with AsyncExitStack() as stack:
            opened = await _connections_on_distinct_workers(stack, parent.port, 2)
            assert {pid for _, pid in opened} == set(parent.worker_pids())
        victim = parent.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        await parent.wait_for_log(rf"\(pid {victim}\) exited with -9: restarting")
        await parent.wait_for_log(r"listening on ws://", 3)
        assert len(parent.worker_pids()) == 3
        parent.process.send_signal(signal.SIGTERM)
        with trio.fail_after(STARTUP):
            assert await parent.process.wait() == 0
        assert parent.log.count("drained") == 2
        assert "exited with 0" in parent.log
    # Every line a worker writes says which worker (the restarted one keeps its index).
    listening = re.findall(r" INFO (worker=\d )?corral\.server: listening on", parent.log)
    assert len(listening) == 3 and {*listening} == {"worker=0 ", "worker=1 "}
    assert len(re.findall(r" INFO worker=[01] corral\.server: drained", parent.log)) == 2


@pytest.mark.slow
async def test_a_second_signal_makes_the_parent_and_workers_exit_130(tmp_path: Path) -> None:
    async with (
        workers(tmp_path, 2, "--metrics") as parent,
        await _silent_client(parent.port) as silent,
    ):
        metrics = Path(re.findall(r"combined through (\S+)", parent.log)[0])
        pids = parent.worker_pids()
        parent.process.send_signal(signal.SIGINT)
        assert await _close_code(silent) == 1001  # never answered: its worker waits
        await parent.wait_for_log("SIGINT: draining 2 workers")
        parent.process.send_signal(signal.SIGINT)
        with trio.fail_after(STARTUP):
            assert await parent.process.wait() == 130
        assert "second SIGINT" in parent.log
        assert not metrics.exists()  # exiting at once, the parent still removes its directory
        for pid in pids:  # each worker got the second signal too, and is gone
            with trio.fail_after(STARTUP):
                while _alive(pid):
                    await trio.sleep(0.05)


async def _silent_client(port: int) -> trio.SocketStream:
    """A WebSocket client that upgrades, then never answers anything (not even a close)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some()
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream


async def _close_code(stream: trio.SocketStream) -> int:
    """Read frames until the server's close frame; its status code."""
    data = b""
    with trio.fail_after(STARTUP):
        while True:
            while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
                data += await stream.receive_some()
            opcode, size = data[0] & 0x0F, data[1] & 0x7F
            if opcode == 0x8:
                return int.from_bytes(data[2:4], "big")
            data = data[2 + size :]


@pytest.mark.slow
async def test_workers_whose_parent_is_killed_drain_and_exit(tmp_path: Path) -> None:
    async with workers(tmp_path, 2) as parent:
        pids = parent.worker_pids()
        parent.process.kill()
        for pid in pids:
            with trio.fail_after(STARTUP):
                while _alive(pid):
                    await trio.sleep(0.05)
        assert parent.log.count("is gone: draining") == 2
        assert parent.log.count("drained") == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_workers_on_redis_broadcast_to_connections_of_every_worker(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    async with workers(tmp_path, 2, "--redis", redis_url, "--cluster-prefix", prefix) as parent:
        await parent.wait_for_log(r"node \S+ is up", 2)  # each worker has heard the other
        async with AsyncExitStack() as stack:
            opened = await _connections_on_distinct_workers(stack, parent.port, 2)
            [(first, first_pid), (second, second_pid)] = _first_per_worker(opened)
            on_first = sum(pid == first_pid for _, pid in opened)
            with trio.fail_after(10):  # until the first worker has heard every join
                while True:
                    await first.send_message("members")
                    if await _next_text(first) == f"members {len(opened)}":
                        break
                    await trio.sleep(0.05)
            await first.send_message("broadcast hello, cluster")
            with trio.fail_after(10):
                assert await _next_text(first) == "hello, cluster"
                assert await _next_text(second) == "hello, cluster"
            # Kill the second's worker: its client sees TCP close, and within the lease (5 s)
            # its connections leave the group as the first worker sees it.
            os.kill(second_pid, signal.SIGKILL)
            with trio.fail_after(10):
                with pytest.raises(ConnectionClosed):
                    await second.get_message()
            with trio.fail_after(20):
                while True:
                    await first.send_message("members")
                    if await _next_text(first) == f"members {on_first}":
                        break
                    await trio.sleep(0.1)
            assert "is down (no heartbeat" in parent.log


async def _next_text(ws: WebSocketConnection) -> str:
    message = await ws.get_message()
    assert isinstance(message, str)
    return message

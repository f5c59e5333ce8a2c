"""Nodes on Redis, measured: cross-node send latency, and a Redis restart under load.

``latency``: a pinger sends ``(ping, i, reply_to)`` and waits for the pong, ``count`` times in
a row, to a ponger on the same node and then to one on another node (two nodes in this
process, on one Redis, so a cross-node round trip crosses Redis twice). Reported: round-trip
p50/p99 for each, and the ratio.

``restart``: a private ``redis-server`` (a free port, nothing on disk) carries a steady
stream of sends from node A to node B (one every millisecond) while a local stream on A
goes on beside it; after 1 s Redis is killed, after 0.5 s more it starts again on the same
port. Reported: cross-node messages sent, received and counted lost (sent - received must
equal lost: never a silent loss), local messages (none lost), and each node's resubscribe
time (target < 1 s).

``failover``: the same stream on a Redis Cluster of its own (3 primaries, a replica each,
``cluster-node-timeout`` 500 ms: ``tests/cluster/redis_cluster_kit.py``); after 1 s the
primary that carries node B's channel is killed. Reported: sent, received, counted lost and
lost uncounted, and the time from the kill to each node being subscribed again.

Run: ``python bench/cluster_nodes.py latency|restart|failover [--redis URL] [--count N]``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors  # noqa: E402
from actors.backend_redis import RedisBackend  # noqa: E402


@asynccontextmanager
async def node_on(url: str, prefix: str, node_id: str) -> AsyncIterator[actors.Node]:
    backend = RedisBackend(url, prefix=prefix, node_id=node_id, heartbeat=0.2, lease=2.0)
    async with actors.open_node(backend=backend) as node:
        await backend.wait_connected()
        yield node


async def _ponger(actor: actors.Actor) -> None:
    async for _, i, reply_to in actor:
        actor.send(reply_to, ("pong", i))


async def _round_trips(
    node: actors.Node, nursery: trio.Nursery, target: actors.Address, count: int
) -> list[float]:
    times: list[float] = []
    done = trio.Event()

    async def pinger(actor: actors.Actor) -> None:
        for i in range(count):
            start = time.perf_counter()
            actor.send(target, ("ping", i, actor.address))
            assert await actor.receive() == ("pong", i)
            times.append(time.perf_counter() - start)
        done.set()

    node.spawn(nursery, pinger)
    await done.wait()
    return times


def _percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return 1e6 * ordered[len(ordered) // 2], 1e6 * ordered[int(len(ordered) * 0.99)]


async def bench_latency(url: str, count: int) -> str:
    prefix = f"bench:{uuid.uuid4().hex}"
    async with (
        node_on(url, prefix, "a") as a,
        node_on(url, prefix, "b") as b,
        trio.open_nursery() as nursery,
    ):
        backend = a.backend
        assert isinstance(backend, RedisBackend)
        await backend.wait_until(lambda: a.backend.is_alive("b"))
        near, far = a.spawn(nursery, _ponger), b.spawn(nursery, _ponger)
        await _round_trips(a, nursery, far, 100)  # warm-up
        same = _percentiles(await _round_trips(a, nursery, near, count))
        cross = _percentiles(await _round_trips(a, nursery, far, count))
        nursery.cancel_scope.cancel()
    return "\n".join(
        [
            f"send round trip, {count} in a row, two nodes in one process on {url}",
            f"{'':<11} {'p50 us':>8} {'p99 us':>8}",
            f"{'same node':<11} {same[0]:>8.1f} {same[1]:>8.1f}",
            f"{'cross node':<11} {cross[0]:>8.1f} {cross[1]:>8.1f}",
            f"cross/same: p50 {cross[0] / same[0]:.0f}x, p99 {cross[1] / same[1]:.0f}x",
        ]
    )


class _Redis:
    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("cluster_nodes restart: redis-server is not on PATH")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.01)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


async def bench_restart(seconds: float = 3.0) -> str:
    redis = _Redis()
    redis.start()
    url = f"redis://127.0.0.1:{redis.port}"
    try:
        async with (
            node_on(url, "bench", "a") as a,
            node_on(url, "bench", "b") as b,
            trio.open_nursery() as nursery,
        ):
            backend = a.backend
            assert isinstance(backend, RedisBackend)
            await backend.wait_until(lambda: a.backend.is_alive("b"))
            got: dict[str, int] = {"far": 0, "near": 0}

            async def counter(actor: actors.Actor, key: str) -> None:
                async for _ in actor:
                    got[key] += 1

            far = b.spawn(nursery, counter, "far")
            near = a.spawn(nursery, counter, "near")
            sent = 0
            lost_before = a.cluster().lost

            back: dict[str, float] = {}

            async def outage() -> None:
                await trio.sleep(1.0)
                redis.stop()
                await trio.sleep(0.5)
                redis.start()
                restarted = trio.current_time()
                for node in (a, b):
                    node_backend = node.backend
                    assert isinstance(node_backend, RedisBackend)
                    await node_backend.wait_until(lambda n=node: n.cluster().connected)
                    back[node.name] = trio.current_time() - restarted

            nursery.start_soon(outage)
            deadline = trio.current_time() + seconds
            while trio.current_time() < deadline:
                a.send(far, sent)
                a.send(near, sent)
                sent += 1
                await trio.sleep(0.001)
            await trio.sleep(0.5)  # the last cross-node messages arrive
            stats_a, stats_b = a.cluster(), b.cluster()
            nursery.cancel_scope.cancel()
    finally:
        redis.stop()
    lost = stats_a.lost - lost_before
    silent = sent - got["far"] - lost
    return "\n".join(
        [
            f"Redis killed after 1 s and restarted 0.5 s later, under {sent:,} sends over "
            f"{seconds:g} s (one every ms)",
            f"cross-node: sent {sent:,}, received {got['far']:,}, counted lost {lost:,}, "
            f"lost without being counted {silent:,}",
            f"same node: sent {sent:,}, received {got['near']:,}",
            f"resubscribed after Redis was back: node a {_ms(back.get('a'))}, node b "
            f"{_ms(back.get('b'))} (target < 1000 ms)",
            f"outage as each node saw it (lost to resubscribed, 500 ms of it Redis down): "
            f"a {_ms(stats_a.last_resubscribe)}, b {_ms(stats_b.last_resubscribe)}; "
            f"reconnects a {stats_a.reconnects}, b {stats_b.reconnects}",
        ]
    )


async def bench_failover(seconds: float = 4.0) -> str:
    from tests.cluster.redis_cluster_kit import RedisCluster

    cluster = RedisCluster(primaries=3, replicas=1, node_timeout_ms=500)
    cluster.start()
    try:
        async with (
            node_on(cluster.url, "bench", "a") as a,
            node_on(cluster.url, "bench", "b") as b,
            trio.open_nursery() as nursery,
        ):
            backend_a, backend_b = a.backend, b.backend
            assert isinstance(backend_a, RedisBackend) and isinstance(backend_b, RedisBackend)
            await backend_a.wait_until(lambda: backend_a.is_alive("b"))
            got = {"far": 0}

            async def counter(actor: actors.Actor) -> None:
                async for _ in actor:
                    got["far"] += 1

            far = b.spawn(nursery, counter)
            victim = cluster.primary_of(backend_b.keys.inbox("b"))

            async def kill() -> None:
                await trio.sleep(1.0)
                cluster.kill(victim)

            nursery.start_soon(kill)
            sent, deadline = 0, trio.current_time() + seconds
            while trio.current_time() < deadline:
                a.send(far, sent)
                sent += 1
                await trio.sleep(0.001)
            with trio.move_on_after(10):
                for node, backend in ((a, backend_a), (b, backend_b)):
                    await backend.wait_until(lambda n=node: n.cluster().reconnects >= 1)
            await trio.sleep(0.5)  # the last messages arrive
            lost = a.cluster().lost
            back = {node.name: node.cluster().last_resubscribe for node in (a, b)}
            nursery.cancel_scope.cancel()
    finally:
        cluster.stop()
    return "\n".join(
        [
            f"Redis Cluster primary of node b's channel killed after 1 s, under {sent:,} sends "
            f"over {seconds:g} s (one every ms); cluster-node-timeout 500 ms",
            f"cross-node: sent {sent:,}, received {got['far']:,}, counted lost {lost:,}, "
            f"lost without being counted {sent - got['far'] - lost:,}",
            f"subscribed again after the link broke: node a {_ms(back.get('a'))}, node b "
            f"{_ms(back.get('b'))}",
        ]
    )


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1e3 * seconds:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["latency", "restart", "failover"])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="latency: Redis URL")
    parser.add_argument("--count", type=int, default=2000, help="latency: round trips")
    args: Any = parser.parse_args(argv)
    if args.which == "latency":
        print(trio.run(bench_latency, args.redis, args.count))
    elif args.which == "failover":
        print(trio.run(bench_failover))
    else:
        print(trio.run(bench_restart))
    return 0


if __name__ == "__main__":
    sys.exit(main())

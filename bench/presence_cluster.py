"""Presence across nodes on Redis, measured: joins/s per node, delta bytes, convergence, memory.

Each node is a process of its own (a ``RedisBackend`` with the default heartbeat and lease,
so the default failure-detection time, and a presence tracker with the default interval),
driven by this script through its stdin. The steps:

The nodes heartbeat every fifth of ``--failure-detection`` (default 5 s, as ``corral serve``).

1. each node spawns its share of ``--presences`` idle actors (RSS before);
2. delta bytes at few members: node 0 tracks K new keys (K = 10, 100, 1000) and reports the
   encoded size of the delta that carried them, then untracks them;
3. every node tracks its actors under one topic at once, as fast as it can: joins/s per node
   (wall and CPU time; each node's CPU is printed, this script does no work meanwhile), and the
   time until every node lists every presence;
4. RSS after, per presence held (every node holds all of them; its own cost a monitor more);
5. delta bytes again with the topic full: proportional to the changes, not to the members;
6. the last node is killed (SIGKILL): the time until every other node lists only the
   survivors' presences (the detection time plus at most a heartbeat and an interval).

Run: ``python bench/presence_cluster.py [--nodes 2] [--presences 20000] [--redis URL]
[--failure-detection 5]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors  # noqa: E402
from actors import presence  # noqa: E402
from actors.backend_redis import RedisBackend  # noqa: E402
from actors.presence import PresenceDiff, PresenceTracker  # noqa: E402
from actors.presence_table import Meta, PresenceTable  # noqa: E402

TOPIC = "bench"
CHURN = (10, 100, 1000)
CHUNK = 200
"""Joins per scheduler pass: the node keeps heartbeating while it joins."""


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rate(count: float, seconds: float) -> str:
    """``count / seconds`` as the table prints it; "-" when a quick run's clock read 0 (the
    kernel counts CPU in 10 ms ticks)."""
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- a node process ------------------------------------------------------------------------


class _Node:
    """One node's side of the benchmark: its actors, and the commands it answers."""

    def __init__(self, node: actors.Node, tracker: PresenceTracker, nursery: trio.Nursery) -> None:
        self.node = node
        self.tracker = tracker
        self.nursery = nursery
        self.actors: list[actors.Address] = []
        self.churners: list[actors.Address] = []
        self.diffs = trio.Event()
        node.spawn(nursery, self._watch)

    async def _watch(self, actor: actors.Actor) -> None:
        self.tracker.subscribe(TOPIC, actor.address)
        async for message in actor:
            if isinstance(message, PresenceDiff):
                self.diffs.set()
                self.diffs = trio.Event()

    async def command(self, words: list[str]) -> str:
        verb, args = words[0], [int(word) for word in words[1:]]
        if verb == "spawn":
            self.actors = [self.node.spawn(self.nursery, _idle) for _ in range(args[0])]
            self.churners = [self.node.spawn(self.nursery, _idle) for _ in range(max(CHURN))]
            return f"rss={_rss()}"
        if verb == "join":
            return await self._join()
        if verb == "await":
            while self.tracker.table.count(TOPIC) != args[0]:
                await self.diffs.wait()
            return f"at={time.time()} rss={_rss()}"
        if verb == "churn":
            return await self._churn(args[0])
        raise ValueError(f"unknown command {verb!r}")

    async def _join(self) -> str:
        wall, cpu = time.perf_counter(), _cpu()
        for index, address in enumerate(self.actors):
            self.tracker.track(TOPIC, f"{self.node.name}-{index}", {"n": index}, address)
            if index % CHUNK == CHUNK - 1:
                await trio.lowlevel.checkpoint()
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        peers = len(self.node.cluster().peers) - 1
        return f"wall={wall} cpu={cpu} peers={peers}"

    async def _churn(self, count: int) -> str:
        results = []
        for step in ("track", "untrack"):
            before = self.tracker.statistics()
            for index, address in enumerate(self.churners[:count]):
                if step == "track":
                    self.tracker.track(TOPIC, f"churn-{index}", {"n": index}, address)
                else:
                    self.tracker.untrack(TOPIC, address)
            await self.diffs.wait()  # the local diff goes with the delta, in one flush
            after = self.tracker.statistics()
            results.append(f"{after.delta_bytes - before.delta_bytes}")
        return "bytes=" + ",".join(results)


async def _idle(actor: actors.Actor) -> None:
    await trio.sleep_forever()


async def node_main(url: str, prefix: str, node_id: str, lease: str) -> None:
    seconds = float(lease)
    backend = RedisBackend(
        url, prefix=prefix, node_id=node_id, heartbeat=seconds / 5, lease=seconds
    )
    async with (
        actors.open_node(backend=backend) as node,
        presence.open_presence(node=node) as tracker,
        trio.open_nursery() as nursery,
    ):
        await backend.wait_connected()
        bench = _Node(node, tracker, nursery)
        stdin = trio.lowlevel.FdStream(os.dup(0))
        print("ready", flush=True)
        buffer = b""
        while chunk := await stdin.receive_some():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                print(await bench.command(line.decode().split()), flush=True)
        nursery.cancel_scope.cancel()


# ---- the driver ----------------------------------------------------------------------------


class _Process:
    def __init__(self, url: str, prefix: str, node_id: str, lease: float) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--node", url, prefix, node_id, str(lease)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline().strip()
        if not line:
            raise SystemExit(f"a node process ended (exit {self.popen.wait()})")
        return line

    def ask(self, command: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(command + "\n")
        self.popen.stdin.flush()

    def answer(self) -> dict[str, Any]:
        return {k: float(v) if "," not in v else v for k, v in _pairs(self.readline())}

    def cpu(self) -> float:
        with open(f"/proc/{self.popen.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pairs(line: str) -> list[tuple[str, str]]:
    return [tuple(word.split("=", 1)) for word in line.split()]  # type: ignore[misc]


def _everyone(nodes: list[_Process], command: str) -> list[dict[str, Any]]:
    for node in nodes:
        node.ask(command)
    return [node.answer() for node in nodes]


def _churn(node: _Process, label: str) -> list[str]:
    rows = []
    for count in CHURN:
        node.ask(f"churn {count}")
        joined, left = node.answer()["bytes"].split(",")
        rows.append(
            f"{label:<22}{count:>8}{int(joined):>14,}{int(left):>14,}"
            f"{int(joined) / count:>12.1f}{int(left) / count:>12.1f}"
        )
    return rows


def replica_bytes(count: int) -> float:
    """Bytes per presence that a node holds for another node's (its table alone, traced)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = PresenceTable()
    for index in range(count):
        table.add(TOPIC, f"n1-{index}", Meta(f"n1#{index}", "n1", {"n": index}))
    table.flush()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / count


def run(url: str, count: int, presences: int, lease: float) -> str:
    prefix = f"bench:{uuid.uuid4().hex}"
    share = presences // count
    total = share * count
    nodes = [_Process(url, prefix, f"n{index}", lease) for index in range(count)]
    lines = [f"{count} nodes, {total:,} presences ({share:,} per node), one topic"]
    try:
        before = _everyone(nodes, f"spawn {share}")
        churn = _churn(nodes[0], "members 0")
        cpu_before = [node.cpu() for node in nodes]
        start = time.time()
        joined = _everyone(nodes, "join")
        converged = _everyone(nodes, f"await {total}")
        spent = [node.cpu() - was for node, was in zip(nodes, cpu_before, strict=True)]
        lines.append("")
        lines.append(
            "node  joins/s (wall)  joins/s (CPU)  node CPU s  joins/node CPU s  peers  all listed"
        )
        for index, (join, done) in enumerate(zip(joined, converged, strict=True)):
            lines.append(
                f"n{index:<4}{_rate(share, join['wall']):>15}{_rate(share, join['cpu']):>15}"
                f"{spent[index]:>12.2f}{_rate(share, spent[index]):>18}{int(join['peers']):>7}"
                f"{done['at'] - start:>10.2f} s"
            )
        lines.append(
            "joins/s (wall, CPU): the track calls alone; node CPU s: from the first join until it "
            "lists everyone's (its own joins, deltas out, the others' in)"
        )
        lines.append(f"driver CPU meanwhile: {_cpu():.2f} s (it only waits)")
        grown = zip(before, converged, strict=True)
        per = [(done["rss"] - was["rss"]) / total for was, done in grown]
        lines.append(
            "memory per presence held (RSS growth / presences): "
            + ", ".join(f"n{index} {value:,.0f} B" for index, value in enumerate(per))
            + " (n0..: each holds all; its own also cost a monitor)"
        )
        lines.append(
            f"a replica's table alone (tracemalloc): {replica_bytes(share):,.0f} B per presence"
        )
        churn += _churn(nodes[0], f"members {total:,}")
        lines.append("")
        lines.append(
            f"{'delta bytes':<22}{'changes':>8}{'joins bytes':>14}{'leaves bytes':>14}"
            f"{'B/join':>12}{'B/leave':>12}"
        )
        lines += churn
        victim = nodes.pop()
        killed = time.time()
        victim.popen.kill()
        victim.popen.wait()
        survivors = _everyone(nodes, f"await {total - share}")
        slowest = max(done["at"] for done in survivors) - killed
        lines.append("")
        lines.append(
            f"node killed (SIGKILL): every survivor listed only live presences after "
            f"{slowest:.2f} s (failure detection {lease:g} s; target < 10 s with the default 5 s)"
        )
    finally:
        for node in nodes:
            node.popen.kill()
            node.popen.wait()
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--node"]:
        url, prefix, node_id, lease = sys.argv[2:6]
        trio.run(node_main, url, prefix, node_id, lease)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--presences", type=int, default=20_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument(
        "--failure-detection", type=float, default=5.0, help="the nodes' lease (default: 5)"
    )
    args = parser.parse_args()
    print(run(args.redis, args.nodes, args.presences, args.failure_detection))


if __name__ == "__main__":
    main()

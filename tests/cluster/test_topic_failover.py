"""``kill -9`` of one of two topic servers on Redis while their clients receive a steady
stream: every client resumes on the other server with no gap and no duplicate."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

import actors
from actors import topics
from actors.topics import Post, Retention, Unrecoverable
from actors.topics_redis import RedisTopics
from server.topics.client import TopicClient

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PER_NODE = 10
POSTS = 400
KILLED_AT = 100


@asynccontextmanager
async def topic_node(url: str, prefix: str) -> AsyncIterator[tuple[trio.Process, str]]:
    """A topic server in a process of its own, and its URL."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.cluster.topic_node", url, prefix],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(20):
            port = int((await process.stdout.receive_some()).decode())
        yield process, f"ws://127.0.0.1:{port}/topics"
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


class Tally:
    """One client's sequence check: gaps, duplicates, and whether it was told of a loss."""

    def __init__(self) -> None:
        self.last = 0
        self.gaps = 0
        self.duplicates = 0
        self.unrecoverable = 0

    async def follow(self, client: TopicClient) -> None:
        async for event in client:
            if isinstance(event, Unrecoverable):
                self.unrecoverable += 1
                self.last = event.position.offset
                continue
            assert isinstance(event, Post)
            n = int(event.data)
            if n <= self.last:
                self.duplicates += 1
            else:
                self.gaps += n - self.last - 1
                self.last = n
            if self.last == POSTS:
                return


async def test_clients_of_a_killed_node_resume_on_the_other_with_nothing_lost(
    redis_url: str, prefix: str
) -> None:
    engine = RedisTopics(redis_url, prefix=prefix, retention=Retention(count=10_000))
    async with (
        topic_node(redis_url, prefix) as (doomed, doomed_url),
        topic_node(redis_url, prefix) as (_, other_url),
        actors.open_node("publisher"),
        topics.serving(engine),
        trio.open_nursery() as nursery,
    ):
        await engine.snapshot("stream")  # the topic's epoch exists before anyone subscribes
        tallies: list[Tally] = []
        clients: list[TopicClient] = []
        for urls in [[doomed_url, other_url]] * CLIENTS_PER_NODE + [
            [other_url, doomed_url]
        ] * CLIENTS_PER_NODE:
            client = await nursery_client(nursery, urls)
            await client.subscribe("stream")
            clients.append(client)
        with trio.fail_after(10):
            while any(client.positions["stream"] is None for client in clients):
                await trio.sleep(0.01)
        async with trio.open_nursery() as followers:
            for client in clients:
                tally = Tally()
                tallies.append(tally)
                followers.start_soon(tally.follow, client)
            for n in range(1, POSTS + 1):
                await engine.post("stream", str(n))
                await trio.sleep(0.002)  # a steady stream, not a burst
                if n == KILLED_AT:
                    doomed.kill()  # SIGKILL: no goodbye, no drain
            with trio.fail_after(20):
                while any(tally.last < POSTS for tally in tallies):
                    await trio.sleep(0.05)
        resumed = [tally for tally in tallies if tally.unrecoverable == 0]
        assert len(resumed) == len(tallies) == 2 * CLIENTS_PER_NODE
        assert sum(tally.gaps for tally in tallies) == 0
        assert sum(tally.duplicates for tally in tallies) == 0
        moved = clients[:CLIENTS_PER_NODE]
        assert all(client.connects == 2 for client in moved)
        nursery.cancel_scope.cancel()


async def nursery_client(nursery: trio.Nursery, urls: list[str]) -> TopicClient:
    """A topic client that reconnects quickly, running in ``nursery``."""
    client = TopicClient(urls, min_delay=0.01, max_delay=0.2)
    await nursery.start(client.run)
    return client

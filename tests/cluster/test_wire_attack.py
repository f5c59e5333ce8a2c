"""A writer on the cluster's Redis without the nodes' code: what it publishes or stores is
dropped and counted, never run, and the cluster carries on (issue 23's attack, replayed)."""

from __future__ import annotations

import logging
import pathlib
import pickle
import struct

import coredis
import pytest

from actors import Address
from actors import backend_wire as wire
from tests.actors.kit import Marker, Recorder

from .conftest import backend_of, cluster_node, two_nodes


def _crafted(marker: pathlib.Path, address: Address) -> list[bytes]:
    """A pickle that would create ``marker``, framed as a batch chunk, and bare."""
    crafted = pickle.dumps((wire.SEND, address, Marker(marker)))
    return [struct.pack(">I", len(crafted)) + crafted, crafted]


async def test_crafted_pickles_on_every_cluster_channel_are_dropped_counted_and_never_run(
    redis_url: str, prefix: str, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="corral.cluster")
    marker = tmp_path / "ran"
    async with two_nodes(redis_url, prefix) as (a, b, nursery):
        await backend_of(a).wait_until(lambda: a.backend.is_alive("b"))
        recorder = Recorder()
        target = b.spawn(nursery, recorder)
        attacker = coredis.Redis.from_url(redis_url)
        async with attacker:
            channels = await attacker.pubsub_channels(f"{prefix}*")
            assert len(channels) == 3  # each node's inbox and the events channel
            for _ in range(2):
                for channel in channels:
                    for payload in _crafted(marker, target):
                        await attacker.publish(channel, payload)
        # Each node hears its inbox and the events: 2 rounds x 2 channels x 2 payloads.
        for node in (a, b):
            await backend_of(node).wait_until(lambda node=node: node.cluster().rejected == 8)
        assert not marker.exists()
        assert a.send(target, "still works")
        assert await recorder.wait_for_count(1) == ["still works"]
        assert a.cluster().received == 0 and b.cluster().received == 1
    dropped = [r.getMessage() for r in caplog.records if "does not allow" in r.getMessage()]
    causes = [
        cause for m in dropped for cause in ("broken framing", "trailing bytes") if cause in m
    ]
    assert sorted(causes) == ["broken framing"] * 2 + ["trailing bytes"] * 2  # once per cause


async def test_crafted_pickles_stored_as_names_and_memberships_are_dropped_at_join(
    redis_url: str, prefix: str, tmp_path: pathlib.Path
) -> None:
    marker = tmp_path / "ran"
    async with cluster_node(redis_url, prefix, "a") as a:
        crafted = pickle.dumps(Marker(marker))
        attacker = coredis.Redis.from_url(redis_url)
        async with attacker:
            await attacker.set(f"{prefix}:name:evil", crafted)
            await attacker.sadd(f"{prefix}:members:a-forged", [crafted])
        async with cluster_node(redis_url, prefix, "late") as late:
            assert late.cluster().rejected == 2
            assert late.whereis("evil") is None
        assert a.cluster().connected
    assert not marker.exists()

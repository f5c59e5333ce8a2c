"""Cross-node messages lost while Redis is unreachable, as /metrics and the dashboard show
them (two nodes on a redis-server of the test's own, which it stops)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

import actors
from server.ops.dashboard.snapshot import cluster_summary
from server.ops.metrics import exposition

from .conftest import backend_of, cluster_node
from .redis_kit import RedisServer


async def test_messages_lost_while_redis_is_down_are_in_the_metrics_and_on_the_dashboard(
    private_redis: RedisServer, prefix: str
) -> None:
    url = private_redis.url
    async with cluster_node(url, prefix, "a") as node, cluster_node(url, prefix, "b"):
        await backend_of(node).wait_until(lambda: node.backend.is_alive("b"))
        private_redis.stop()
        await backend_of(node).wait_until(lambda: not node.cluster().connected)
        for number in range(3):
            assert not node.send(actors.Address("b", 1), number)
        text = exposition(node).decode()
        shown = cluster_summary(node)
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["corral_cluster_messages_lost_total"] == 3
    assert samples["corral_cluster_connected"] == 0
    assert samples["corral_cluster_messages_sent_total"] == 0
    assert shown is not None and shown["lost"] == 3 and not shown["connected"]


async def test_a_node_alone_exports_no_cluster_series() -> None:
    async with actors.open_node("alone") as node:
        assert "corral_cluster" not in exposition(node).decode()
        assert cluster_summary(node) is None

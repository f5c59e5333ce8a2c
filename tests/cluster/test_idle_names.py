"""Names that sit idle cost Redis nothing: a node's heartbeat keeps all of them at once (a chat
room registers two names, and 2,000 idle rooms once cost 4,000 EVALSHA a second)."""

from __future__ import annotations

import coredis
import trio

from tests.actors.kit import idle

from .conftest import HEARTBEAT, cluster_node
from .redis_kit import RedisServer


async def _calls(client: coredis.Redis[bytes], command: str) -> int:
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_heartbeats_renew_no_name_one_by_one(private_redis: RedisServer, prefix: str) -> None:
    client = coredis.Redis.from_url(private_redis.url)
    async with (
        client,
        cluster_node(private_redis.url, prefix, "a") as node,
        trio.open_nursery() as nursery,
    ):
        for number in range(200):
            node.spawn(nursery, idle, name=f"room:{number}")
        for number in range(200):
            await node.wait_for(f"room:{number}", timeout=5)  # claimed: Redis answered
        claims, heartbeats = await _calls(client, "evalsha"), await _calls(client, "set")
        with trio.fail_after(100 * HEARTBEAT):
            while await _calls(client, "set") < heartbeats + 5:  # one SET per heartbeat
                await trio.sleep(HEARTBEAT)
        assert await _calls(client, "evalsha") == claims
        nursery.cancel_scope.cancel()

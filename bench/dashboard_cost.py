"""What the dashboard and a scrape cost the server, in CPU per call, at 1 to 5,000 connections:
the figures behind its share of the echo benchmark without a whole-server comparison's noise,
and how they grow with the connections held (every update reads every actor).

corral's echo example runs in-process with the dashboard on; clients hold connections open.
For each count, the CPU time (``time.process_time``) of one sample of the history plus one
page update (``snapshot`` and its JSON), and of one ``/metrics`` exposition, averaged over
``N`` calls. An open page costs one update a second; the sampler one sample a second.

Run: ``python bench/dashboard_cost.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.echo import app  # noqa: E402
from server.ops.dashboard import with_dashboard  # noqa: E402
from server.ops.dashboard.history import history_of, take_sample  # noqa: E402
from server.ops.dashboard.snapshot import snapshot  # noqa: E402
from server.ops.metrics import exposition  # noqa: E402
from server.ops.stats import stats_of  # noqa: E402
from server.run import embed  # noqa: E402

N = 100
COUNTS = (1, 50, 1000, 5000)


async def _hold(port: int, task_status: trio.TaskStatus[None]) -> None:
    async with open_websocket_url(f"ws://127.0.0.1:{port}/"):
        task_status.started()
        await trio.sleep_forever()


async def main() -> None:
    """Print both costs per connection count."""
    async with embed.serving(with_dashboard(app), port=0) as running:
        node = running.server.node
        assert node is not None
        async with trio.open_nursery() as nursery:
            held = 0
            for count in COUNTS:
                for _ in range(count - held):
                    await nursery.start(_hold, running.port)
                held = count
                await trio.sleep(2.5)  # a few samples in the history
                started = time.process_time()
                for _ in range(N):
                    take_sample(node, stats_of(node), 0, 0.0)
                    update = snapshot(
                        node,
                        stats_of(node),
                        history_of(node),
                        since=-1,
                        now=time.time(),
                        feed_route="/corral/live",
                    )
                    text = json.dumps(update, separators=(",", ":"))
                update_ms = (time.process_time() - started) / N * 1e3
                started = time.process_time()
                for _ in range(N):
                    exposition(node)
                scrape_ms = (time.process_time() - started) / N * 1e3
                print(
                    f"{count} connection(s): a sample and a page update {update_ms:.2f} ms CPU "
                    f"({len(text):,} bytes of JSON, whole history); a /metrics exposition "
                    f"{scrape_ms:.2f} ms CPU ({N} calls each, mean)"
                )
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)

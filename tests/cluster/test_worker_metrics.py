"""``corral serve --workers 2 --metrics`` as real processes: one scrape of /metrics, served
by whichever worker takes it, counts the connections and messages of both; the parent removes
the metrics directory when it exits."""

from __future__ import annotations

import re
import signal
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.server.kit import get, http_exchange

from .test_workers import STARTUP, _connections_on_distinct_workers, workers


async def scrape_totals(port: int) -> dict[str, float]:
    """``/metrics``, each family's samples added up over their labels."""
    answer = await http_exchange(port, get("/metrics"))
    assert answer.status == 200, answer
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


@pytest.mark.slow
async def test_one_scrape_reports_the_connections_and_messages_of_every_worker(
    tmp_path: Path,
) -> None:
    async with workers(tmp_path, 2, "--metrics") as parent:
        directory = Path(re.findall(r"combined through (\S+)", parent.log)[0])
        assert directory.is_dir()
        async with AsyncExitStack() as stack:
            opened = await _connections_on_distinct_workers(stack, parent.port, 2)
            for ws, _ in opened:
                await ws.send_message("hello")
                await ws.get_message()
            wanted = {
                "corral_connections_open": len(opened),
                "corral_connections_opened_total": len(opened),
                "corral_frames_received_total": len(opened),
            }
            # Each worker writes its figures once a second: poll until both are in.
            with trio.fail_after(STARTUP):
                while True:
                    totals = await scrape_totals(parent.port)
                    if all(totals.get(name) == value for name, value in wanted.items()):
                        break
                    await trio.sleep(0.2)
            assert len(list(directory.glob("*.prom"))) == 2
        parent.process.send_signal(signal.SIGTERM)
        with trio.fail_after(STARTUP):
            assert await parent.process.wait() == 0
    assert not directory.exists()

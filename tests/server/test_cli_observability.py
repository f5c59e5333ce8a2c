"""``corral serve --metrics --log-format json`` as a subprocess: /metrics over a real socket
after real traffic; the close line and the access line as JSON objects with typed fields."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .corral_process import corral_serve
from .kit import client, get, http_exchange


async def test_serve_with_metrics_and_json_logs(tmp_path: Path) -> None:
    args = ("examples.echo:app", "--metrics", "--log-format", "json")
    async with corral_serve(tmp_path, *args) as corral:
        async with client(f"ws://127.0.0.1:{corral.port}/") as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
        await corral.wait_for_log(r'"message": "closed 127\.0\.0\.1')
        answer = await http_exchange(corral.port, get("/metrics"))
        await corral.wait_for_log(r'"message": "127\.0\.0\.1:\d+ GET /metrics -> 200')
    assert answer.status == 200
    families = {f.name: f for f in text_string_to_metric_families(answer.body.decode())}
    [received] = families["corral_frames_received"].samples
    assert received.value == 1
    closes = {
        (s.labels["code"], s.labels["reason"]): s.value
        for s in families["corral_connections_closed"].samples
    }
    assert closes == {("1000", "client_closed"): 1}

    lines = [json.loads(line) for line in corral.log.splitlines() if line.startswith("{")]
    assert len(lines) == len(corral.log.splitlines())  # every line is one JSON object
    [closed] = [line for line in lines if line["message"].startswith("closed ")]
    assert closed["path"] == "/"
    assert closed["code"] == 1000
    assert closed["aborted"] is False
    assert closed["reason"] == "client closed 1000"
    assert closed["peer"].startswith("127.0.0.1:")
    assert isinstance(closed["duration"], float)
    assert closed["message"] == (
        f"closed {closed['peer']} / code=1000 reason=client closed 1000"
        f" after {closed['duration']:.3f} s"
    )

    [access] = [line for line in lines if line.get("method")]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/metrics", 200)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", access["peer"])
    assert isinstance(access["duration"], float)
    assert access["message"] == (
        f"{access['peer']} GET /metrics -> 200 in {access['duration']:.3f} s"
    )
    for line in lines:
        assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0), line

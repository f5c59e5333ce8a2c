"""``corral serve module:app`` with a plain ASGI app: served alone, with corral's access log,
lifespan run at start and drain, a failed startup exiting 1 with one line."""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from .corral_process import CORRAL, ROOT, corral_serve
from .http_client import HttpClient


async def test_an_asgi_app_is_served_alone_and_drained(tmp_path: Path) -> None:
    async with corral_serve(tmp_path, "tests.server.asgi_site:app") as corral:
        client = await HttpClient.open(corral.port)
        reply = await client.request("GET", "/hello?name=ada")
        assert (reply.status, reply.body) == (200, b"hello ada")
        assert (await client.request("GET", "/nowhere")).status == 404
        await client.aclose()
        await corral.wait_for_log(r"GET /nowhere -> 404")
        corral.process.send_signal(signal.SIGTERM)
        assert await corral.exit_code(timeout=10) == 0
    log = corral.log
    assert log.index("site startup") < log.index("listening on")
    assert "GET /hello?name=ada -> 200" in log
    assert log.index("drained") > log.index("site shutdown")


async def test_a_failed_startup_exits_1_with_one_line(tmp_path: Path) -> None:
    run = await trio.run_process(
        [str(CORRAL), "serve", "tests.server.asgi_site:broken", "--port", "0"],
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert run.returncode == 1
    errors = run.stderr.decode()
    assert errors.strip().splitlines()[-1] == (
        "corral: the ASGI app's startup failed: RuntimeError: no database"
    ), errors
    assert "listening on" not in errors

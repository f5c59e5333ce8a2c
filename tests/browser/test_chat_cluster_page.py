"""Two chat pages on two ``corral serve`` nodes sharing a Redis, in headless Chromium: the
room's node is killed, and the other page's member list updates by itself while what its
person typed meanwhile waits in the box and then goes through."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.cluster.redis_kit import RedisServer, free_port, unique_prefix

from .test_chat_page import join, say

ROOT = Path(__file__).resolve().parents[2]
CORRAL = Path(sys.executable).with_name("corral")
STARTUP = 30.0
MOVED_MS = 15_000
"""A generous bound on the room moving (1 s failure detection, then a start): expect waits
for the event, this only stops a broken run hanging."""


@contextmanager
def chat_node(
    folder: Path, redis_url: str, prefix: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``corral serve examples.chat:app`` on the cluster, until the block ends (or it is killed)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "corral.log"
    command = [str(CORRAL), "serve", "examples.chat:app", "--port", str(port)]
    command += ["--redis", redis_url, "--cluster-prefix", prefix, "--failure-detection", "1"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP
        while not re.search(rf"listening on ws://127\.0\.0\.1:{port}", log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)  # another process: its log is all there is to watch
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.kill()
        process.wait()


def test_the_rooms_node_killed_the_other_page_updates_and_its_message_goes_through(
    open_page: Callable[..., Page],
    output_dir: Path,
    screenshot: Callable[[Page, str], Path],
) -> None:
    redis = RedisServer()
    redis.start()
    prefix = unique_prefix()
    try:
        with (
            chat_node(output_dir / "a", redis.url, prefix) as (a_url, a_process),
            chat_node(output_dir / "b", redis.url, prefix) as (b_url, _),
        ):
            ann = open_page(f"{a_url}/?room=lobby")
            join(ann, "ann")  # the room starts on a
            bob = open_page(f"{b_url}/?room=lobby")
            join(bob, "bob")
            expect(bob.locator("#members li")).to_have_count(2)
            expect(ann.locator("#members li")).to_have_count(2)
            a_process.kill()
            say(bob, "typed while the room moves")
            expect(bob.locator("#message-input")).to_have_value("typed while the room moves")
            expect(bob.locator("#members li")).to_have_count(1, timeout=MOVED_MS)
            expect(bob.locator("#members")).not_to_contain_text("ann")
            expect(bob.locator("#messages")).to_contain_text("ann left")
            last = bob.locator("#messages .message").last
            expect(last).to_contain_text("typed while the room moves", timeout=MOVED_MS)
            expect(bob.locator("#message-input")).to_have_value("")
            say(bob, "and after")
            expect(bob.locator("#messages .message").last).to_contain_text("and after")
            screenshot(bob, "after-the-move")
    finally:
        redis.stop()

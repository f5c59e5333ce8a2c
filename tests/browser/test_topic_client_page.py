"""The browser topic client (``corral-topics.js``) in headless Chromium: offline and back (the
DevTools network emulation) shows each missed post once; a reload resumes from sessionStorage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio
from playwright.sync_api import Page, expect

import actors
from actors import topics
from server import App, Request, Response, http_route, websocket
from server.run.supervised import Server
from server.topics import TopicsHandler, client_script

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>
<p id="state">loading</p><ol id="posts"></ol>
<script type="module">
import { TopicClient } from "/corral-topics.js";
const posts = document.getElementById("posts");
const line = (text) => {
  const li = document.createElement("li");
  li.textContent = text;
  posts.append(li);
};
const client = new TopicClient(`ws://${location.host}/topics`, {
  storage: sessionStorage, minDelay: 50, maxDelay: 500,
  onState: (state) => { document.getElementById("state").textContent = state; },
});
client.subscribe("news", {
  onPost: (data) => line(data),
  onUnrecoverable: (answer) => line(`lost: ${answer.why}`),
});
</script></body></html>"""


def page_route(request: Request) -> Response:
    return Response(200, [("Content-Type", "text/html; charset=utf-8")], PAGE)


app = App([websocket("/topics", TopicsHandler()), client_script(), http_route("/", page_route)])


@attrs.frozen
class Served:
    url: str
    node: actors.Node
    token: trio.lowlevel.TrioToken

    def post(self, data: str) -> None:
        """Post to ``news`` from the server's thread."""

        async def post() -> None:
            await topics.engine(self.node).post("news", data)

        trio.from_thread.run(post, trio_token=self.token)


async def serve(*, task_status: trio.TaskStatus[Served]) -> None:
    server = Server(app, host="127.0.0.1", port=0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        assert server.node is not None
        token = trio.lowlevel.current_trio_token()
        task_status.started(Served(f"http://127.0.0.1:{port}/", server.node, token))


class Network:
    """DevTools network emulation for one page: take its network away, give it back."""

    def __init__(self, page: Page) -> None:
        self.session = page.context.new_cdp_session(page)
        self.session.send("Network.enable")

    def offline(self, yes: bool) -> None:
        conditions = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
        self.session.send("Network.emulateNetworkConditions", {"offline": yes, **conditions})


def test_offline_and_back_shows_each_missed_post_once_and_a_reload_resumes(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    served: Served = serve_trio(serve)
    page = open_page(served.url)
    state, posts = page.locator("#state"), page.locator("#posts li")
    expect(state).to_have_text("open")
    served.post("before")
    expect(posts).to_have_text(["before"])
    network = Network(page)
    network.offline(True)
    expect(state).not_to_have_text("open")
    for n in range(3):
        served.post(f"missed {n}")
    network.offline(False)
    expect(state).to_have_text("open")
    expect(posts).to_have_text(["before", "missed 0", "missed 1", "missed 2"])
    page.reload()  # sessionStorage keeps the position: only what follows it comes
    expect(state).to_have_text("open")
    served.post("after the reload")
    expect(posts).to_have_text(["after the reload"])

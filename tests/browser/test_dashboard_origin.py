"""A page from another origin, opened in the same browser as the operator's, cannot read the
dashboard's live feed; the dashboard's own page still can, and a token in its URL becomes a
cookie (headless Chromium)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from playwright.sync_api import Page, expect

from server import App, Request, Response, embed, http_route
from server.dashboard import with_dashboard

TOKEN = "s3cret-token"
ATTACK_PAGE = """<!doctype html><title>elsewhere</title><script>
window.result = {messages: 0, closed: null};
const feed = new WebSocket("ws://127.0.0.1:%d/corral/live");
feed.onmessage = () => { window.result.messages += 1; };
feed.onclose = (event) => { window.result.closed = event.code; };
</script>"""


async def serve(app: App, host: str, *, task_status: trio.TaskStatus[int]) -> None:
    async with embed.serving(app, host=host, port=0) as running:
        task_status.started(running.port)
        await trio.sleep_forever()


def attack_site(dashboard_port: int) -> App:
    """Another origin (127.0.0.2) whose page opens the dashboard's feed on 127.0.0.1."""

    def page(request: Request) -> Response:
        body = (ATTACK_PAGE % dashboard_port).encode()
        return Response(200, [("Content-Type", "text/html; charset=utf-8")], body)

    return App([http_route("/", page)])


def test_a_page_of_another_origin_gets_no_snapshot_while_the_dashboard_page_does(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    port = serve_trio(serve, with_dashboard(App([])), "127.0.0.1")
    elsewhere = serve_trio(serve, attack_site(port), "127.0.0.2")

    attack = open_page(f"http://127.0.0.2:{elsewhere}/")
    attack.wait_for_function("window.result.closed !== null || window.result.messages > 0")
    result = attack.evaluate("window.result")
    assert result == {"messages": 0, "closed": 1006}  # the handshake was refused (403)

    dashboard = open_page(f"http://127.0.0.1:{port}/corral/")
    expect(dashboard.locator("#status")).to_have_text("live")
    expect(dashboard.locator("#routes tbody")).to_contain_text("/corral/live")


def test_a_token_in_the_url_becomes_a_cookie_and_the_page_goes_live(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    port = serve_trio(serve, with_dashboard(App([]), token=TOKEN), "127.0.0.1")
    page = open_page(f"http://127.0.0.1:{port}/corral/?token={TOKEN}")
    assert page.url == f"http://127.0.0.1:{port}/corral/"  # the token left the address bar
    expect(page.locator("#status")).to_have_text("live")  # the feed went with the cookie
    [cookie] = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/corral")
    assert TOKEN not in cookie["value"]
    stranger = open_page()
    assert stranger.goto(f"http://127.0.0.1:{port}/corral/").status == 403

"""A page from another origin, opened in the same browser as the operator's, cannot read the
dashboard's live feed; the dashboard's own page still can, and a token in its URL becomes a
cookie (headless Chromium)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from playwright.sync_api import Page, expect

from server import App, Request, Response, http_route
from server.ops.dashboard import with_dashboard
from server.run import embed

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


def page_site(html: str) -> App:
    """A site of one page (served from another origin: 127.0.0.2)."""

    def page(request: Request) -> Response:
        return Response(200, [("Content-Type", "text/html; charset=utf-8")], html.encode())

    return App([http_route("/", page)])


def test_a_page_of_another_origin_gets_no_snapshot_while_the_dashboard_page_does(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    port = serve_trio(serve, with_dashboard(App([])), "127.0.0.1")
    elsewhere = serve_trio(serve, page_site(ATTACK_PAGE % port), "127.0.0.2")

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
    page.wait_for_url(f"http://127.0.0.1:{port}/corral/")  # the token left the address bar
    expect(page.locator("#status")).to_have_text("live")  # the feed went with the cookie
    [cookie] = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/corral")
    assert TOKEN not in cookie["value"]
    stranger = open_page()
    assert stranger.goto(f"http://127.0.0.1:{port}/corral/").status == 403


def test_a_link_with_the_token_from_another_site_opens_the_live_page(
    serve_trio: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    """Strict cookies do not ride a redirect chain that began on another site."""
    port = serve_trio(serve, with_dashboard(App([]), token=TOKEN), "127.0.0.1")
    link = f"http://127.0.0.1:{port}/corral/?token={TOKEN}"
    elsewhere = serve_trio(serve, page_site(f'<a id="go" href="{link}">dashboard</a>'), "127.0.0.2")
    page = open_page(f"http://127.0.0.2:{elsewhere}/")
    page.click("#go")
    page.wait_for_url(f"http://127.0.0.1:{port}/corral/")
    expect(page.locator("#status")).to_have_text("live")

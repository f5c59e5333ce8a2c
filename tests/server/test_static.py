"""Serving files from a directory safely, and the health check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.front.files import StaticFiles, content_type, health_check
from server.front.http import Request
from server.front.router import Route, Router


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "css").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "css" / "main.css").write_text("body {}")
    (root / "css" / "index.html").write_text("css index")
    (root / "data.bin").write_bytes(b"\x00\x01")
    (root / ".env").write_text("SECRET=1")
    (tmp_path / "secret.txt").write_text("outside the root")
    return root


async def get(
    handler: StaticFiles, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """Route ``path`` through ``/static/[...]`` as the listener would, then call the handler."""
    match = Router([Route("/static/[...]", handler, kind="http")]).match(path)
    assert match is not None
    request = Request(method=method, target=path, path=path, query={}, headers=()).with_match(match)
    response = await handler(request)
    return response.status, dict(response.headers), response.body


async def test_file_is_served_with_its_content_type(site: Path) -> None:
    status, headers, body = await get(StaticFiles(site), "/static/css/main.css")
    assert (status, body) == (200, b"body {}")
    assert headers["Content-Type"] == "text/css; charset=utf-8"


async def test_unknown_extension_is_octet_stream(site: Path) -> None:
    status, headers, _ = await get(StaticFiles(site), "/static/data.bin")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"


async def test_root_and_directories_serve_their_index(site: Path) -> None:
    assert (await get(StaticFiles(site), "/static"))[2] == b"<h1>home</h1>"
    assert (await get(StaticFiles(site), "/static/css/"))[2] == b"css index"


async def test_missing_file_is_404(site: Path) -> None:
    assert (await get(StaticFiles(site), "/static/nope.html"))[0] == 404


async def test_directory_without_index_is_404(site: Path) -> None:
    (site / "empty").mkdir()
    assert (await get(StaticFiles(site), "/static/empty"))[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/css/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2Fsecret.txt",
        "/static/css%2F..%2F..%2Fsecret.txt",
        "/static/%2Fetc%2Fpasswd",
        "/static/..%5Csecret.txt",
        "/static/a%00b",
        "/static/.env",
        "/static/css//main.css",
    ],
)
async def test_traversal_and_hidden_paths_are_404(site: Path, path: str) -> None:
    assert (await get(StaticFiles(site), path))[0] == 404


async def test_symlink_out_of_the_root_is_404(site: Path) -> None:
    os.symlink(site.parent / "secret.txt", site / "leak.txt")
    os.symlink(site.parent, site / "up")
    assert (await get(StaticFiles(site), "/static/leak.txt"))[0] == 404
    assert (await get(StaticFiles(site), "/static/up/secret.txt"))[0] == 404


async def test_symlink_inside_the_root_is_followed(site: Path) -> None:
    os.symlink(site / "css" / "main.css", site / "alias.css")
    assert (await get(StaticFiles(site), "/static/alias.css"))[2] == b"body {}"


async def test_root_given_through_a_symlink_still_serves(site: Path, tmp_path: Path) -> None:
    os.symlink(site, tmp_path / "link")
    assert (await get(StaticFiles(tmp_path / "link"), "/static/index.html"))[0] == 200


async def test_symlink_loop_is_404(site: Path) -> None:
    os.symlink(site / "loop", site / "loop")
    assert (await get(StaticFiles(site), "/static/loop"))[0] == 404


async def test_head_gets_the_same_response_as_get(site: Path) -> None:
    assert await get(StaticFiles(site), "/static/index.html", "HEAD") == await get(
        StaticFiles(site), "/static/index.html"
    )


async def test_other_methods_get_405(site: Path) -> None:
    status, headers, _ = await get(StaticFiles(site), "/static/index.html", "POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_text_types_are_declared_utf8() -> None:
    assert content_type(Path("a.html")) == "text/html; charset=utf-8"
    assert content_type(Path("a.png")) == "image/png"


def test_health_check_answers_ok() -> None:
    response = health_check(
        Request(method="GET", target="/healthz", path="/healthz", query={}, headers=())
    )
    assert (response.status, response.body) == (200, b"ok\n")


def test_health_check_refuses_post() -> None:
    response = health_check(
        Request(method="POST", target="/healthz", path="/healthz", query={}, headers=())
    )
    assert response.status == 405

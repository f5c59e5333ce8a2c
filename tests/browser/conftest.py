"""Fixtures for tests that drive a real headless Chromium through Playwright.

Browser tests are plain **sync** test functions. Playwright's async API runs only on asyncio,
and its sync objects belong to the thread that made them, so the browser stays on pytest's main
thread and the server under test runs in its own ``trio.run`` on a background thread
(``serve_trio``); a blocking browser call then never stalls the server it is talking to::

    def test_message_reaches_the_other_member(serve_trio, open_page, screenshot):
        url = serve_trio(chat_server)          # chat_server(task_status=...) -> started(url)
        ann, bob = open_page(url), open_page(url)  # two isolated contexts (own cookies, storage)
        ...
        expect(bob.locator("#messages")).to_contain_text("hello")
        screenshot(bob, "after-hello")         # test-output/browser/<test>/after-hello.png

The browser is Debian's ``/usr/bin/chromium`` (``scripts/setup-browser`` installs it); nothing
downloads a browser build. When a test fails, every page it opened is screenshotted and its
console output saved next to the screenshots.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# --disable-background-networking and friends: this machine's closed network refuses the
# connections Chromium makes on its own, and waiting on them slows every launch.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_TIMEOUT_MS = 10_000
SERVER_THREAD_TIMEOUT_S = 10.0


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Record each phase's report on the item, so fixtures can tell a failed test at teardown."""
    report = yield
    setattr(item, f"_browser_report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole session; tests get isolated contexts from it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup-browser (./dev test does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """This test's folder for screenshots and logs: ``test-output/browser/<test id>/``."""
    test_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")
    return Path(request.config.rootpath, "test-output", "browser", test_id)


@pytest.fixture
def screenshot(output_dir: Path) -> Callable[[Page, str], Path]:
    """``screenshot(page, name)`` saves a full-page PNG under ``output_dir``; returns its path."""

    def take(page: Page, name: str) -> Path:
        path = output_dir / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.fixture
def open_page(
    request: pytest.FixtureRequest, browser: Browser, output_dir: Path
) -> Iterator[Callable[..., Page]]:
    """``open_page(url=None, *, width=1024, height=700) -> Page``, each in a fresh context.

    Every call is a separate browser context, so two pages are two independent people (no
    shared cookies or storage). Contexts close at teardown; if the test failed, each page is
    screenshotted first (``page-1-failed.png``...) and its console output saved beside it.
    """
    opened: list[tuple[BrowserContext, Page, list[str]]] = []

    def open_one(url: str | None = None, *, width: int = 1024, height: int = 700) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        opened.append((context, page, console))
        if url is not None:
            page.goto(url)
        return page

    yield open_one

    failed = any(
        getattr(getattr(request.node, f"_browser_report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    for number, (context, page, console) in enumerate(opened, start=1):
        if failed:
            _save_evidence(page, console, output_dir / f"page-{number}-failed")
        context.close()


def _save_evidence(page: Page, console: list[str], stem: Path) -> None:
    """Best effort: a failing test's pages may already be closed or crashed."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".console.txt").write_text("".join(f"{line}\n" for line in console))
    try:
        page.screenshot(path=stem.with_suffix(".png"), full_page=True)
    except Exception:  # noqa: BLE001 - evidence only, never mask the real failure
        pass


class _TrioThread:
    """Runs ``await async_fn(*args, task_status=...)`` in its own ``trio.run`` on a thread."""

    def __init__(self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        self._async_fn = async_fn
        self._args = args
        self._started = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel_scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._run, name=f"trio:{async_fn.__name__}")

    def start(self) -> Any:
        """Start the thread and return what the function passed to ``task_status.started``."""
        self._thread.start()
        if not self._started.wait(SERVER_THREAD_TIMEOUT_S):
            raise TimeoutError(
                f"{self._async_fn.__name__} did not call task_status.started() "
                f"within {SERVER_THREAD_TIMEOUT_S} s"
            )
        if self._error is not None:
            error, self._error = self._error, None  # reported here, not again at stop()
            raise error
        return self._value

    def stop(self) -> None:
        """Cancel the function, wait for its thread, and re-raise anything it died of."""
        if self._token is not None and self._cancel_scope is not None:
            try:
                self._token.run_sync_soon(self._cancel_scope.cancel)
            except trio.RunFinishedError:
                pass
        self._thread.join(SERVER_THREAD_TIMEOUT_S)
        if self._thread.is_alive():
            raise TimeoutError(
                f"{self._thread.name} did not stop within {SERVER_THREAD_TIMEOUT_S} s"
            )
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            self._error = error
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._cancel_scope = nursery.cancel_scope
            self._value = await nursery.start(self._async_fn, *self._args)
            self._started.set()


@pytest.fixture
def serve_trio() -> Iterator[Callable[..., Any]]:
    """``serve_trio(async_fn, *args)``: run a trio server on a background thread for this test.

    ``async_fn`` is called as ``async_fn(*args, task_status=...)`` in a fresh ``trio.run`` and
    must call ``task_status.started(value)`` once it listens (e.g. with its URL or port);
    ``serve_trio`` returns that value. At teardown the server is cancelled and joined, and an
    exception it died of fails the test.
    """
    threads: list[_TrioThread] = []

    def serve(async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        thread = _TrioThread(async_fn, args)
        threads.append(thread)
        return thread.start()

    yield serve
    for thread in reversed(threads):
        thread.stop()

"""SIGTERM drain under load: N clients connected to ``corral serve``, then SIGTERM.

Starts ``corral serve examples.echo:app --port 0`` as a subprocess, connects ``--clients``
trio-websocket clients from this process (each echoes one message first), sends SIGTERM and
checks what a drain promises:

- every client receives close code 1001;
- every connection's terminate runs: one ``corral.server`` "closed ... code=1001" log line each;
- the server logs "drained" and exits 0 within its drain timeout.

Prints the figures and exits 0 if every check holds, 1 otherwise. 127.0.0.1 only, bounded:
connecting, draining and the final wait each have a deadline.

    python bench/drain.py --clients 1000
"""

from __future__ import annotations

import argparse
import collections
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import attrs
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CONNECT_CONCURRENCY = 100
"""Handshakes in flight at once (well under the listen backlog)."""
_LISTENING = re.compile(r"listening on ws://[^:]+:(\d+)")
_CLOSED_1001 = re.compile(r"corral\.server: closed .* code=1001 ")


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by the server subprocess) to ``wanted`` if the hard
    limit allows; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def corral_command(app: str, drain_timeout: float) -> list[str]:
    """``corral serve app --port 0`` with the console script next to this Python if present."""
    script = Path(sys.executable).parent / "corral"
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "server.run.cli"]
    if not script.exists() and shutil.which("corral"):
        prefix = ["corral"]
    return [*prefix, "serve", app, "--host", HOST, "--port", "0",
            "--drain-timeout", str(drain_timeout)]  # fmt: skip


@attrs.define
class ServerLog:
    """The server's stderr, written to a file (a pipe the client process must keep draining
    could stall the server's logging, hence its event loop, and skew the timings)."""

    path: Path

    def lines(self) -> list[str]:
        return self.path.read_text(errors="replace").splitlines()

    async def port(self, timeout: float) -> int:
        """The port from the "listening on" line, waiting (bounded) for it."""
        with trio.fail_after(timeout):
            while True:
                for line in self.lines():
                    match = _LISTENING.search(line)
                    if match:
                        return int(match.group(1))
                await trio.sleep(0.05)

    def count(self, pattern: re.Pattern[str]) -> int:
        return sum(1 for line in self.lines() if pattern.search(line))

    def problems(self) -> list[str]:
        return [line for line in self.lines() if " WARNING " in line or " ERROR " in line]


@attrs.define
class Clients:
    """What the clients saw: how many connected, and each one's close code."""

    connected: int = 0
    all_connected: trio.Event = attrs.Factory(trio.Event)
    close_codes: collections.Counter[int | None] = attrs.Factory(collections.Counter)
    failures: list[str] = attrs.Factory(list)
    closed_at: list[float] = attrs.Factory(list)


async def one_client(
    url: str, index: int, total: int, clients: Clients, limiter: trio.CapacityLimiter
) -> None:
    """Connect, echo once, then wait for the server to close; record the close code."""
    try:
        async with limiter:
            ws_context = open_websocket_url(url)
            ws = await ws_context.__aenter__()
        try:
            await ws.send_message(f"hello {index}")
            if await ws.get_message() != f"hello {index}":
                clients.failures.append(f"client {index}: wrong echo")
            clients.connected += 1
            if clients.connected == total:
                clients.all_connected.set()
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed as closed:
                clients.close_codes[closed.reason.code if closed.reason else None] += 1
                clients.closed_at.append(trio.current_time())
        finally:
            await ws_context.__aexit__(None, None, None)
    except Exception as exc:  # noqa: BLE001 - every client failure is a finding, not a crash
        clients.failures.append(f"client {index}: {exc!r}")
        clients.close_codes[None] += 1


@attrs.frozen
class DrainResult:
    clients: int
    connected: int
    close_codes: dict[int | None, int]
    closed_lines: int
    drained_logged: bool
    exit_code: int | None
    seconds_to_exit: float | None
    seconds_to_last_close: float | None
    drain_timeout: float
    problems: tuple[str, ...]
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return (
            self.connected == self.clients
            and self.close_codes == {1001: self.clients}
            and self.closed_lines == self.clients
            and self.drained_logged
            and self.exit_code == 0
            and self.seconds_to_exit is not None
            and self.seconds_to_exit < self.drain_timeout
            and not self.failures
        )

    def report(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.close_codes.items(), key=str))
        lines = [
            f"clients connected        {self.connected} / {self.clients}",
            f"close codes seen         {codes or '-'}",
            f"'closed code=1001' lines {self.closed_lines}",
            f"'drained' logged         {'yes' if self.drained_logged else 'no'}",
            f"exit code                {self.exit_code}",
            f"SIGTERM -> last close    {_seconds(self.seconds_to_last_close)}",
            f"SIGTERM -> exit          {_seconds(self.seconds_to_exit)}"
            f" (drain timeout {self.drain_timeout:g} s)",
            f"warnings/errors logged   {len(self.problems)}",
        ]
        lines += [f"  {line}" for line in self.problems[:10]]
        lines += [f"  {failure}" for failure in self.failures[:10]]
        lines.append("PASS" if self.ok else "FAIL")
        return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


async def run_drain(
    clients_wanted: int, *, app: str = "examples.echo:app", drain_timeout: float = 30.0,
    connect_timeout: float = 60.0,
) -> DrainResult:  # fmt: skip
    """Start the server, connect the clients, SIGTERM it, and collect what happened."""
    with tempfile.TemporaryDirectory(prefix="corral-drain-") as tmp:
        log = ServerLog(Path(tmp) / "server.log")
        with log.path.open("wb") as stderr:
            process = await trio.lowlevel.open_process(
                corral_command(app, drain_timeout),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            clients, signalled_at, seconds_to_exit = await _connect_and_signal(
                process, log, clients_wanted, drain_timeout, connect_timeout
            )
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        lines = log.lines()
        last_close = max(clients.closed_at, default=None)
        return DrainResult(
            clients=clients_wanted,
            connected=clients.connected,
            close_codes=dict(clients.close_codes),
            closed_lines=log.count(_CLOSED_1001),
            drained_logged=any(line.endswith("corral.server: drained") for line in lines),
            exit_code=process.returncode,
            seconds_to_exit=seconds_to_exit,
            seconds_to_last_close=(
                None if last_close is None or signalled_at is None else last_close - signalled_at
            ),
            drain_timeout=drain_timeout,
            problems=tuple(log.problems()),
            failures=tuple(clients.failures),
        )


async def _connect_and_signal(
    process: trio.Process,
    log: ServerLog,
    clients_wanted: int,
    drain_timeout: float,
    connect_timeout: float,
) -> tuple[Clients, float | None, float | None]:
    """Connect the clients, SIGTERM the server once all are up (or the time is out), and
    wait (bounded) for it to exit; return the clients' record and the two timestamps."""
    clients = Clients()
    url = f"ws://{HOST}:{await log.port(timeout=10)}/"
    limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)
    seconds_to_exit: float | None = None
    async with trio.open_nursery() as client_tasks:
        for index in range(clients_wanted):
            client_tasks.start_soon(one_client, url, index, clients_wanted, clients, limiter)
        with trio.move_on_after(connect_timeout):
            await clients.all_connected.wait()
        signalled_at = trio.current_time()
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(drain_timeout + 5) as waiting:
            await process.wait()
            seconds_to_exit = trio.current_time() - signalled_at
        if waiting.cancelled_caught:
            client_tasks.cancel_scope.cancel()
        # The clients see their close before the server exits; give stragglers a moment.
        with trio.move_on_after(2):
            while len(clients.closed_at) + len(clients.failures) < clients.connected:
                await trio.sleep(0.05)
        client_tasks.cancel_scope.cancel()
    return clients, signalled_at, seconds_to_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--app", default="examples.echo:app")
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    limit = raise_nofile(2 * args.clients + 256)
    if limit < args.clients + 256:
        print(f"RLIMIT_NOFILE is {limit}: too low for {args.clients} clients", file=sys.stderr)
        return 2
    print(f"drain: {args.clients} clients on {args.app}, SIGTERM, drain timeout "
          f"{args.drain_timeout:g} s")  # fmt: skip
    result = trio.run(
        lambda: run_drain(args.clients, app=args.app, drain_timeout=args.drain_timeout)
    )
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The echo servers the benchmarks compare, each in its own process.

The servers are corral's echo example (``examples.echo:app``, as ``corral serve`` runs it),
the bare trio-websocket echo (``bench/bare_echo.py``) and websockets on asyncio
(``bench/websockets_server.py echo``). Each runs in its own process, started through this
file (``python bench/common.py corral|bare|websockets --port N``), which first raises the
process's open-files limit and installs a SIGUSR1 handler that runs ``gc.collect()`` and
answers ``gc\\n`` on stdout, so that a memory reading is taken after a collection. corral's
server can run another app (``--app``), without the memory trim (``--no-memory-trim``), or from
another checkout (``--tree``); it answers SIGUSR2 with a ``heap_report`` JSON line, and SIGWINCH
with one taken after a ``malloc_trim(0)`` (not SIGHUP: that upgrades a corral server's code).

The clients are in ``wsclient`` (primitives) and ``load_client`` (client processes).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import attrs
import psutil
from wsclient import HOST, BenchError

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("corral", "websockets", "bare")
"""corral's echo example, and the websockets and bare trio-websocket echoes it is compared with."""
OBSERVED_VARIANTS = (
    "corral-off",
    "corral-off-again",
    "corral-watchdog",
    "corral-metrics",
    "corral-dashboard",
)
"""corral's echo with metrics and watchdog off (twice: two identical servers show the bench's
noise floor), the watchdog alone (the default), both on with ``/metrics`` served, and all three
with the dashboard too (``echo_throughput.py --observability``)."""
OBSERVED_CONTROL = "corral-off-again"
_OBSERVED_FLAGS = {
    "corral-off": ["--no-block-watchdog"],
    OBSERVED_CONTROL: ["--no-block-watchdog"],
    "corral-watchdog": [],
    "corral-metrics": ["--metrics"],
    "corral-dashboard": ["--metrics", "--dashboard"],
}
FANOUT_VARIANTS = ("corral", "cowboy", "websockets", "naive")
"""The fan-out servers (``fanout_server.py``; websockets' is ``websockets_server.py``)."""
FANOUT_CHOICES = (*FANOUT_VARIANTS, "corral-asgi")
"""Those, and corral's with an ASGI app mounted (``asgi.py --websocket``)."""
ROLES = ("echo", "fanout")


# ---- file descriptors -----------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE to at least ``wanted`` (the hard limit too, as
    root); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, PermissionError):
            wanted = hard  # not root: the hard limit is as far as we may go
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


# ---- the servers ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """One echo server in a subprocess; ``start``/``stop`` or use ``run_server``."""

    def __init__(
        self,
        variant: str,
        *,
        role: str = "echo",
        nofile: int = 4096,
        max_connections: int = 10_000,
        app: str = "examples.echo:app",
        memory_trim: bool = True,
        tree: Path = ROOT,
    ):
        choices = VARIANTS + OBSERVED_VARIANTS if role == "echo" else FANOUT_CHOICES
        if variant not in choices:
            raise ValueError(f"{role} variant must be one of {choices}, not {variant!r}")
        self.variant = variant
        self.port = free_port()
        self._command = [
            sys.executable,
            str(Path(__file__).resolve()),
            variant,
            "--role",
            role,
            "--port",
            str(self.port),
            "--nofile",
            str(nofile),
            "--max-connections",
            str(max_connections),
            "--app",
            app,
            "--tree",
            str(tree),
            *([] if memory_trim else ["--no-memory-trim"]),
        ]
        self._tree = tree
        self._popen: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.process: psutil.Process | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts TCP connections."""
        # stderr to a file, not a pipe: a server logging more than a pipe holds would block.
        self._stderr = tempfile.TemporaryFile()
        self._popen = subprocess.Popen(
            self._command, cwd=self._tree, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.process = psutil.Process(self._popen.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self._listening():
                return
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.variant} server not listening on {self.port} after {timeout} s")

    def _listening(self) -> bool:
        """Whether the server has its listening socket (asked of the kernel: a probing
        connection would linger in the server and skew its descriptor count)."""
        assert self.process is not None
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
            for c in self.process.net_connections(kind="tcp")
        )

    def stop(self) -> None:
        """Stop the server (SIGKILL after 5 s of SIGTERM)."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(5.0)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        if self._popen is not None and self._popen.stdout is not None:
            self._popen.stdout.close()
        if self._stderr is not None:
            self._stderr.close()

    def stderr_text(self) -> str:
        """What the server has written to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def check_alive(self) -> None:
        assert self._popen is not None
        if self._popen.poll() is not None:
            raise BenchError(
                f"{self.variant} server exited ({self._popen.returncode}):\n{self.stderr_text()}"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far."""
        assert self.process is not None
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        """The server's resident set size, in bytes."""
        self.check_alive()
        assert self.process is not None
        return int(self.process.memory_info().rss)

    def open_files(self) -> int:
        """How many file descriptors the server holds (sockets included)."""
        self.check_alive()
        assert self.process is not None
        return int(self.process.num_fds())

    def wait_open_files(self, at_most: int, timeout: float = 30.0) -> None:
        """Wait until the server holds at most ``at_most`` descriptors (closed connections)."""
        deadline = time.monotonic() + timeout
        while self.open_files() > at_most:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.variant} server still holds {self.open_files()} descriptors "
                    f"{timeout:g} s after its clients left (expected at most {at_most})"
                )
            time.sleep(0.05)

    def wait_idle(self, timeout: float = 60.0, interval: float = 0.25) -> None:
        """Wait until the server uses under 5% of a core: it has nothing left to finish."""
        wait_idle(self.cpu_seconds, f"{self.variant} server", timeout, interval)

    def settled_rss(self) -> int:
        """The server's RSS once it is idle and has run ``gc.collect()``."""
        self.wait_idle()
        self.collect_garbage()
        return self.rss()

    def collect_garbage(self, timeout: float = 10.0) -> None:
        """Make the server run ``gc.collect()`` and wait until it has."""
        assert self._popen is not None and self._popen.stdout is not None
        self.check_alive()
        os.kill(self._popen.pid, signal.SIGUSR1)
        ready, _, _ = select.select([self._popen.stdout], [], [], timeout)
        if not ready or self._popen.stdout.readline() != b"gc\n":
            raise BenchError(f"{self.variant} server did not answer a gc request")

    def heap_report(self, *, trim: bool = False, timeout: float = 30.0) -> dict[str, Any]:
        """corral's ``heap_report.heap_report()`` from inside the server, after a full
        collection; with ``trim``, after a ``malloc_trim(0)`` too (its cost under ``trim``)."""
        assert self._popen is not None and self._popen.stdout is not None
        self.check_alive()
        os.kill(self._popen.pid, signal.SIGWINCH if trim else signal.SIGUSR2)
        ready, _, _ = select.select([self._popen.stdout], [], [], timeout)
        line = self._popen.stdout.readline() if ready else b""
        if not line:
            raise BenchError(f"{self.variant} server did not answer a heap report request")
        report: dict[str, Any] = json.loads(line)
        return report


def wait_idle(
    cpu_seconds: Callable[[], float], what: str, timeout: float = 60.0, interval: float = 0.25
) -> None:
    """Wait until ``cpu_seconds`` (a server's CPU so far) grows by under 5% of a core:
    the server has nothing left to finish."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = cpu_seconds()
        if now - before < 0.05 * interval:
            return
        before = now
    raise BenchError(f"{what} still busy {timeout:g} s after its load ended")


@contextmanager
def run_server(variant: str, **kwargs: Any) -> Iterator[ServerProcess]:
    """A started server, stopped on the way out; a BenchError raised meanwhile carries the
    end of the server's stderr (what it logged about the failure)."""
    server = ServerProcess(variant, **kwargs)
    try:
        server.start()
        yield server
    except BenchError as exc:
        tail = server.stderr_text()[-3000:].strip()
        if not tail:
            raise
        raise BenchError(f"{exc}\n{variant} server's stderr ends:\n{tail}") from exc
    finally:
        server.stop()


def bench_parser(doc: str | None, quick: str, connections: str) -> argparse.ArgumentParser:
    """An argument parser with the options every connection benchmark has: ``--quick``
    (what the smoke run does) and ``--connections`` (what the default is)."""
    parser = argparse.ArgumentParser(description=(doc or "a benchmark").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {quick}")
    parser.add_argument("--connections", type=int, help=f"connections (default: {connections})")
    return parser


def print_report(name: str, measure: Callable[[], str]) -> int:
    """Run a benchmark's ``measure`` and print the report it returns: exit status 0, or 1
    with the reason on stderr if the run broke (BenchError)."""
    try:
        text = measure()
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0


# ---- the load client's processes -------------------------------------------------------


class ClientProcess:
    """One ``load_client.py`` process: JSON events on its stdout, commands on its stdin."""

    def __init__(self, role: str, port: int, *args: str) -> None:
        self.role = role
        command = [sys.executable, str(ROOT / "bench" / "load_client.py"), role]
        command += ["--port", str(port), *args]
        self._stderr = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )

    def event(self, name: str, timeout: float) -> dict[str, Any]:
        """Wait for the event ``name``; BenchError if the process says anything else, dies,
        or stays silent for ``timeout`` seconds."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        line = self.popen.stdout.readline() if ready else ""
        if not line:
            raise BenchError(
                f"{self.role} client gave no {name!r} within {timeout:g} s: {self.stderr_text()}"
            )
        event: dict[str, Any] = json.loads(line)
        if event.get("event") != name:
            raise BenchError(f"{self.role} client said {event!r}, expected {name!r}")
        return event

    def send(self, command: str) -> None:
        """One command line to the process; BenchError if it has exited."""
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(command + "\n")
            self.popen.stdin.flush()
        except BrokenPipeError:
            raise BenchError(f"{self.role} client exited: {self.stderr_text()}") from None

    def stderr_text(self) -> str:
        """What the process has written to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def stop(self) -> None:
        """End of input (the process closes its connections and exits); killed after 10 s."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.popen.wait(10.0)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr.close()


@contextmanager
def run_clients(
    role: str, port: int, arguments: Sequence[Sequence[str]]
) -> Iterator[list[ClientProcess]]:
    """One client process per entry of ``arguments``, all stopped on the way out."""
    clients: list[ClientProcess] = []
    try:
        for args in arguments:
            clients.append(ClientProcess(role, port, *args))
        yield clients
    finally:
        for client in clients:
            client.stop()


# ---- the server side of this file -----------------------------------------------------


def _answer_gc(signum: int, frame: object) -> None:
    gc.collect()
    os.write(sys.stdout.fileno(), b"gc\n")


def _answer_heap_report(signum: int, frame: object) -> None:
    from heap_report import heap_report

    report = heap_report()
    if signum == signal.SIGWINCH:
        from server.ops.heap_trim import trim_now

        trim = trim_now()
        report = {**heap_report(collect=False), "trim": attrs.asdict(trim), "untrimmed": report}
    os.write(sys.stdout.fileno(), json.dumps(report).encode() + b"\n")


def _serve_echo(variant: str, port: int, max_connections: int, corral: Sequence[str]) -> int:
    """Serve ``variant``'s echo; ``corral``: the app and options ``corral serve`` gets."""
    if variant == "corral" or variant in OBSERVED_VARIANTS:
        from server.run import cli

        signal.signal(signal.SIGUSR2, _answer_heap_report)
        signal.signal(signal.SIGWINCH, _answer_heap_report)
        return cli.main(
            [
                "serve",
                *corral,
                "--port",
                str(port),
                "--log-level",
                "warning",  # no log line per connection: logging is not what we measure
                "--max-connections",
                str(max_connections),
                *_OBSERVED_FLAGS.get(variant, []),
            ]
        )
    if variant == "websockets":
        import websockets_server

        return websockets_server.main(["echo", "--port", str(port)])
    import bare_echo

    bare_echo.main(["--port", str(port)])
    return 0


def _serve_fanout(variant: str, port: int, max_connections: int, corral: Sequence[str]) -> int:
    if variant == "websockets":
        import websockets_server

        return websockets_server.main(["broadcast", "--port", str(port)])
    import fanout_server

    fanout_server.main([variant, "--port", str(port), "--max-connections", str(max_connections)])
    return 0


def _serve(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="run a server for the benchmarks")
    parser.add_argument(
        "variant", choices=sorted(set(VARIANTS) | set(OBSERVED_VARIANTS) | set(FANOUT_CHOICES))
    )
    parser.add_argument("--role", choices=ROLES, default="echo")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nofile", type=int, default=4096, help="RLIMIT_NOFILE to ask for")
    parser.add_argument("--max-connections", type=int, default=10_000, help="corral's limit")
    parser.add_argument("--app", default="examples.echo:app", help="corral's app (echo role)")
    parser.add_argument("--no-memory-trim", action="store_true", help="corral's option")
    parser.add_argument("--tree", default=str(ROOT), help="the checkout whose server runs")
    args = parser.parse_args(argv)
    raise_nofile(args.nofile)
    signal.signal(signal.SIGUSR1, _answer_gc)
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, args.tree)
    serve = _serve_echo if args.role == "echo" else _serve_fanout
    corral = [args.app, *(["--no-memory-trim"] if args.no_memory_trim else [])]
    return serve(args.variant, args.port, args.max_connections, corral)


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))

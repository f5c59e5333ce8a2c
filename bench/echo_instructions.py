"""Server instructions per echo round trip, counted by valgrind's callgrind: a figure that the
machine's load cannot move, for A/B runs of the per-message path on a shared machine.

The echo example runs as ``corral serve`` runs it, under callgrind with counting off; after the
connections are open and warmed up, counting is switched on (``callgrind_control -i on``) for
exactly ``--round-trips`` round trips on each of ``--connections`` connections (closed loop,
one message in flight per connection, all sent before any reply is read), then off. What is
counted is the server's whole per-message path, kernel entry points excluded: the Python code,
the interpreter and the C libraries it calls. The
watchdog is off (its pokes follow the wall clock, which valgrind stretches).

Run: ``python bench/echo_instructions.py [--connections 1] [--round-trips 2000]``; A/B:
``python bench/ab.py --old ../old --new . --runs 2 echo_instructions.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wsclient import (  # noqa: E402
    BenchError,
    abort,
    client_frame,
    open_websocket,
    send_and_expect,
    server_frame,
)

PAYLOAD = b"corral echo instructions"
WARM_UP = 200
"""Round trips per connection before counting starts (first-use paths, caches warmed)."""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli_module(checkout: Path) -> str:
    """The CLI's module in this checkout (it moved into server/run/ with the layout split)."""
    return "server.run.cli" if (checkout / "server" / "run" / "cli.py").exists() else "server.cli"


def _wait_for_port(port: int, server: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited with {server.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"the server did not listen on {port} within {seconds:.0f} s")


def _control(pid: int, switch: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", switch, str(pid)], check=True, capture_output=True, timeout=60
    )


def count(checkout: Path, connections: int, round_trips: int) -> int:
    """Instructions the server ran for ``round_trips`` echoes on each of ``connections``."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise BenchError("valgrind (with callgrind_control) is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="corral-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            _cli_module(checkout),
            "serve",
            "examples.echo:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-block-watchdog",  # its thread's pokes follow the wall clock, not the work
        ]
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        server = subprocess.Popen(command, cwd=checkout, env=env, stderr=subprocess.DEVNULL)
        sockets = []
        try:
            _wait_for_port(port, server)
            sockets = [open_websocket(port, timeout=120) for _ in range(connections)]
            frame, reply = client_frame(PAYLOAD), server_frame(PAYLOAD)
            for _ in range(WARM_UP):
                send_and_expect(sockets, frame, reply)
            _control(server.pid, "on")
            for _ in range(round_trips):
                send_and_expect(sockets, frame, reply)
            _control(server.pid, "off")
        finally:
            for sock in sockets:
                abort(sock)
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        text = "".join(path.read_text() for path in Path(scratch).glob("callgrind.out*"))
    totals = [int(found) for found in re.findall(r"^(?:summary|totals): (\d+)", text, re.M)]
    if not totals:
        raise BenchError("callgrind wrote no totals")
    return max(totals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=Path.cwd(), help="default: here")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 round trips (smoke test)")
    options = parser.parse_args(argv)
    if options.quick:
        options.round_trips = 200
    checkout = options.checkout.resolve()
    total = count(checkout, options.connections, options.round_trips)
    per = total / (options.connections * options.round_trips)
    print(f"checkout {checkout}")
    print(
        f"{options.connections} connection(s) x {options.round_trips} round trips: "
        f"{total:,} instructions"
    )
    print(f"instructions per round trip: {per:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Topics: what keeping history costs a post, how fast a client resumes, a reconnect storm.

Three figures, each against its baseline in the same run, the server in this process:

- **cost**: N subscribers (plain sockets, upgraded by hand, drained without waiting), each both
  in a group and subscribed to a topic with ``subscribe_frames``; steps of bursts alternate
  ``broadcast`` (no history) and ``topics.post`` (history, positions). The figure is this
  process's CPU time per delivery (``time.process_time``, clients' draining included, the same
  for both), and the ratio of deliveries per CPU-second (post / broadcast). With ``--redis`` the
  post also runs on ``RedisTopics`` (Redis's own CPU not counted: it is another process).
- **resume**: a client that missed 100 posts sends ``subscribe`` with its position; the time
  until its 100th post arrives, p50 and p99 over the trials (in process, and on Redis).
- **storm**: C clients (a child process of plain non-blocking sockets) connect at once, each
  sending its upgrade and a ``subscribe`` from a position 100 posts back; the time until every
  one has all 100, with the server's and the client's CPU.

Run: ``python bench/topics.py [--quick] [--redis URL] [--storm N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import raise_nofile  # noqa: E402
from wsclient import BenchError, client_frame, handshake, split_frames  # noqa: E402

MISSED = 100
TOPIC = "bench"


def subscriber_handler() -> Any:
    """Each connection joins the group and follows the topic (frames straight to it)."""
    import actors
    from server import WebSocketHandler
    from server.topics import subscribe_frames

    class Subscriber(WebSocketHandler[None]):
        def websocket_init(self, state: Any) -> tuple[None, Any]:
            actors.join("subscribers")
            subscribe_frames(TOPIC)
            return None, state

    return Subscriber()


def app(redis: str | None) -> Any:
    from server import App, ServerOptions, websocket
    from server.topics import TopicsHandler

    options = ServerOptions()
    if redis is not None:
        options = ServerOptions(redis_url=redis, cluster_prefix=f"bench:{uuid.uuid4().hex[:8]}")
    return App(
        [websocket("/", subscriber_handler()), websocket("/topics", TopicsHandler())],
        options=options,
    )


# ---- cost ------------------------------------------------------------------------------


async def measure_cost(
    redis: str | None, subscribers: int, steps: int, burst: int
) -> dict[str, float]:
    """CPU microseconds per delivery: broadcast, and post on the engine ``redis`` picks."""
    import actors
    from actors import topics
    from server import broadcast
    from server.run.embed import serving

    async with serving(app(redis), port=0) as running:
        node = running.node
        engine = topics.engine(node)
        clients = [_raw_client(running.port) for _ in range(subscribers)]
        while len(node.local_members("subscribers")) < subscribers:
            await trio.sleep(0.01)
        last = trio.Event()
        seen: dict[str, Any] = {}

        async def sentinel(actor: actors.Actor) -> None:  # subscribed last: delivered to last
            topics.subscribe(TOPIC)
            async for event in actor:
                seen["last"] = event
                if getattr(event, "data", None) == "end":
                    last.set()

        async with trio.open_nursery() as nursery:
            node.spawn(nursery, sentinel, capacity=1_000_000)
            await trio.testing.wait_all_tasks_blocked(0.01)
            _drain_all(clients)
            message = json.dumps({"text": "x" * 40})
            spent = {"broadcast": 0.0, "post": 0.0}
            for step in range(steps):
                for variant in ("broadcast", "post") if step % 2 == 0 else ("post", "broadcast"):
                    started = time.process_time()
                    if variant == "broadcast":
                        for _ in range(burst):
                            broadcast("subscribers", message, node=node)
                    else:
                        last = trio.Event()
                        for _ in range(burst - 1):
                            await engine.post(TOPIC, message)
                        await engine.post(TOPIC, "end")
                        await last.wait()
                    await trio.testing.wait_all_tasks_blocked()
                    _drain_all(clients)
                    spent[variant] += time.process_time() - started
            nursery.cancel_scope.cancel()
        for client in clients:
            client.close()
    deliveries = steps * burst * subscribers
    return {variant: cpu / deliveries * 1e6 for variant, cpu in spent.items()}


def _raw_client(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(handshake(port))
    client.setblocking(False)
    return client


def _drain_all(clients: list[socket.socket]) -> None:
    for client in clients:
        try:
            while client.recv(1 << 20):
                pass
        except BlockingIOError:
            pass


# ---- resume latency --------------------------------------------------------------------


async def measure_resume(redis: str | None, trials: int) -> list[float]:
    """Seconds from ``subscribe`` (100 posts behind) to the 100th post, per trial."""
    from trio_websocket import open_websocket_url

    from actors import topics
    from server.run.embed import serving

    async with serving(app(redis), port=0) as running:
        engine = topics.engine(running.node)
        latencies = []
        async with open_websocket_url(running.url("/topics")) as ws:
            for _ in range(trials):
                behind = await engine.post("resume", "start")
                for n in range(MISSED):
                    await engine.post("resume", str(n))
                request = {"type": "subscribe", "topic": "resume", "epoch": behind.epoch}
                started = time.perf_counter()
                await ws.send_message(json.dumps({**request, "offset": behind.offset}))
                while True:
                    frame = json.loads(await ws.get_message())
                    if frame["type"] == "post" and frame["offset"] == behind.offset + MISSED:
                        break
                latencies.append(time.perf_counter() - started)
                await ws.send_message(json.dumps({"type": "unsubscribe", "topic": "resume"}))
                while engine.subscribers("resume"):  # gone before the next trial's posts
                    await trio.sleep(0.001)
    return latencies


# ---- the reconnect storm ---------------------------------------------------------------


async def measure_storm(clients: int) -> dict[str, float]:
    """Seconds until ``clients`` clients connecting at once have all resumed 100 posts."""
    import psutil

    from actors import topics
    from server.run.embed import serving

    raise_nofile(clients + 1000)
    async with serving(app(None), port=0) as running:
        engine = topics.engine(running.node)
        behind = await engine.post("storm", "start")
        for n in range(MISSED):
            await engine.post("storm", str(n))
        argv = [sys.executable, __file__, "storm-clients", str(running.port), str(clients)]
        request = {"type": "subscribe", "topic": "storm", "epoch": behind.epoch}
        argv.append(json.dumps({**request, "offset": behind.offset}))
        process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
        watched = psutil.Process(process.pid)
        assert process.stdout is not None
        server_cpu = time.process_time()
        started = time.perf_counter()
        client_cpu = 0.0
        output = b""
        while b"\n" not in output:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise BenchError("the storm's clients died")
            output += chunk
            times = watched.cpu_times()
            client_cpu = times.user + times.system
        elapsed = time.perf_counter() - started
        server_cpu = time.process_time() - server_cpu
        await process.wait()
    report = json.loads(output)
    if report["resumed"] != clients:
        raise BenchError(f"only {report['resumed']} of {clients} clients resumed")
    return {"seconds": elapsed, "server_cpu": server_cpu, "client_cpu": client_cpu}


def storm_clients(port: int, count: int, subscribe: str) -> None:
    """The storm's client side: connect ``count`` sockets at once, each upgrading and
    subscribing in one send, and count the frames until each has its answer and 100 posts."""
    raise_nofile(count + 100)
    request = handshake(port, "/topics") + client_frame(subscribe.encode())
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}
    frames: dict[socket.socket, int] = {}
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE)
        buffers[sock] = bytearray()
        frames[sock] = -1  # the upgrade's answer first
    resumed = 0
    deadline = time.monotonic() + 120
    while resumed < count and time.monotonic() < deadline:
        for key, events in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if events & selectors.EVENT_WRITE:
                sock.sendall(request)
                selector.modify(sock, selectors.EVENT_READ)
                continue
            data = sock.recv(1 << 16)
            if not data:
                selector.unregister(sock)
                continue
            buffer = buffers[sock]
            buffer += data
            if frames[sock] < 0:
                head, found, rest = bytes(buffer).partition(b"\r\n\r\n")
                if not found:
                    continue
                buffer[:] = rest
                frames[sock] = 0
            frames[sock] += len(split_frames(buffer))
            if frames[sock] >= MISSED + 1:  # subscribed, then the 100 posts
                resumed += 1
                selector.unregister(sock)
    print(json.dumps({"resumed": resumed}), flush=True)
    for sock in buffers:
        sock.close()


# ---- the report ------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["storm-clients"]:
        storm_clients(int(argv[1]), int(argv[2]), argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts")
    parser.add_argument("--redis", help="also measure RedisTopics on this Redis URL")
    parser.add_argument("--storm", type=int, help="clients in the storm (default 10,000)")
    parser.add_argument("--only", choices=("cost", "resume", "storm"), help="one figure only")
    args = parser.parse_args(argv)
    subscribers, steps, burst = (50, 4, 10) if args.quick else (500, 20, 20)
    trials = 10 if args.quick else 200
    storm = args.storm or (200 if args.quick else 10_000)
    engines: list[tuple[str, str | None]] = [("in process", None)]
    if args.redis:
        engines.append(("Redis", args.redis))
    try:
        if args.only in (None, "cost"):
            report_cost(engines, subscribers, steps, burst)
        if args.only in (None, "resume"):
            report_resume(engines, trials)
        if args.only in (None, "storm"):
            report_storm(storm)
    except BenchError as exc:
        print(f"topics: {exc}", file=sys.stderr)
        return 1
    return 0


def report_cost(
    engines: list[tuple[str, str | None]], subscribers: int, steps: int, burst: int
) -> None:
    print(f"cost: {subscribers} subscribers, {steps} steps of {burst}, CPU per delivery")
    for name, redis in engines:
        cost = trio.run(measure_cost, redis, subscribers, steps, burst)
        ratio = cost["broadcast"] / cost["post"]
        target = " (target >= 0.80x)" if redis is None else ""
        print(
            f"  {name}: broadcast {cost['broadcast']:.2f} us, post {cost['post']:.2f} us: "
            f"post/broadcast deliveries per CPU-second {ratio:.2f}x{target}"
        )


def report_resume(engines: list[tuple[str, str | None]], trials: int) -> None:
    print(f"resume: a client {MISSED} posts behind, {trials} trials")
    for name, redis in engines:
        latencies = trio.run(measure_resume, redis, trials)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        target = "100 ms" if redis is None else "1 s"
        print(f"  {name}: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms (target p99 < {target})")


def report_storm(storm: int) -> None:
    result = trio.run(measure_storm, storm)
    print(
        f"storm: {storm:,} clients resume {MISSED} posts at once: all in "
        f"{result['seconds']:.2f} s (target < 10 s); server CPU {result['server_cpu']:.2f} s, "
        f"clients' CPU {result['client_cpu']:.2f} s; load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())

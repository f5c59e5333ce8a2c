"""A Redis Cluster of the test's own: ``redis-server`` processes in cluster mode on free
loopback ports, in a temporary directory, joined with ``redis-cli --cluster create``, every
process killed and the directory removed at the end.

``RedisCluster(primaries=3, replicas=1)`` starts 3 primaries (and a replica of each); ``url``
is the ``redis+cluster://`` URL naming every primary as a seed; ``primary_of(key)`` is the
port of the primary that serves a key or shard channel now; ``kill(port)`` kills one server
(its replica is promoted after ``node_timeout_ms``).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .redis_kit import HOST, NO_REDIS, answers


def free_cluster_port() -> int:
    """A port free on 127.0.0.1 whose cluster bus port (10,000 above) is free too; below the
    ephemeral range, so that no client's connection takes it meanwhile."""
    for _ in range(1000):
        port = random.randrange(20_000, 30_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind((HOST, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisCluster:
    """3 primaries by default, each with ``replicas`` replicas; see the module docstring."""

    def __init__(self, primaries: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError(NO_REDIS)
        self.primaries, self.replicas = primaries, replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports = [free_cluster_port() for _ in range(primaries * (1 + replicas))]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """Every primary as a seed node."""
        seeds = ",".join(f"{HOST}:{port}" for port in self.ports[: self.primaries])
        return f"redis+cluster://{seeds}"

    def start(self, timeout: float = 30.0) -> None:
        """Start every server, form the cluster, wait until every node says it is ok."""
        self.directory = tempfile.TemporaryDirectory(prefix="corral-redis-cluster-")
        for port in self.ports:
            self._start_one(port)
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"{HOST}:{port}" for port in self.ports]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        self.wait_ok(timeout)

    def _start_one(self, port: int) -> None:
        assert self.directory is not None
        workdir = Path(self.directory.name) / str(port)
        workdir.mkdir()
        self.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", HOST, "--cluster-enabled", "yes"]
            + ["--cluster-config-file", "nodes.conf", "--dir", str(workdir)]
            + ["--cluster-node-timeout", str(self.node_timeout_ms), "--save", ""]
            + ["--appendonly", "no", "--cluster-replica-validity-factor", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not answers(port):
            if self.processes[port].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.01)

    def cli(self, port: int, *args: str) -> str:
        """One redis-cli command against the server on ``port``; its answer."""
        run = subprocess.run(
            ["redis-cli", "-h", HOST, "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return run.stdout.strip()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live server reports ``cluster_state:ok`` and every live replica is in
        sync with its primary (a replica still syncing could not take over)."""
        deadline = time.monotonic() + timeout
        while True:
            infos = [self.cli(port, "cluster", "info") for port in self.processes]
            replication = [self.cli(port, "info", "replication") for port in self.processes]
            if all("cluster_state:ok" in info for info in infos) and all(
                "role:slave" not in info or "master_link_status:up" in info for info in replication
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster is not ok after {timeout} s: {infos}")
            time.sleep(0.1)

    def primary_of(self, key: str) -> int:
        """The port of the primary serving ``key``'s slot now."""
        live = next(iter(self.processes))
        slot = int(self.cli(live, "cluster", "keyslot", key))
        for line in self.cli(live, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])
        raise RuntimeError(f"no primary serves slot {slot}")

    def kill(self, port: int) -> None:
        """Kill one server at once (no goodbye: its replica takes over after the timeout)."""
        process = self.processes.pop(port)
        process.kill()
        process.wait()

    def stop(self) -> None:
        """Kill every server and remove the directory."""
        for port in list(self.processes):
            self.kill(port)
        if self.directory is not None:
            self.directory.cleanup()
            self.directory = None

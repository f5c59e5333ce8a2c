"""Limits and timeouts, per connection and for the whole server, with Cowboy-like defaults."""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import Any

import attrs

from actors import DEFAULT_CAPACITY, MailboxPolicy

from .engine.inflate import DEFAULT_INFLATE_BUDGET
from .engine.session import DEFAULT_MAX_FRAGMENTS
from .front.http import DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_HEADERS
from .front.listener import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_MAX_HEADS_PER_ADDRESS,
    DEFAULT_UNLIMITED_ADDRESSES,
)
from .ops.heap_trim import TrimPolicy


def _positive(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 (or None to disable), not {value!r}")


class OutboxPolicy(enum.Enum):
    """What happens when a message pushed to a connection finds its outbox full."""

    DROP = "drop"
    """Drop the message (counted); the client misses it."""
    CLOSE_1013 = "close_1013"
    """Disconnect the client with 1013 (try again later)."""
    CLOSE_1008 = "close_1008"
    """Disconnect the client with 1008 (policy violation)."""


@attrs.frozen
class ConnectionOptions:
    """Per-connection behaviour; a route or ``init`` may override it.

    Two fields are fixed before routing, since every TCP connection is an actor from its
    first byte: ``mailbox_capacity`` and the time a connection gets to close at shutdown
    (``send_timeout + close_timeout``) come from ``ServerOptions.connection``; a route's
    ``mailbox_overflow`` applies from the upgrade on.
    """

    idle_timeout: float | None = attrs.field(default=60.0, validator=_positive)
    """Close with 1000 after this long without data from the client; None: never."""
    ping_interval: float | None = attrs.field(default=None, validator=_positive)
    """Send a ping this often; None: no server pings."""
    pong_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Drop the client if a ping's pong has not come back within this."""
    max_message_size: int = attrs.field(default=2**20, validator=_positive)
    """A larger message from the client closes the connection with 1009."""
    max_fragments: int = attrs.field(default=DEFAULT_MAX_FRAGMENTS, validator=_positive)
    """A message from the client in more frames than this (empty ones count) closes the
    connection with 1009. Each frame costs the server work and a header's bytes: the default
    is websockets' own limit, which no browser comes near (they do not fragment) and which
    leaves a 1 MiB message 256-byte fragments."""
    send_timeout: float = attrs.field(default=10.0, validator=_positive)
    """A client that accepts no data for this long is dropped (TCP aborted)."""
    close_timeout: float = attrs.field(default=5.0, validator=_positive)
    """How long to wait for the client to answer our close frame."""
    outbox_capacity: int = attrs.field(default=256, validator=_positive)
    """Frames queued for the client before the outbox counts as full."""
    outbox_bytes: int = attrs.field(default=4 * 2**20, validator=_positive)
    """Bytes queued for the client before the outbox counts as full (one frame always fits)."""
    outbox_overflow: OutboxPolicy = OutboxPolicy.CLOSE_1013
    mailbox_capacity: int = attrs.field(default=DEFAULT_CAPACITY, validator=_positive)
    mailbox_overflow: MailboxPolicy = MailboxPolicy.DROP_NEWEST
    compression: bool = False
    """Offer permessage-deflate (RFC 7692) to clients that ask for it."""


@attrs.frozen
class ServerOptions:
    """Server-wide limits."""

    handshake_timeout: float = attrs.field(default=DEFAULT_HANDSHAKE_TIMEOUT, validator=_positive)
    """A client must send its whole request head within this."""
    max_connections: int = attrs.field(default=DEFAULT_MAX_CONNECTIONS, validator=_positive)
    """Over this many open connections, new ones get HTTP 503 before the upgrade."""
    max_connections_per_address: int | None = attrs.field(
        default=DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, validator=_positive
    )
    """Over this many open connections from one client address (an IPv6 client: its /64), a
    new one from there gets HTTP 429 before the upgrade; None: no limit per address."""
    max_heads_per_address: int | None = attrs.field(
        default=DEFAULT_MAX_HEADS_PER_ADDRESS, validator=_positive
    )
    """While this many connections from one address (IPv6: /64) are still sending their
    request head, a new one from there is closed unread (slow heads cannot take every slot);
    None: no limit."""
    unlimited_addresses: Collection[str] = attrs.field(
        default=DEFAULT_UNLIMITED_ADDRESSES, converter=frozenset
    )
    """Client addresses that the two limits per address leave alone (IPs, an IPv6 /64 written
    as ``2001:db8::/64``, or ``"loopback"`` for all of 127.0.0.0/8 and ``::1``;
    ``::ffff:127.0.0.1`` counts as ``127.0.0.1``): loopback by default, where a reverse proxy
    on this host connects from; add a remote proxy's address, or set both limits to None, when
    every client comes through a proxy."""
    max_head_bytes: int = attrs.field(default=DEFAULT_MAX_HEAD_BYTES, validator=_positive)
    """A larger request head gets 431."""
    max_headers: int = attrs.field(default=DEFAULT_MAX_HEADERS, validator=_positive)
    """A request head with more header fields gets 431 (Cowboy's limit)."""
    drain_timeout: float = attrs.field(default=30.0, validator=_positive)
    """On shutdown, how long connections get to close (1001) and run terminate."""
    shutdown_batch: int = attrs.field(default=500, validator=_positive)
    """Connections closed at once during shutdown (10k clients do not stampede)."""
    allowed_origins: Collection[str] | None = None
    """Browser origins allowed to connect (403 for others); None allows all."""
    block_threshold: float | None = attrs.field(default=0.1, validator=_positive)
    """The watchdog logs and counts any task step holding the loop this long (seconds);
    None turns it off (``server.ops.watchdog``)."""
    memory_trim: TrimPolicy | None = TrimPolicy()
    """When to give freed memory back to the system after a burst of connections
    (``server.ops.heap_trim``, glibc only); None never trims."""
    inflate_budget: int = attrs.field(default=DEFAULT_INFLATE_BUDGET, validator=_positive)
    """Bytes that the compressed (permessage-deflate) messages still being received may hold
    inflated, all connections together. A message that would pass it closes its connection
    with 1013 (try again later): each message stays under its own ``max_message_size``, and
    this bounds their sum, since a few kilobytes on the wire can inflate to megabytes. The
    default, 128 MiB, holds 128 messages of the default 1 MiB limit at once, or two of the
    64 MiB the echo example allows, and keeps an attack's cost near a tenth of a gigabyte."""
    connection: ConnectionOptions = ConnectionOptions()
    redis_url: str | None = None
    """A Redis (``redis://[user:password@]host:port/db``, ``rediss://`` for TLS) shared by every
    server of a cluster: names, groups, sends and monitors then span them (``broker_url``
    says what is allowed). None: this process alone, no service needed."""
    redis_wait: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    """Seconds to wait at start-up for ``redis_url`` to answer (``inf``: as long as it takes);
    past them the server fails with ``BrokerUnreachable`` (0: at once). Once up, a server
    rides out Redis outages (cross-node messages are lost meanwhile, counted)."""
    cluster_prefix: str = "corral"
    """The Redis key prefix of the cluster (servers with the same URL and prefix meet)."""
    failure_detection: float = attrs.field(default=5.0, validator=attrs.validators.gt(0.0))
    """Seconds without a heartbeat (sent every fifth of this) after which another node is down:
    its names and presences leave, monitors of its actors get ``noconnection``. 5 s rides out a
    stalled loop or a GC pause of a few seconds, which would otherwise make every user of a
    live node leave and come back in everyone's member list, and a node's death still reaches
    every member list within about 6 s (Phoenix waits 30 s)."""

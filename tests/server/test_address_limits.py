"""Limits per client address at the front door, over real sockets from several 127.x addresses:
one address at its cap (connections, or unfinished request heads) leaves room for the others."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from examples.echo import app
from server import Request, ServerOptions
from server.front.listener import FrontDoor
from server.front.peers import PeerCount, address_group
from server.front.router import Match, Router

from .kit import WAIT, receive_until_closed, running_clean, tcp_client, until_quiet, upgrade_request

GREEDY, OTHER = "127.0.0.2", "127.0.0.3"
"""Two client addresses, limited here as remote ones would be (loopback is unlimited by
default: ``LIMIT_LOOPBACK``)."""
LIMIT_LOOPBACK = frozenset[str]()
"""``unlimited_addresses`` that leaves no address alone, loopback included."""


async def upgraded(stream: trio.SocketStream) -> int:
    """Send an upgrade request on ``stream``; the status code of the answer."""
    await stream.send_all(upgrade_request("/"))
    answer = b""
    with trio.fail_after(WAIT):
        while b"\r\n" not in answer:
            chunk = await stream.receive_some()
            assert chunk, f"closed after {answer!r}"
            answer += chunk
    return int(answer.split(b" ", 2)[1])


async def connections(
    stack: AsyncExitStack, port: int, source: str, count: int
) -> list[trio.SocketStream]:
    """``count`` TCP connections from ``source``, closed when ``stack`` closes."""
    return [await stack.enter_async_context(tcp_client(port, source=source)) for _ in range(count)]


async def test_slow_heads_from_one_address_cannot_take_every_slot() -> None:
    options = ServerOptions(
        max_connections=8, max_heads_per_address=4, unlimited_addresses=LIMIT_LOOPBACK
    )
    async with running_clean(app, options) as server, AsyncExitStack() as stack:
        slow = await connections(stack, server.port, GREEDY, 8)
        for stream in slow:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        await until_quiet()
        closed_unread = [stream for stream in slow[4:] if await receive_until_closed(stream) == b""]
        assert len(closed_unread) == 4  # past its 4 unfinished heads, the address is turned away
        async with tcp_client(server.port, source=OTHER) as newcomer:
            assert await upgraded(newcomer) == 101
        async with tcp_client(server.port, source=GREEDY) as same_address:
            assert await receive_until_closed(same_address) == b""  # still at its cap


async def test_one_address_at_its_connection_cap_gets_429_and_others_still_get_in() -> None:
    options = ServerOptions(
        max_connections=10, max_connections_per_address=3, unlimited_addresses=LIMIT_LOOPBACK
    )
    async with running_clean(app, options) as server, AsyncExitStack() as stack:
        held = await connections(stack, server.port, GREEDY, 3)
        for stream in held:
            assert await upgraded(stream) == 101
        async with tcp_client(server.port, source=GREEDY) as fourth:
            assert await upgraded(fourth) == 429
        async with tcp_client(server.port, source=OTHER) as other:
            assert await upgraded(other) == 101
        await held.pop().aclose()
        with trio.fail_after(WAIT):  # its slot comes back once the server has closed it
            while True:
                async with tcp_client(server.port, source=GREEDY) as again:
                    if await upgraded(again) == 101:
                        break
                await trio.sleep(0.01)


async def test_loopback_is_not_limited_per_address_by_default() -> None:
    """All of 127.0.0.0/8 is this host: load clients bind 127.0.0.x sources to get more ports."""
    options = ServerOptions(max_connections_per_address=1, max_heads_per_address=1)
    async with running_clean(app, options) as server:
        for source in ("127.0.0.1", GREEDY):
            async with (
                tcp_client(server.port, source=source) as first,
                tcp_client(server.port, source=source) as second,
            ):
                for stream in (first, second):
                    assert await upgraded(stream) == 101


def test_an_ipv6_client_counts_by_its_64_and_ipv4_by_its_address() -> None:
    assert address_group("192.0.2.7") == "192.0.2.7"
    assert address_group("2001:db8::1") == address_group("2001:db8::ffff:2") == "2001:db8::/64"
    assert address_group("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    assert address_group("fe80::1%eth0") == "fe80::/64"
    assert address_group("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_group("not an address:") == "not an address:"


def test_a_peer_count_refuses_past_its_limit_and_forgets_what_is_released() -> None:
    count = PeerCount(limit=2)
    assert count.acquire("a") and count.acquire("a") and not count.acquire("a")
    assert count.acquire("b")
    count.release("a")
    assert count.held("a") == 1 and count.acquire("a")
    for _ in range(2):
        count.release("a")
    count.release("b")
    assert len(count) == 0


def test_unlimited_addresses_match_an_ip_its_ipv4_mapped_form_or_a_64() -> None:
    front_door = FrontDoor(
        Router([]),
        refuse_every_upgrade,
        unlimited_addresses={"127.0.0.1", "::1", "2001:db8::/64"},
    )
    for host in ("127.0.0.1", "::ffff:127.0.0.1", "::1", "2001:db8::7"):
        assert front_door.limited_group((host, 1)) is None, host
    assert front_door.limited_group(("127.0.0.2", 1)) == "127.0.0.2"
    by_default = FrontDoor(Router([]), refuse_every_upgrade)
    for host in ("127.0.0.1", "127.0.0.2", "127.255.0.9", "::ffff:127.0.0.3", "::1"):
        assert by_default.limited_group((host, 1)) is None, host
    for host in ("128.0.0.1", "10.127.0.1", "::2"):
        assert by_default.limited_group((host, 1)) == address_group(host), host
    assert front_door.limited_group(("2001:db8:0:1::7", 1)) == "2001:db8:0:1::/64"


async def refuse_every_upgrade(
    stream: trio.abc.Stream, request: Request, rest: bytes, match: Match
) -> None:
    return None
